package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// MakeTree fills dir with a tree that exercises every case a snapshot
// round trip must keep: content, modes, nanosecond mtimes, symlinks
// (relative, absolute, dangling), hard links, empty files and dirs, names
// with spaces, tabs, unicode and a leading dash, a 200-byte name, a path
// 30 levels deep, a sparse file and a read-only directory.
func MakeTree(t testing.TB, dir string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, data []byte, mode fs.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	must(os.MkdirAll(dir, 0o755))
	write("node-1/capture-0001.pcap", random(300_000), 0o644)
	write("node-1/capture-0002.pcap", random(1<<20+17), 0o600)
	write("node-1/events.json", []byte(strings.Repeat(`{"src":"10.0.0.1","dst":"10.0.0.2","proto":"http"}`+"\n", 5000)), 0o640)
	write("node-2/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write("node-2/empty.pcap", nil, 0o644)
	write("names/with space.json", []byte("space"), 0o644)
	write("names/with\ttab.json", []byte("tab"), 0o644)
	write("names/čaj ☕ 日本.pcap", []byte("unicode"), 0o644)
	write("names/-rf", []byte("leading dash"), 0o644)
	write("names/"+strings.Repeat("n", 196)+".bin", []byte("long name"), 0o644)
	deep := ""
	for i := range 30 {
		deep = filepath.Join(deep, fmt.Sprintf("d%02d", i))
	}
	write(filepath.Join(deep, "bottom.txt"), []byte("30 levels down"), 0o644)
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	must(os.Symlink("node-1/capture-0001.pcap", filepath.Join(dir, "latest")))
	must(os.Symlink("/etc/hostname", filepath.Join(dir, "absolute-link")))
	must(os.Symlink("does/not/exist", filepath.Join(dir, "dangling-link")))
	must(os.Symlink("../node-2", filepath.Join(dir, "names", "up-link")))
	must(os.Link(filepath.Join(dir, "node-1/capture-0001.pcap"), filepath.Join(dir, "node-2/hardlink.pcap")))
	must(os.Link(filepath.Join(dir, "node-1/capture-0001.pcap"), filepath.Join(dir, "names/hardlink-2.pcap")))
	// Sparse: 64 MiB long, 4 KiB of data in the middle.
	sp, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(err)
	_, err = sp.WriteAt(random(4096), 32<<20)
	must(err)
	must(sp.Truncate(64 << 20))
	must(sp.Close())
	write("readonly/inside.txt", []byte("cannot add files here"), 0o444)
	// Times last, deepest first, symlinks without following, so that
	// later writes do not move them.
	var paths []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	slices.Reverse(paths)
	base := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	for i, p := range paths {
		if p == dir {
			continue
		}
		mt := base.Add(-time.Duration(i)*time.Hour - time.Duration(i*7919+1)*time.Nanosecond)
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	must(os.Chmod(filepath.Join(dir, "readonly"), 0o555))
	ro := filepath.Join(dir, "readonly")
	must(unix.UtimesNanoAt(unix.AT_FDCWD, ro, []unix.Timespec{unix.NsecToTimespec(base.UnixNano()), unix.NsecToTimespec(base.UnixNano())}, 0))
	t.Cleanup(func() { _ = os.Chmod(ro, 0o755) })
}

// Entry describes one path of a tree as CompareTrees sees it.
type Entry struct {
	Type  string // "file", "dir", "symlink", "other"
	Mode  fs.FileMode
	MTime int64 // nanoseconds
	Size  int64
	Hash  string // content of files
	Link  string // symlink target
	Group string // hard link group: first path with the same inode
}

// ReadTree describes every path under dir except those skip matches
// (relative, slash-separated).
func ReadTree(t testing.TB, dir string, skip func(rel string) bool) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := Entry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid), MTime: fi.ModTime().UnixNano()}
		switch {
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			e.Hash = hex.EncodeToString(h.Sum(nil))
			ino := fi.Sys().(*syscall.Stat_t).Ino
			if first, ok := inodes[ino]; ok {
				e.Group = first
			} else {
				inodes[ino] = rel
				e.Group = rel
			}
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "symlink"
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Type = "other"
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CompareTrees fails the test unless got holds exactly the entries of
// want, with the same types, modes, nanosecond mtimes, contents, link
// targets and hard-link groups. skip names paths to leave out on both sides.
func CompareTrees(t testing.TB, want, got string, skip func(rel string) bool) {
	t.Helper()
	w, g := ReadTree(t, want, skip), ReadTree(t, got, skip)
	var problems []string
	for rel, we := range w {
		ge, ok := g[rel]
		if !ok {
			problems = append(problems, "missing: "+rel)
			continue
		}
		if we != ge {
			problems = append(problems, fmt.Sprintf("differs: %s\n  want %+v\n  got  %+v", rel, we, ge))
		}
	}
	for rel := range g {
		if _, ok := w[rel]; !ok {
			problems = append(problems, "unexpected: "+rel)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("trees %s and %s differ (%d problems):\n%s", want, got, len(problems), strings.Join(problems, "\n"))
	}
	if len(w) == 0 {
		t.Fatalf("tree %s is empty: nothing was compared", want)
	}
}
