package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// listed is one entry of an archive as a test compares it.
type listed struct {
	Type byte
	Size int64
	Link string
	Hash string
}

// listArchive decodes a complete archive and returns its entries in
// order, with their content hashes.
func listArchive(t *testing.T, data []byte) ([]string, map[string]listed) {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var names []string
	out := map[string]listed{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, out
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out[h.Name] = listed{Type: h.Typeflag, Size: h.Size, Link: h.Linkname, Hash: hex.EncodeToString(sum.Sum(nil))}
	}
}

// asListed is what an archive of tree should hold.
func asListed(tree map[string]testenv.Entry) map[string]listed {
	out := map[string]listed{}
	empty := hex.EncodeToString(sha256.New().Sum(nil))
	for rel, e := range tree {
		switch e.Type {
		case "dir":
			out[rel+"/"] = listed{Type: tar.TypeDir, Hash: empty}
		case "symlink":
			out[rel] = listed{Type: tar.TypeSymlink, Link: e.Link, Hash: empty}
		case "file":
			if e.Group != rel {
				out[rel] = listed{Type: tar.TypeLink, Link: e.Group, Hash: empty}
			} else {
				out[rel] = listed{Type: tar.TypeReg, Size: e.Size, Hash: e.Hash}
			}
		}
	}
	return out
}

func assertNoLeak(t *testing.T, before int) {
	t.Helper()
	if after := openFiles(t); after != before {
		t.Errorf("%d files open after the walk, %d before", after, before)
	}
}

// The root is followed when it is a symlink (mounted volumes, `..data`
// layouts), as `tar -C dir .` does; links inside stay links.
func TestWriteFollowsSymlinkedRoot(t *testing.T) {
	vol := t.TempDir()
	real := filepath.Join(vol, "..2026_11_26_03_15_00.1")
	testenv.MakeTree(t, real)
	if err := os.Symlink(filepath.Base(real), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(filepath.Join(vol, "..data"), src); err != nil {
		t.Fatal(err)
	}
	data, st := archiveOf(t, src, WriteOptions{})
	if st.Files != 13 || st.Symlinks != 4 {
		t.Fatalf("stats %+v: want the 13 files and 4 symlinks of the tree", st)
	}
	sc, err := Scan(t.Context(), src, WriteOptions{})
	if err != nil || sc != st {
		t.Errorf("Scan %+v, %v; Write %+v", sc, err, st)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	testenv.CompareTrees(t, real, dst, nil)
}

func TestWriteRootNotADirectory(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, []byte("x"), 0o644)
	os.Symlink("file", filepath.Join(dir, "link"))
	os.Symlink("nowhere", filepath.Join(dir, "dangling"))
	for _, p := range []string{f, filepath.Join(dir, "link"), filepath.Join(dir, "dangling")} {
		if _, err := Write(t.Context(), io.Discard, p, WriteOptions{}); !errors.Is(err, ErrSource) {
			t.Errorf("Write(%s): %v, want ErrSource", p, err)
		}
		if _, err := Scan(t.Context(), p, WriteOptions{}); !errors.Is(err, ErrSource) {
			t.Errorf("Scan(%s): %v, want ErrSource", p, err)
		}
	}
}

// An excluded directory is left out wherever the walk meets it: under its
// own name, and behind a bind mount (same device and inode). A symlink to
// it stays a symlink. Each one met gets one warning naming it.
func TestWriteExcludes(t *testing.T) {
	src := t.TempDir()
	store := filepath.Join(src, "backups")
	for _, p := range []string{"node-1/a.pcap", "backups/snapshots/kubeshark-20261126T031500Z.tar.zst", "backups/.partial-123", "z.json"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(p), 0o644)
	}
	os.Symlink("backups", filepath.Join(src, "link-to-store"))
	wantExcluded := []string{"backups"}
	if os.Geteuid() == 0 {
		mnt := filepath.Join(src, "node-1", "mnt")
		os.Mkdir(mnt, 0o755)
		if out, err := exec.Command("mount", "--bind", store, mnt).CombinedOutput(); err != nil {
			t.Logf("no bind mount (%v %s): testing names only", err, out)
		} else {
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			wantExcluded = append(wantExcluded, "node-1/mnt")
		}
	}
	// Through a symlinked path, as SNAPSHOT_FILE_DIR may be given.
	alias := filepath.Join(t.TempDir(), "store-alias")
	os.Symlink(store, alias)
	log, buf := logBuffer()
	before := openFiles(t)
	data, st := archiveOf(t, src, WriteOptions{Logger: log, Exclude: []string{alias, filepath.Join(t.TempDir(), "not-there")}})
	assertNoLeak(t, before)
	names, entries := listArchive(t, data)
	for _, n := range names {
		if strings.HasPrefix(n, "backups/") || strings.HasPrefix(n, "node-1/mnt") {
			t.Errorf("archived %s, inside an excluded directory", n)
		}
	}
	if e := entries["link-to-store"]; e.Type != tar.TypeSymlink || e.Link != "backups" {
		t.Errorf("link-to-store archived as %+v, want the symlink itself", e)
	}
	if _, ok := entries["node-1/a.pcap"]; !ok || entries["z.json"].Size == 0 {
		t.Errorf("the rest of the tree is missing: %q", names)
	}
	if st.Excluded != int64(len(wantExcluded)) {
		t.Errorf("stats %+v, want %d excluded", st, len(wantExcluded))
	}
	for _, rel := range wantExcluded {
		if n := strings.Count(buf.String(), `msg="left an excluded directory out of the snapshot" path=`+rel+" excluded="+alias); n != 1 {
			t.Errorf("%d warnings for %s, want 1:\n%s", n, rel, buf)
		}
	}
	sc, err := Scan(t.Context(), src, WriteOptions{Exclude: []string{alias}})
	if err != nil || sc != st {
		t.Errorf("Scan %+v, %v; Write %+v", sc, err, st)
	}

	// The root itself excluded, by any name: nothing sensible to store.
	for _, c := range [][2]string{{store, store}, {alias, store}, {store, alias}} {
		if _, err := Write(t.Context(), io.Discard, c[0], WriteOptions{Exclude: []string{c[1]}}); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "excluded") {
			t.Errorf("Write(%s) excluding %s: %v, want ErrSource", c[0], c[1], err)
		}
		if _, err := Scan(t.Context(), c[0], WriteOptions{Exclude: []string{c[1]}}); !errors.Is(err, ErrSource) {
			t.Errorf("Scan(%s) excluding %s: %v, want ErrSource", c[0], c[1], err)
		}
	}
	assertNoLeak(t, before)
}

// A store creates its prefix directory when the upload starts, after the
// walk began: the exclusion still holds once it exists.
func TestWriteExcludesDirectoryCreatedDuringWalk(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	os.MkdirAll(filepath.Join(src, "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "x.pcap"), []byte("x"), 0o644)
	later := filepath.Join(src, "b", "snapshots")
	created := false
	opts := WriteOptions{Exclude: []string{later}, openedDir: func(rel string) {
		if rel == "a" && !created {
			created = true
			os.Mkdir(later, 0o755)
			os.WriteFile(filepath.Join(later, ".partial-1"), []byte("half a snapshot"), 0o644)
		}
	}}
	data, st := archiveOf(t, src, opts)
	names, _ := listArchive(t, data)
	if !created || slices.Contains(names, "b/snapshots/") || slices.Contains(names, "b/snapshots/.partial-1") {
		t.Errorf("archived %q", names)
	}
	if st.Excluded != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Names of the job's own are skipped at any depth, whatever they are,
// without looking inside, and reported to the Reserved hook in order.
func TestWriteSkipsReservedNames(t *testing.T) {
	src := t.TempDir()
	files := []string{
		"node-1/a.pcap",
		".snapshot-job-lock",
		".snapshot-job-restore-0123abcd/node-1/a.pcap",
		".snapshot-job-restore-0123abcd/.snapshot-job-committed",
		"node-1/.snapshot-job-aside-0123abcd-1",
		"node-1/deeper/.snapshot-job-restore-ffff/x",
		"node-1/deeper/b.json",
		"node-1/.snapshot-job",  // not reserved: the prefix ends in a dash
		"node-1/.snapshot-jobs", // nor this
	}
	for _, p := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(p), 0o644)
	}
	// A FIFO with a reserved name is not even opened.
	syscall.Mkfifo(filepath.Join(src, "node-1", ".snapshot-job-fifo"), 0o644)
	want := []string{
		".snapshot-job-lock",
		".snapshot-job-restore-0123abcd",
		"node-1/.snapshot-job-aside-0123abcd-1",
		"node-1/.snapshot-job-fifo",
		"node-1/deeper/.snapshot-job-restore-ffff",
	}
	var reserved, scanned []string
	var opened []string
	data, st := archiveOf(t, src, WriteOptions{
		Reserved:  func(rel string) { reserved = append(reserved, rel) },
		openedDir: func(rel string) { opened = append(opened, rel) },
	})
	names, _ := listArchive(t, data)
	wantNames := []string{"node-1/", "node-1/.snapshot-job", "node-1/.snapshot-jobs", "node-1/a.pcap", "node-1/deeper/", "node-1/deeper/b.json"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("archived %q, want %q", names, wantNames)
	}
	if !slices.Equal(reserved, want) {
		t.Errorf("Reserved saw %q, want %q", reserved, want)
	}
	for _, o := range opened {
		if strings.Contains(o, ReservedPrefix) {
			t.Errorf("opened %s", o)
		}
	}
	if st.Excluded != int64(len(want)) || st.Skipped != 0 {
		t.Errorf("stats %+v", st)
	}
	sc, err := Scan(t.Context(), src, WriteOptions{Reserved: func(rel string) { scanned = append(scanned, rel) }})
	if err != nil || sc != st || !slices.Equal(scanned, want) {
		t.Errorf("Scan %+v, %v, saw %q; Write %+v", sc, err, scanned, st)
	}
}

// BeforeEnd runs after the last entry; its error is Write's, and the
// stream then has no end marker: what was written is a prefix of the
// complete stream, which no reader takes for a whole archive.
func TestWriteBeforeEnd(t *testing.T) {
	src := t.TempDir()
	writeNoise(t, filepath.Join(src, "a.pcap"), 9<<20) // a few frames
	os.WriteFile(filepath.Join(src, "z.json"), []byte("{}"), 0o644)

	calls := 0
	var seen Stats
	var progress atomic.Int64
	full, st := archiveOf(t, src, WriteOptions{Progress: &progress, BeforeEnd: func() error {
		calls++
		seen.Bytes = progress.Load()
		return nil
	}})
	if calls != 1 || seen.Bytes != st.Bytes {
		t.Fatalf("BeforeEnd called %d times, after %d of %d bytes", calls, seen.Bytes, st.Bytes)
	}
	if _, err := Verify(t.Context(), bytes.NewReader(full), VerifyOptions{}); err != nil {
		t.Fatalf("complete stream: %v", err)
	}

	busy := errors.New("a restore came and went")
	var out bytes.Buffer
	_, err := Write(t.Context(), &out, src, WriteOptions{BeforeEnd: func() error { return busy }})
	if err != busy {
		t.Fatalf("Write: %v, want the hook's error as it is", err)
	}
	if out.Len() == 0 || out.Len() >= len(full) || !bytes.Equal(out.Bytes(), full[:out.Len()]) {
		t.Fatalf("wrote %d bytes, want a strict prefix of the %d of the complete stream", out.Len(), len(full))
	}
	plain, err := io.ReadAll(zstdReader(t, out.Bytes()))
	if err != nil {
		t.Fatalf("the frames written must be whole: %v", err)
	}
	if bytes.HasSuffix(plain, make([]byte, 1024)) {
		t.Error("the aborted stream ends with a tar end marker")
	}
	if _, err := Verify(t.Context(), bytes.NewReader(out.Bytes()), VerifyOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify of the aborted stream: %v, want ErrCorrupt", err)
	}
}

func zstdReader(t *testing.T, data []byte) io.Reader {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zr.Close)
	return zr
}

func writeNoise(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A tree deeper than PATH_MAX backs up whole, in order, with no more open
// files than one per level plus the read-ahead's.
func TestWriteDeeperThanPathMax(t *testing.T) {
	src := t.TempDir()
	dt := testenv.MakeDeepTree(t, src, 6000, 100)
	before := openFiles(t)
	peak := 0
	data, st := archiveOf(t, src, WriteOptions{beforeOpen: func(string) { peak = max(peak, openFiles(t)) }})
	assertNoLeak(t, before)
	if bound := before + dt.Depth + 148; peak > bound {
		t.Errorf("%d files open at the peak, %d before; the bound is one per level (%d) plus 148", peak, before, dt.Depth)
	}
	if _, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tree := testenv.ReadTree(t, src, nil)
	names, entries := listArchive(t, data)
	if want := asListed(tree); !mapsEqual(entries, want) {
		t.Errorf("archive holds %d entries, the tree %d", len(entries), len(want))
		for n, e := range want {
			if entries[n] != e {
				t.Errorf("%.80s...: archived %+v, want %+v", n, entries[n], e)
				break
			}
		}
	}
	bottom := dt.Bottom + "/bottom.json"
	if len(bottom) <= 4096 || !slices.Contains(names, bottom) {
		t.Fatalf("the deepest file (%d bytes of path) is not in the archive", len(bottom))
	}
	if !slices.IsSortedFunc(names, func(a, b string) int { return strings.Compare(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/")) }) {
		t.Error("entries out of order")
	}
	sc, err := Scan(t.Context(), src, WriteOptions{})
	if err != nil || sc != st {
		t.Errorf("Scan %+v, %v; Write %+v", sc, err, st)
	}
	if st.HardLinks != 1 || st.Symlinks != 1 {
		t.Errorf("stats %+v", st)
	}
	// GNU tar reads it too.
	if _, err := exec.LookPath("tar"); err == nil {
		f := filepath.Join(t.TempDir(), "deep.tar.zst")
		os.WriteFile(f, data, 0o644)
		out, err := exec.Command("tar", "--zstd", "-tvf", f).CombinedOutput()
		if err != nil {
			t.Logf("tar --zstd -tvf: %v (%.200s)", err, out)
		} else if !strings.Contains(string(out), bottom+"\n") || !strings.Contains(string(out), " top.pcap link to "+dt.Bottom+"/hardlink.pcap\n") {
			t.Errorf("tar -tv does not list the deepest entries")
		}
	}
}

// A name longer than a restore accepts fails the backup, naming where it
// starts, before anything is stored; nothing stays open.
func TestWriteNameTooLong(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	testenv.MakeDeepTree(t, src, MaxNameLength+100, 255)
	before := openFiles(t)
	_, err := Write(t.Context(), io.Discard, src, WriteOptions{})
	assertNoLeak(t, before)
	for name, err := range map[string]error{"Write": err, "Scan": func() error { _, err := Scan(t.Context(), src, WriteOptions{}); return err }()} {
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), fmt.Sprintf("longer than %d bytes", MaxNameLength)) ||
			!strings.Contains(err.Error(), "level-00000-ddd") || len(err.Error()) > 1000 {
			t.Errorf("%s: %.300v, want ErrSource naming the start of the path, briefly", name, err)
		}
	}
	assertNoLeak(t, before)
}

// Entries come in the order of filepath.WalkDir: each directory's names
// sorted bytewise, a directory's contents right after it.
func TestWriteLexicalOrder(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"b", "a-", "a/z", "a/B", "A", "a0", "é", "a/.x"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), nil, 0o644)
	}
	data, _ := archiveOf(t, src, WriteOptions{})
	names, _ := listArchive(t, data)
	want := []string{"A", "a/", "a/.x", "a/B", "a/z", "a-", "a0", "b", "é"}
	if !slices.Equal(names, want) {
		t.Errorf("order %q, want %q", names, want)
	}
}

// Entries that change kind between the listing and the open are skipped
// with a warning, never followed and never blocked on.
func TestWriteEntriesReplacedDuringWalk(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("not part of the source"), 0o644)
	src := t.TempDir()
	for _, p := range []string{"a/f.pcap", "a/g.pcap", "a/h.pcap", "b/x.pcap", "c/y.pcap", "d.pcap"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(p), 0o644)
	}
	log, buf := logBuffer()
	data, st := archiveOf(t, src, WriteOptions{Logger: log, hint: func(string) {}, // no read-ahead
		openedDir: func(rel string) {
			if rel == "a" { // the root and a are listed; b and c are not opened yet
				os.Rename(filepath.Join(src, "b"), filepath.Join(outside, "b"))
				os.Symlink(outside, filepath.Join(src, "b"))
				os.RemoveAll(filepath.Join(src, "c"))
			}
		},
		beforeOpen: func(rel string) {
			p := filepath.Join(src, rel)
			switch rel {
			case "a/f.pcap":
				os.Remove(p)
				syscall.Mkfifo(p, 0o644)
			case "a/g.pcap":
				os.Remove(p)
				os.Symlink(filepath.Join(outside, "secret"), p)
			case "a/h.pcap":
				os.Remove(p)
				os.Mkdir(p, 0o755)
			}
		}})
	names, _ := listArchive(t, data)
	if want := []string{"a/", "d.pcap"}; !slices.Equal(names, want) {
		t.Errorf("archived %q, want %q", names, want)
	}
	if st.Skipped != 5 {
		t.Errorf("stats %+v, want 5 skipped", st)
	}
	for _, rel := range []string{"a/f.pcap", "a/g.pcap", "a/h.pcap", "b"} {
		if !strings.Contains(buf.String(), `replaced by another kind of file during the backup" path=`+rel+"\n") {
			t.Errorf("no warning for %s:\n%s", rel, buf)
		}
	}
	if !strings.Contains(buf.String(), `vanished during the backup" path=c`+"\n") {
		t.Errorf("no warning for c:\n%s", buf)
	}
}

// Write and Scan leave nothing open on any way out.
func TestWalkLeavesNothingOpen(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	before := openFiles(t)
	boom := errors.New("boom")
	cases := map[string]func() error{
		"BeforeEnd": func() error {
			_, err := Write(t.Context(), io.Discard, src, WriteOptions{BeforeEnd: func() error { return boom }})
			return err
		},
		"destination": func() error {
			_, err := Write(t.Context(), failWriter{boom}, src, WriteOptions{})
			return err
		},
		"cancelled midway": func() error {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, err := Write(ctx, io.Discard, src, WriteOptions{beforeOpen: func(rel string) {
				if strings.HasPrefix(rel, "names/") {
					cancel()
				}
			}})
			return err
		},
		"Scan": func() error {
			_, err := Scan(t.Context(), src, WriteOptions{})
			return err
		},
	}
	for name, f := range cases {
		err := f()
		if name == "Scan" && err != nil || name != "Scan" && err == nil {
			t.Errorf("%s: %v", name, err)
		}
		if after := openFiles(t); after != before {
			t.Errorf("%s: %d files open after, %d before", name, after, before)
		}
	}
}

// Files queued from many directories keep each its parent open: the
// queue's bound is what bounds them, not the number of directories.
func TestWriteOpenFilesBounded(t *testing.T) {
	src := t.TempDir()
	for i := range 300 {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i), "f.pcap")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	var log hintLog
	before := openFiles(t)
	peak := 0
	first := true
	archiveOf(t, src, WriteOptions{hint: log.hint, afterHeader: func(string) {
		if first {
			first = false
			log.waitFor(readAheadFiles) // the queue is full
		}
		peak = max(peak, openFiles(t))
	}})
	assertNoLeak(t, before)
	if peak > before+148 || peak < before+readAheadFiles {
		t.Errorf("%d files open at the peak, %d before: want the queued files' parents, at most 148", peak, before)
	}
}

// A backup refuses what a restore would refuse, before it writes it.
func TestBackupStaysWithinRestoreBounds(t *testing.T) {
	a := &archiver{paths: MaxNames}
	if err := a.withinBounds(&entry{kind: entFile, rel: "a"}); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "MaxNames") {
		t.Fatalf("entry beyond MaxNames: %v", err)
	}
	a = &archiver{dirMeta: MaxDirMetadata - dirMetaOverhead - 3}
	if err := a.withinBounds(&entry{kind: entDir, rel: "abc"}); err != nil {
		t.Fatalf("directory exactly at MaxDirMetadata: %v", err)
	}
	if err := a.withinBounds(&entry{kind: entDir, rel: "d"}); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "MaxDirMetadata") {
		t.Fatalf("directory beyond MaxDirMetadata: %v", err)
	}
	a = &archiver{}
	if err := a.withinBounds(&entry{kind: entSymlink, rel: "l", target: strings.Repeat("x", MaxSymlinkTarget+1)}); !errors.Is(err, ErrSource) {
		t.Fatalf("long symlink target: %v", err)
	}
	a = &archiver{}
	if err := a.withinBounds(&entry{kind: entReserved, rel: ".snapshot-job-lock"}); err != nil || a.paths != 0 {
		t.Fatalf("a skipped entry counted: %v, %d", err, a.paths)
	}
}
