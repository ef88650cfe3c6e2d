package file

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Leftovers lists temporary files under prefix: a failed Put must not
// leave any.
func (s *Store) Leftovers(prefix string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(s.root, filepath.FromSlash(prefix)), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// newStore is New for a test's directory.
func newStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Dir: dir}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
