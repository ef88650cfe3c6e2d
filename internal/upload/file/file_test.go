package file

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/upload"
	"github.com/snapshot-job/snapshot-job/internal/upload/uploadtest"
)

func TestConformance(t *testing.T) {
	uploadtest.Run(t, uploadtest.Harness{
		New:      func(t *testing.T) upload.Store { return New(t.TempDir()) },
		PartSize: 5 << 20,
		Leftovers: func(t *testing.T, s upload.Store, prefix string) []string {
			return s.(*Store).Leftovers(prefix)
		},
	})
}

func TestCheck(t *testing.T) {
	missing := New(filepath.Join(t.TempDir(), "missing"))
	if err := missing.Check(t.Context()); !errors.Is(err, upload.ErrAccess) {
		t.Errorf("missing dir: %v, want ErrAccess", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if err := New(f).Check(t.Context()); !errors.Is(err, upload.ErrAccess) {
		t.Errorf("file as root: %v, want ErrAccess", err)
	}
	dir := t.TempDir()
	if err := New(dir).Check(t.Context()); err != nil {
		t.Errorf("writable dir: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Check left %v behind", entries)
	}
}

func TestKeysCannotEscape(t *testing.T) {
	s := New(t.TempDir())
	for _, k := range []string{"../x", "a/../../x", "/abs", "a//b", "a/", ".partial-x", ""} {
		if _, err := s.Put(t.Context(), k, bytes.NewReader(nil), upload.PutOptions{}); err == nil {
			t.Errorf("Put(%q) accepted", k)
		}
	}
}
