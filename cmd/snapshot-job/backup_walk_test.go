package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	bin "encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// snapshotEntry is one entry of a stored snapshot as these tests compare
// it with the source.
type snapshotEntry struct {
	Type byte
	Size int64
	Link string
	Hash string
}

// readSnapshot checks a stored snapshot end to end and returns its
// entries in order.
func readSnapshot(t *testing.T, data []byte) ([]string, map[string]snapshotEntry) {
	t.Helper()
	if _, err := archive.Verify(t.Context(), bytes.NewReader(data), archive.VerifyOptions{}); err != nil {
		t.Fatalf("the snapshot does not verify: %v", err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var names []string
	out := map[string]snapshotEntry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, out
		}
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out[h.Name] = snapshotEntry{h.Typeflag, h.Size, h.Linkname, hex.EncodeToString(sum.Sum(nil))}
	}
}

// snapshotOf is what a snapshot of the tree at dir should hold.
func snapshotOf(t *testing.T, dir string) map[string]snapshotEntry {
	t.Helper()
	empty := hex.EncodeToString(sha256.New().Sum(nil))
	out := map[string]snapshotEntry{}
	for rel, e := range testenv.ReadTree(t, dir, nil) {
		switch {
		case e.Type == "dir":
			out[rel+"/"] = snapshotEntry{Type: tar.TypeDir, Hash: empty}
		case e.Type == "symlink":
			out[rel] = snapshotEntry{Type: tar.TypeSymlink, Link: e.Link, Hash: empty}
		case e.Type == "file" && e.Group != rel:
			out[rel] = snapshotEntry{Type: tar.TypeLink, Link: e.Group, Hash: empty}
		case e.Type == "file":
			out[rel] = snapshotEntry{Type: tar.TypeReg, Size: e.Size, Hash: e.Hash}
		}
	}
	return out
}

func sameEntries(t *testing.T, got, want map[string]snapshotEntry) {
	t.Helper()
	n := 0
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			if n++; n <= 5 {
				t.Errorf("%.100s: snapshot holds %+v (present %v), want %+v", name, g, ok, w)
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			if n++; n <= 5 {
				t.Errorf("%.100s: in the snapshot, not in the source", name)
			}
		}
	}
	if n > 0 {
		t.Fatalf("%d entries differ (snapshot %d, source %d)", n, len(got), len(want))
	}
}

// storedSnapshot is the one snapshot a file store holds under prefix/name.
func storedSnapshot(t *testing.T, store, prefix, name string) []byte {
	t.Helper()
	var found []string
	for _, f := range storeFiles(t, store) {
		if strings.HasPrefix(filepath.ToSlash(f), prefix+name+"-") && strings.HasSuffix(f, ".tar.zst") {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("store holds %q, want one %s%s-<time>.tar.zst", storeFiles(t, store), prefix, name)
	}
	b, err := os.ReadFile(filepath.Join(store, found[0]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logged returns the log lines with this message.
func (r jobResult) logged(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range r.lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// A source that is a symlink to the volume's directory (`..data`-style
// layouts, mounted volumes) is backed up with everything in it; links
// inside stay links.
func TestBackupSymlinkedSource(t *testing.T) {
	vol := t.TempDir()
	real := filepath.Join(vol, "..2026_11_26_03_15_00.1")
	testenv.MakeTree(t, real)
	os.Symlink(filepath.Base(real), filepath.Join(vol, "..data"))
	src := filepath.Join(t.TempDir(), "snapshots")
	os.Symlink(filepath.Join(vol, "..data"), src)
	e, store := fileEnv(t, src)
	r := runJob(t, e)
	expect(t, r, 0)
	_, entries := readSnapshot(t, storedSnapshot(t, store, "snapshots/", "kubeshark"))
	sameEntries(t, entries, snapshotOf(t, real))

	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	testenv.CompareTrees(t, real, dst, nil)
}

// A file store inside the source is left out of every snapshot, with one
// warning naming it: otherwise each snapshot holds its own half-written
// file and all the earlier ones.
func TestBackupLeavesOutFileStore(t *testing.T) {
	excludedWarning := "left an excluded directory out of the snapshot"
	t.Run("StoreInsideSource", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		want := snapshotOf(t, src)
		store := filepath.Join(src, "backups")
		os.Mkdir(store, 0o755)
		e, _ := fileEnv(t, src)
		e = e.with("SNAPSHOT_FILE_DIR", store)
		// Neither a symlink to it nor (as root) a bind mount of it brings
		// it back.
		os.Symlink("backups", filepath.Join(src, "store-link"))
		want["store-link"] = snapshotEntry{Type: tar.TypeSymlink, Link: "backups", Hash: hex.EncodeToString(sha256.New().Sum(nil))}
		wantWarned := []string{"backups"}
		if os.Geteuid() == 0 {
			mnt := filepath.Join(src, "node-2", "mnt")
			os.Mkdir(mnt, 0o755)
			if out, err := exec.Command("mount", "--bind", store, mnt).CombinedOutput(); err == nil {
				t.Cleanup(func() { exec.Command("umount", mnt).Run() })
				wantWarned = append(wantWarned, "node-2/mnt")
			} else {
				t.Logf("no bind mount: %v %s", err, out)
				os.Remove(mnt)
			}
		}
		for _, name := range []string{"kubeshark", "again"} {
			r := runJob(t, e.with("SNAPSHOT_NAME", name))
			expect(t, r, 0)
			warned := r.logged(excludedWarning)
			if len(warned) != len(wantWarned) {
				t.Fatalf("%d warnings %q, want one for each of %q\n%s", len(warned), excludedWarning, wantWarned, r)
			}
			for i, w := range warned {
				if w["level"] != "WARN" || w["path"] != wantWarned[i] || w["excluded"] != store {
					t.Errorf("warning %v, want path %s and excluded %s", w, wantWarned[i], store)
				}
			}
			_, entries := readSnapshot(t, storedSnapshot(t, store, "snapshots/", name))
			sameEntries(t, entries, want)
		}
	})

	// The store's root outside the source, the prefix's directory inside
	// it (created by the first upload).
	t.Run("PrefixInsideSource", func(t *testing.T) {
		parent := t.TempDir()
		src := filepath.Join(parent, "vol")
		testenv.MakeTree(t, src)
		want := snapshotOf(t, src)
		e, _ := fileEnv(t, src)
		e = e.with("SNAPSHOT_FILE_DIR", parent, "SNAPSHOT_CLOUD_PREFIX", "vol/snaps/")
		for i, name := range []string{"kubeshark", "again"} {
			r := runJob(t, e.with("SNAPSHOT_NAME", name))
			expect(t, r, 0)
			_, entries := readSnapshot(t, storedSnapshot(t, parent, "vol/snaps/", name))
			sameEntries(t, entries, want)
			if i == 1 {
				if w := r.logged(excludedWarning); len(w) != 1 || w[0]["path"] != "snaps" {
					t.Errorf("warnings %v, want one for snaps", w)
				}
			}
		}
	})

	t.Run("StoreIsSource", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, _ := fileEnv(t, src)
		r := runJob(t, e.with("SNAPSHOT_FILE_DIR", src))
		expect(t, r, 4, "excluded", src)
		if f := storeFiles(t, src); len(f) != 1 {
			t.Errorf("source holds %q", f)
		}
	})
}

// A tree deeper than PATH_MAX (a restore can create one) backs up whole.
func TestBackupDeeperThanPathMax(t *testing.T) {
	src := t.TempDir()
	dt := testenv.MakeDeepTree(t, src, 6000, 120)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	data := storedSnapshot(t, store, "snapshots/", "kubeshark")
	names, entries := readSnapshot(t, data)
	sameEntries(t, entries, snapshotOf(t, src))
	bottom := dt.Bottom + "/bottom.json"
	if len(bottom) <= 4096 || !slices.Contains(names, bottom) {
		t.Fatalf("the snapshot misses the deepest file (%d bytes of path)", len(bottom))
	}
	expect(t, runJob(t, e, "verify"), 0)
	if _, err := exec.LookPath("tar"); err == nil {
		f := filepath.Join(t.TempDir(), "deep.tar.zst")
		os.WriteFile(f, data, 0o644)
		if out, err := exec.Command("tar", "--zstd", "-tvf", f).CombinedOutput(); err != nil {
			t.Logf("tar --zstd -tvf: %v %.200s", err, out)
		} else if !strings.Contains(string(out), bottom+"\n") {
			t.Error("GNU tar does not list the deepest file")
		}
	}
}

// A path longer than a restore accepts fails the backup before anything
// is stored, naming where the path starts.
func TestBackupPathTooLong(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	testenv.MakeDeepTree(t, src, archive.MaxNameLength+1, 255)
	e, store := fileEnv(t, src)
	r := runJob(t, e)
	expect(t, r, 4, "longer than "+strconv.Itoa(archive.MaxNameLength)+" bytes", "level-00000-ddd")
	if len(r.lastMsg()) > 2000 {
		t.Errorf("the error line is %d bytes long", len(r.lastMsg()))
	}
	if f := storeFiles(t, store); len(f) != 0 {
		t.Errorf("store holds %q", f)
	}
}

// Names of the job's own are never archived, at any depth, even stale
// ones a killed restore left.
func TestBackupSkipsReservedNames(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	want := snapshotOf(t, src)
	for _, p := range []string{
		".snapshot-job-lock",
		".snapshot-job-restore-0123abcd/node-1/capture-0001.pcap",
		".snapshot-job-restore-0123abcd/.snapshot-job-committed",
		"node-1/.snapshot-job-aside-0123abcd-1/old.pcap",
		"d00/d01/.snapshot-job-lock",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte("the job's own"), 0o644)
		// Stale: lock files of restores long gone (a record that does
		// not parse is judged by its age).
		old := time.Now().Add(-time.Hour)
		os.Chtimes(filepath.Join(src, p), old, old)
	}
	e, store := fileEnv(t, src)
	r := runJob(t, e)
	expect(t, r, 0)
	names, entries := readSnapshot(t, storedSnapshot(t, store, "snapshots/", "kubeshark"))
	for _, n := range names {
		if strings.Contains(n, archive.ReservedPrefix) {
			t.Errorf("archived %s", n)
		}
	}
	sameEntries(t, entries, want)
	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	testenv.CompareTrees(t, src, dst, nil)
}

// The size a backup announces, the object's metadata and what it stored
// agree: a hard-linked file counts once, as it is stored once.
func TestBackupCountsHardLinksOnce(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src) // a 300,000-byte file with 3 names
	var files, size int64
	for rel, e := range testenv.ReadTree(t, src, nil) {
		if e.Type == "file" && e.Group == rel {
			files++
			size += e.Size
		}
	}
	fx := &s3Fixture{v: testenv.StartVersity(t)}
	e, bucket := fx.setup(t, src)
	r := runJob(t, e)
	expect(t, r, 0)
	started, stored := r.logged("backup started"), r.logged("snapshot stored")
	if len(started) != 1 || len(stored) != 1 {
		t.Fatalf("log lines:\n%s", r)
	}
	keys := fx.v.Keys(t, bucket, "snapshots/")
	if len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
	head, err := fx.v.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: &bucket, Key: &keys[0]})
	if err != nil {
		t.Fatal(err)
	}
	num := func(v any) int64 {
		switch v := v.(type) {
		case float64:
			return int64(v)
		case string:
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		return -1
	}
	for what, got := range map[string]int64{
		"backup started files":         num(started[0]["files"]),
		"backup started source_bytes":  num(started[0]["source_bytes"]),
		"metadata files":               num(head.Metadata["files"]),
		"metadata source-bytes":        num(head.Metadata["source-bytes"]),
		"snapshot stored source_bytes": num(stored[0]["source_bytes"]),
	} {
		want := size
		if strings.HasSuffix(what, "files") {
			want = files
		}
		if got != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
}

// A backup walks the source twice: once to size it before the upload
// starts, once to archive it (the read-ahead follows the archiver's own
// walk). inotify counts the opens of every directory below the root.
func TestBackupWalksSourceTwice(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	for i := range 200 { // enough files to fill the read-ahead window
		os.WriteFile(filepath.Join(src, "node-2", "f"+strconv.Itoa(i)+".json"), []byte("{}"), 0o644)
	}
	e, _ := fileEnv(t, src)
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Skip("no inotify:", err)
	}
	defer unix.Close(in)
	dirs := map[int]string{}
	for rel, en := range testenv.ReadTree(t, src, nil) {
		if en.Type != "dir" {
			continue
		}
		wd, err := unix.InotifyAddWatch(in, filepath.Join(src, rel), unix.IN_OPEN|unix.IN_ONLYDIR)
		if err != nil {
			t.Fatal(err)
		}
		dirs[wd] = rel
	}
	drainInotify(t, in) // ReadTree's own opens
	expect(t, runJob(t, e), 0)
	opens := map[string]int{}
	for _, ev := range drainInotify(t, in) {
		if ev.name == "" { // the watched directory itself
			opens[dirs[ev.wd]]++
		}
	}
	for _, rel := range dirs {
		if opens[rel] != 2 {
			t.Errorf("%s opened %d times, want 2 (scan, archive)", rel, opens[rel])
		}
	}
}

type inotifyEvent struct {
	wd   int
	name string
}

func drainInotify(t *testing.T, fd int) []inotifyEvent {
	t.Helper()
	var out []inotifyEvent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			wd := int(int32(bin.NativeEndian.Uint32(b[0:])))
			mask := bin.NativeEndian.Uint32(b[4:])
			l := int(bin.NativeEndian.Uint32(b[12:]))
			name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+l]), "\x00")
			if mask&unix.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflowed")
			}
			out = append(out, inotifyEvent{wd, name})
			b = b[unix.SizeofInotifyEvent+l:]
		}
	}
}

// A directory the pod's user cannot read fails the backup naming it.
func TestUnreadableSourceDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the job as another user")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "readable.pcap"), []byte("ok"), 0o644)
	os.Mkdir(filepath.Join(src, "node-private"), 0o700) // root's
	os.WriteFile(filepath.Join(src, "node-private", "x.pcap"), []byte("x"), 0o644)
	e, store := fileEnv(t, src)
	reachable(t, src, false)
	reachable(t, store, true)
	reachable(t, filepath.Dir(e["SNAPSHOT_TERMINATION_LOG"]), true)
	expect(t, runJobAs(t, e), 4, "node-private", "permission denied")
	if f := storeFiles(t, store); len(f) != 0 {
		t.Errorf("store holds %q", f)
	}
}

// The walk holds a directory open per level: a tree deeper than the
// open-file limit allows fails with exit 4 and says which limit to raise.
func TestBackupDeeperThanOpenFileLimit(t *testing.T) {
	src := t.TempDir()
	testenv.MakeDeepTree(t, src, 100*13, 12) // 100 levels
	e, store := fileEnv(t, src)
	cmd := exec.Command("sh", "-c", `ulimit -n 40 && exec "$0" backup`, binary)
	cmd.Env = e.list(t)
	r := runCmd(t, cmd)
	expect(t, r, 4, "too many open files", "RLIMIT_NOFILE", "level-00000-")
	if f := storeFiles(t, store); len(f) != 0 {
		t.Errorf("store holds %q", f)
	}
}

// A tree deeper than PATH_MAX comes back exactly: the backup walks it by
// directory handles and the restore writes it the same way.
func TestRoundTripDeeperThanPathMax(t *testing.T) {
	src := t.TempDir()
	testenv.MakeDeepTree(t, src, 6000, 120)
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	testenv.CompareTrees(t, src, dst, nil)
}
