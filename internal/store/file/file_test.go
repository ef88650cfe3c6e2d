package file

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New:      func(t *testing.T) store.Store { return newStore(t, t.TempDir()) },
		PartSize: 5 << 20,
		Leftovers: func(t *testing.T, s store.Store, prefix string) []string {
			return s.(*Store).Leftovers(prefix)
		},
	})
}

func TestCheck(t *testing.T) {
	missing := newStore(t, filepath.Join(t.TempDir(), "missing"))
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	for _, a := range []store.Access{store.Read, store.Write} {
		if err := missing.Check(t.Context(), a); !errors.Is(err, store.ErrAccess) {
			t.Errorf("missing dir, %s: %v, want ErrAccess", a, err)
		}
		if err := newStore(t, f).Check(t.Context(), a); !errors.Is(err, store.ErrAccess) {
			t.Errorf("file as root, %s: %v, want ErrAccess", a, err)
		}
		dir := t.TempDir()
		if err := newStore(t, dir).Check(t.Context(), a); err != nil {
			t.Errorf("writable dir, %s: %v", a, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("Check(%s) left %v behind", a, entries)
		}
	}
}

// readOnly makes dir read-only for this process: a read-only bind mount
// as root (permission bits do not stop root), mode 0555 otherwise.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return
	}
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("bind mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Skipf("read-only remount: %v %s", err, out)
	}
}

// A store mounted read-only serves the reading verbs; only Write fails.
func TestReadOnlyStore(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	want := []byte("snapshot bytes")
	if _, err := s.Put(t.Context(), "snaps/a.tar.zst", bytes.NewReader(want), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	readOnly(t, dir)
	if err := s.Check(t.Context(), store.Read); err != nil {
		t.Errorf("Check(read) on a read-only store: %v", err)
	}
	if err := s.Check(t.Context(), store.Write); !errors.Is(err, store.ErrAccess) {
		t.Errorf("Check(write) on a read-only store: %v, want ErrAccess", err)
	}
	if objs, err := s.List(t.Context(), "snaps/"); err != nil || len(objs) != 1 {
		t.Errorf("List: %v, %v", objs, err)
	}
	if got := storetest.Get(t, s, "snaps/a.tar.zst"); !bytes.Equal(got, want) {
		t.Errorf("Get: %q", got)
	}
	_, err := s.Put(t.Context(), "snaps/b.tar.zst", bytes.NewReader(want), store.PutOptions{})
	if !errors.Is(err, store.ErrAccess) {
		t.Errorf("Put on a read-only store: %v, want ErrAccess", err)
	}
}

func TestKeysCannotEscape(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(filepath.Join(root, "snaps"), 0o755)
	// A file beside the store that a "../" prefix once listed.
	os.WriteFile(filepath.Join(filepath.Dir(root), "outside.tar.zst"), []byte("x"), 0o644)
	s := newStore(t, root)
	for _, k := range []string{"../x", "a/../../x", "/abs", "a//b", "a/", "./a", "a/./b", "..", ".partial-x", ""} {
		if _, err := s.Put(t.Context(), k, bytes.NewReader(nil), store.PutOptions{}); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("Put(%q): %v, want ErrInvalid", k, err)
		}
		if _, _, err := s.Get(t.Context(), k); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", k, err)
		}
		if err := s.Delete(t.Context(), []string{k}); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("Delete(%q): %v, want ErrInvalid", k, err)
		}
	}
	for _, p := range []string{"../", "..", "snaps/../../", "/", "/abs/", "a//b/", "./", "snaps/./"} {
		if objs, err := s.List(t.Context(), p); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("List(%q) = %v, %v, want ErrInvalid", p, objs, err)
		}
		if _, err := s.SweepIncomplete(t.Context(), p, time.Now(), nil); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("SweepIncomplete(%q): %v, want ErrInvalid", p, err)
		}
	}
	for _, p := range []string{"", "snaps/", "snaps", "missing/"} {
		if _, err := s.List(t.Context(), p); err != nil {
			t.Errorf("List(%q): %v", p, err)
		}
	}
}

// Snapshots get the modes the umask gives any new file, not 0600.
func TestUmaskApplies(t *testing.T) {
	for _, tc := range []struct {
		umask int
		want  fs.FileMode
	}{{0o022, 0o644}, {0o002, 0o664}, {0o077, 0o600}} {
		old := syscall.Umask(tc.umask)
		s := newStore(t, t.TempDir())
		_, err := s.Put(t.Context(), "snaps/a.tar.zst", bytes.NewReader([]byte("x")), store.PutOptions{})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(s.root, "snaps", "a.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.want {
			t.Errorf("umask %03o: snapshot mode %03o, want %03o", tc.umask, got, tc.want)
		}
		di, _ := os.Stat(filepath.Join(s.root, "snaps"))
		if got, want := di.Mode().Perm(), 0o777&^fs.FileMode(tc.umask); got != want {
			t.Errorf("umask %03o: directory mode %03o, want %03o", tc.umask, got, want)
		}
	}
}

func TestPartialNames(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		ok         bool
	}{
		{".partial-snap-20261126T031500Z.tar.zst-0123456789abcdef", "snap-20261126T031500Z.tar.zst", true},
		{".partial-a-b-c-fedcba9876543210", "a-b-c", true},
		{".partial-check-0123456789abcdef", "check", true},
		{".partial-123456789", "", false}, // os.CreateTemp's, from older versions
		{".partial-snap.tar.zst-0123456789abcdeg", "", false},
		{".partial-snap.tar.zst_0123456789abcdef", "", false},
		{".partial--0123456789abcdef", "", false},
		{"snap.tar.zst-0123456789abcdef", "", false},
	} {
		base, ok := partialBase(tc.name)
		if base != tc.base || ok != tc.ok {
			t.Errorf("partialBase(%q) = %q, %v; want %q, %v", tc.name, base, ok, tc.base, tc.ok)
		}
	}

	// A Put in progress writes under a name that parses back to its key.
	s := newStore(t, t.TempDir())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(t.Context(), "snaps/snap-20261126T031500Z.tar.zst", pr, store.PutOptions{})
		done <- err
	}()
	pw.Write([]byte("some bytes"))
	left := s.Leftovers("snaps")
	pw.CloseWithError(errors.New("stop"))
	<-done
	if len(left) != 1 {
		t.Fatalf("partial files during Put: %q", left)
	}
	if base, ok := partialBase(filepath.Base(left[0])); !ok || base != "snap-20261126T031500Z.tar.zst" {
		t.Errorf("partial %s parses to %q, %v", left[0], base, ok)
	}
}

// Pruning removes this job's partial files older than the cutoff, and
// nothing else.
func TestSweepIncomplete(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	files := map[string]time.Time{
		"snaps/.partial-snap-20261120T000000Z.tar.zst-0123456789abcdef":  old, // ours, stale
		"snaps/.partial-snap-20261121T000000Z.tar.zst-1123456789abcdef":  old, // ours, stale
		"snaps/.partial-snap-20261126T000000Z.tar.zst-2123456789abcdef":  now, // ours, being written
		"snaps/.partial-other-20261120T000000Z.tar.zst-3123456789abcdef": old, // another job's
		"snaps/.partial-123456789":                                       old, // no key in the name
		"snaps/.partial-snap-20261120T000000Z.tar.zst-notahexsuffix000":  old,
		"other/.partial-snap-20261120T000000Z.tar.zst-4123456789abcdef":  old, // another prefix
		"snaps/snap-20261119T000000Z.tar.zst":                            old, // a snapshot
	}
	for rel, mtime := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
		os.Chtimes(p, mtime, mtime)
	}
	ours := func(key string) bool {
		return strings.HasPrefix(key, "snaps/snap-") && strings.HasSuffix(key, ".tar.zst")
	}
	removed, err := s.SweepIncomplete(t.Context(), "snaps/", now.Add(-24*time.Hour), ours)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{"snaps/snap-20261120T000000Z.tar.zst", "snaps/snap-20261121T000000Z.tar.zst"}; !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	for rel := range files {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
		gone := errors.Is(err, fs.ErrNotExist)
		if want := strings.HasPrefix(rel, "snaps/.partial-snap-2026112") && files[rel].Equal(old) && strings.HasSuffix(rel, "abcdef"); gone != want {
			t.Errorf("%s: removed %v, want %v", rel, gone, want)
		}
	}
	objs, err := s.List(t.Context(), "snaps/")
	if err != nil || len(objs) != 1 || objs[0].Key != "snaps/snap-20261119T000000Z.tar.zst" {
		t.Errorf("List shows %v, %v; want only the snapshot", objs, err)
	}
}

func TestPermissionErrorsAreAccess(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&fs.PathError{Op: "open", Path: "/s/k", Err: syscall.EACCES}, store.ErrAccess},
		{&fs.PathError{Op: "open", Path: "/s/k", Err: syscall.EPERM}, store.ErrAccess},
		{&fs.PathError{Op: "open", Path: "/s/k", Err: syscall.EROFS}, store.ErrAccess},
		{&fs.PathError{Op: "read", Path: "/s/k", Err: syscall.EIO}, store.ErrTransfer},
		{&fs.PathError{Op: "write", Path: "/s/k", Err: syscall.ENOSPC}, store.ErrTransfer},
	} {
		if err := newStore(t, t.TempDir()).classify(t.Context(), "reading", "k", tc.err); !errors.Is(err, tc.want) || !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) = %v, want it to wrap %v", tc.err, err, tc.want)
		}
	}
}
