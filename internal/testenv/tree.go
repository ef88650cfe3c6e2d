package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// ReservedPrefix starts the names the job keeps for itself in a volume
// (archive.ReservedPrefix; this package cannot import archive, whose
// tests import it). ReadTree leaves them out: a restored target holds
// the restore's lock file.
const ReservedPrefix = ".snapshot-job-"

// ReadTree describes every path under dir except those skip matches
// (relative, slash-separated) and those with a reserved name, at any
// depth. It follows dir itself when it is a symlink, as a backup does,
// and reads relative to directory handles, so that a tree deeper than
// PATH_MAX reads too.
func ReadTree(t testing.TB, dir string, skip func(rel string) bool) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("reading tree %s: %v", dir, err)
	}
	defer unix.Close(fd)
	r := treeReader{out: out, skip: skip, inodes: map[uint64]string{}}
	if err := r.dir(fd, ""); err != nil {
		t.Fatalf("reading tree %s: %v", dir, err)
	}
	return out
}

type treeReader struct {
	out    map[string]Entry
	skip   func(rel string) bool
	inodes map[uint64]string
}

func (r *treeReader) dir(dfd int, prefix string) error {
	names, err := dirNames(dfd)
	if err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	slices.Sort(names)
	for _, name := range names {
		rel := prefix + name
		if strings.HasPrefix(name, ReservedPrefix) || (r.skip != nil && r.skip(rel)) {
			continue
		}
		if err := r.one(dfd, name, rel); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	return nil
}

func (r *treeReader) one(dfd int, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	e := Entry{Mode: modeOf(st.Mode), MTime: st.Mtim.Nano()}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = "file", st.Size
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), rel)
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		e.Hash = hex.EncodeToString(h.Sum(nil))
		if first, ok := r.inodes[st.Ino]; ok {
			e.Group = first
		} else {
			r.inodes[st.Ino] = rel
			e.Group = rel
		}
	case unix.S_IFDIR:
		e.Type = "dir"
		r.out[rel] = e
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return r.dir(fd, rel+"/")
	case unix.S_IFLNK:
		e.Type = "symlink"
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return err
		}
		e.Link = string(buf[:n])
	default:
		e.Type = "other"
	}
	r.out[rel] = e
	return nil
}

// dirNames lists an open directory, without . and ..
func dirNames(fd int) ([]string, error) {
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// DeepTree is what MakeDeepTree built.
type DeepTree struct {
	Bottom string   // the deepest directory, relative and slash-separated
	Files  []string // every regular file, relative
	Depth  int      // directory levels below the root
}

// MakeDeepTree builds under dir a chain of directories whose deepest
// path is at least minPath bytes long, with names of up to nameLen bytes
// (at most 255): deeper than PATH_MAX (4096) takes ordinary names, beyond
// archive.MaxNameLength long ones. It works relative to directory handles,
// as nothing path-based reaches that deep. Along the way: a file every
// few levels, a symlink and an empty directory at the bottom, and a hard
// link at the bottom to a file near the top. os.RemoveAll (t.TempDir's
// cleanup) removes such trees.
func MakeDeepTree(t testing.TB, dir string, minPath, nameLen int) DeepTree {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(err)
	var dt DeepTree
	write := func(dfd int, rel, name, content string) {
		t.Helper()
		f, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		must(err)
		_, err = unix.Write(f, []byte(content))
		must(err)
		must(unix.Close(f))
		dt.Files = append(dt.Files, rel+name)
	}
	rel := ""
	write(fd, rel, "top.pcap", "near the top")
	var top int // stays open for the hard link
	top, err = unix.Dup(fd)
	must(err)
	defer unix.Close(top)
	for level := 0; len(rel) < minPath; level++ {
		name := fmt.Sprintf("level-%05d-", level)
		name += strings.Repeat("d", max(0, min(nameLen, 255)-len(name)))
		must(unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		must(err)
		must(unix.Close(fd))
		fd = next
		rel += name + "/"
		dt.Depth++
		if level%8 == 7 {
			write(fd, rel, "capture.pcap", "level "+strconv.Itoa(level))
		}
	}
	write(fd, rel, "bottom.json", `{"deep":true}`)
	must(unix.Symlinkat("bottom.json", fd, "latest"))
	must(unix.Mkdirat(fd, "empty", 0o755))
	must(unix.Linkat(top, "top.pcap", fd, "hardlink.pcap", 0))
	must(unix.Close(fd))
	dt.Bottom = strings.TrimSuffix(rel, "/")
	return dt
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

// LockName is the volume lock a restore leaves in its target (a copy of
// volume.LockName, which testenv cannot import).
const LockName = ReservedPrefix + "lock"

// IsLock is a skip function for ReadDeepTree: the volume lock is the job's
// own bookkeeping, rewritten by every restore.
func IsLock(rel string) bool { return path.Base(rel) == LockName }
