package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// treeWithRoot is ReadTree plus the directory itself as ".", so that its
// mode and modification time are compared too.
func treeWithRoot(t *testing.T, dir string) map[string]testenv.Entry {
	t.Helper()
	m := testenv.ReadDeepTree(t, dir, testenv.IsLock)
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	m["."] = testenv.Entry{Type: "dir", Mode: os.FileMode(st.Mode & 0o7777), MTime: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	return m
}

func assertUnchanged(t *testing.T, before map[string]testenv.Entry, dir string) {
	t.Helper()
	if d := testenv.SameTree(before, treeWithRoot(t, dir)); d != "" {
		t.Fatalf("the restore directory changed:\n%s", d)
	}
}

// podTarget is a restore directory the pod's user owns, as fsGroup or an
// init container makes it, with the store usable (podStore).
func podTarget(t *testing.T, e env, store string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "restore")
	os.Mkdir(dst, 0o755)
	reachable(t, dst, true)
	podStore(t, e, store)
	return dst
}

// podStore hands the file store (the file store checks that it can
// write) and the termination log's directory to the pod's user.
func podStore(t *testing.T, e env, store string) {
	t.Helper()
	reachable(t, store, true)
	filepath.WalkDir(store, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			os.Chown(p, podUID, podUID)
		}
		return nil
	})
	reachable(t, filepath.Dir(e["SNAPSHOT_TERMINATION_LOG"]), true)
}

// As the pod's user, restoring with overwrite over an earlier restore
// that holds a read-only directory (the job's own) replaces what the
// snapshot has, instead of failing half-way with exit 4.
func TestOverwriteReadOnlyDirectoryAsPodUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the job as the pod's user")
	}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	dst := podTarget(t, e, store)
	expect(t, runJobAs(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	testenv.CompareTrees(t, src, dst, nil)

	// A newer snapshot in which the read-only directory's file changed.
	os.Chmod(filepath.Join(src, "readonly"), 0o755)
	p := filepath.Join(src, "readonly", "inside.txt")
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("newer"), 0o444)
	os.Chmod(p, 0o444)
	os.Chmod(filepath.Join(src, "readonly"), 0o555)
	os.WriteFile(filepath.Join(src, "node-1", "events.json"), []byte("newer events"), 0o640)
	e2 := e.with("SNAPSHOT_NAME", "newer")
	expect(t, runJob(t, e2), 0)
	podStore(t, e2, store)
	r := runJobAs(t, e2.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore")
	expect(t, r, 0)
	testenv.CompareTrees(t, src, dst, nil)
	assertNothingReserved(t, dst)
}

func assertNothingReserved(t *testing.T, dir string) {
	t.Helper()
	for rel := range testenv.ReadDeepTree(t, dir, nil) {
		if strings.Contains(rel, ".snapshot-job-") && rel != testenv.LockName {
			t.Errorf("left behind: %s", rel)
		}
	}
}

// As the pod's user, a snapshot that would replace an entry in a
// directory the user may not write (root's) is refused before anything
// moves: the target stays exactly as it was, and the message says which
// directory and what to do.
func TestOverwriteConflictChangesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the job as the pod's user")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("new a"), 0o644)
	os.MkdirAll(filepath.Join(src, "z-locked"), 0o755)
	os.WriteFile(filepath.Join(src, "z-locked", "f.pcap"), []byte("new f"), 0o644)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	dst := podTarget(t, e, store)
	os.WriteFile(filepath.Join(dst, "a.txt"), []byte("old a"), 0o644)
	os.Chown(filepath.Join(dst, "a.txt"), podUID, podUID)
	os.MkdirAll(filepath.Join(dst, "z-locked"), 0o755) // root's, not writable by the pod's user
	os.WriteFile(filepath.Join(dst, "z-locked", "f.pcap"), []byte("old f"), 0o644)
	before := treeWithRoot(t, dst)
	r := runJobAs(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore")
	expect(t, r, 4, "z-locked", "belongs to uid 0", "make it writable", "nothing was changed")
	assertUnchanged(t, before, dst)
}

// An archive holding lost+found at its root (a fresh ext4 volume has its
// own) restores everything else, with a warning, and leaves the volume's
// lost+found alone.
func TestSnapshotWithLostAndFound(t *testing.T) {
	data := testenv.TarZst(t,
		testenv.File("lost+found", "a file named like the volume's directory"),
		testenv.Dir("node-1/"),
		testenv.File("node-1/a.pcap", "pcap"),
		testenv.File("zz.json", "{}"),
	)
	e, store := fileEnv(t, t.TempDir())
	putSnapshot(t, store, data)
	dst := filepath.Join(t.TempDir(), "restore")
	os.MkdirAll(filepath.Join(dst, "lost+found"), 0o700)
	os.WriteFile(filepath.Join(dst, "lost+found", "#12345"), []byte("fsck found this"), 0o600)
	lf := testenv.ReadTree(t, dst, nil)
	r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore")
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "lost+found at the root belongs to the volume") {
		t.Errorf("no warning:\n%s", r.stderr)
	}
	got := testenv.ReadTree(t, dst, nil)
	for k, v := range lf {
		if got[k] != v {
			t.Errorf("%s changed: %+v", k, got[k])
		}
	}
	if got["node-1/a.pcap"].Size != 4 || got["zz.json"].Size != 2 || len(got) != 5 {
		t.Errorf("restored %v", got)
	}
}

// A failed restore into a directory that did not exist removes every
// directory it created for it, not only the last.
func TestFailedRestoreRemovesTheDirectoriesItCreated(t *testing.T) {
	e, store := fileEnv(t, t.TempDir())
	putSnapshot(t, store, []byte("not a snapshot"))
	parent := t.TempDir()
	r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", filepath.Join(parent, "a", "b", "c")), "restore")
	expect(t, r, 7)
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// A restore killed during its commit left its journal: the next run
// rolls the target back before anything else, so that it finds exactly
// what was there before (and here, with IF_NOT_EMPTY=skip, leaves it).
func TestRestoreRecoversAnInterruptedCommit(t *testing.T) {
	for _, user := range []string{"root", "pod"} {
		t.Run(user, func(t *testing.T) {
			if user == "pod" && os.Geteuid() != 0 {
				t.Skip("needs root to run the job as the pod's user")
			}
			src := t.TempDir()
			os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
			e, store := fileEnv(t, src)
			expect(t, runJob(t, e), 0)
			dst := podTarget(t, e, store)
			d := filepath.Join(dst, "node-1")
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "a.pcap"), []byte("old a"), 0o644)
			os.WriteFile(filepath.Join(dst, "keep.json"), []byte("keep"), 0o644)
			old := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
			os.Chtimes(d, old, old)
			os.Chtimes(dst, old, old)
			if user == "pod" {
				filepath.Walk(dst, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, podUID, podUID) })
				os.Chtimes(d, old, old)
				os.Chtimes(dst, old, old)
			}
			before := treeWithRoot(t, dst)
			stateOf := func(p string) string {
				var st syscall.Stat_t
				syscall.Lstat(p, &st)
				return fmt.Sprintf("mode=%#o atime=%d.%09d mtime=%d.%09d", st.Mode&0o7777, st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
			}
			journal := "snapshot-job commit journal 1\nroot " + stateOf(dst) + "\nenter \"node-1\" " + stateOf(d) +
				"\nmove \"a.pcap\" \".snapshot-job-aside-dead-1\"\nmove \"b.pcap\" \"\"\nleave\nmove \"new.json\" \"\"\nend\n"
			// The state the killed run left: a.pcap set aside and
			// replaced, b.pcap still staged, new.json moved in.
			staging := filepath.Join(dst, ".snapshot-job-restore-dead")
			os.MkdirAll(filepath.Join(staging, "node-1"), 0o700)
			os.WriteFile(filepath.Join(staging, ".snapshot-job-journal"), []byte(journal), 0o600)
			os.WriteFile(filepath.Join(staging, "node-1", "b.pcap"), []byte("new b"), 0o600)
			os.Rename(filepath.Join(d, "a.pcap"), filepath.Join(d, ".snapshot-job-aside-dead-1"))
			os.WriteFile(filepath.Join(d, "a.pcap"), []byte("new a"), 0o600)
			os.WriteFile(filepath.Join(dst, "new.json"), []byte("new"), 0o600)
			if user == "pod" {
				filepath.Walk(dst, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, podUID, podUID) })
			}
			run := runJob
			if user == "pod" {
				run = runJobAs
			}
			r := run(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "skip"), "restore")
			expect(t, r, 0)
			if !strings.Contains(r.stderr, "rolling back a restore that was interrupted during its commit") {
				t.Errorf("no log line:\n%s", r.stderr)
			}
			assertUnchanged(t, before, dst)
		})
	}
}

// A step of the commit that fails although every check passed (here the
// kernel's link limit on an ext4 filesystem without dir_nlink) undoes
// every move made before it: the restore directory is exactly as it was.
func TestFailureDuringCommitRollsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a filesystem image")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 400<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-O", "^dir_nlink", "-N", "80000", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	src := t.TempDir()
	for _, f := range []string{"a.txt", "m.txt", "zz-full/new/x.pcap"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(src, f), []byte("new "+f), 0o644)
	}
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)

	dst := filepath.Join(mnt, "restore")
	os.MkdirAll(filepath.Join(dst, "zz-full"), 0o755)
	os.WriteFile(filepath.Join(dst, "a.txt"), []byte("old a"), 0o644)
	os.WriteFile(filepath.Join(dst, "m.txt"), []byte("old m"), 0o644)
	// 64,998 subdirectories: the most an ext4 directory holds without
	// dir_nlink, so that moving one more into it fails with EMLINK.
	full := filepath.Join(dst, "zz-full")
	for i := range 64998 {
		if err := syscall.Mkdir(filepath.Join(full, strconv.Itoa(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	os.Chtimes(full, old, old)
	os.Chtimes(dst, old, old)
	before := treeWithRoot(t, dst)
	r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore")
	expect(t, r, 4, "zz-full")
	assertUnchanged(t, before, dst)
}

// Times after 2262 overflow int64 nanoseconds; a round trip keeps them
// on files, directories and symlinks, as root and as the pod's user.
func TestTimesAfter2262RoundTrip(t *testing.T) {
	when := time.Date(2300, 6, 7, 8, 9, 10, 123456789, time.UTC)
	ts := []unix.Timespec{{Sec: when.Unix(), Nsec: int64(when.Nanosecond())}, {Sec: when.Unix(), Nsec: int64(when.Nanosecond())}}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f.pcap"), []byte("x"), 0o644)
	os.Symlink("f.pcap", filepath.Join(src, "d", "l"))
	for _, p := range []string{"d/f.pcap", "d/l", "d"} {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, p), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	for _, user := range []string{"root", "pod"} {
		t.Run(user, func(t *testing.T) {
			dst := podTarget(t, e, store)
			run := runJob
			if user == "pod" {
				if os.Geteuid() != 0 {
					t.Skip("needs root to run the job as the pod's user")
				}
				run = runJobAs
			}
			expect(t, run(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
			for _, p := range []string{"d/f.pcap", "d/l", "d"} {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(dst, p), &st); err != nil {
					t.Fatal(err)
				}
				if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(); !got.Equal(when) {
					t.Errorf("%s: mtime %s, want %s", p, got, when)
				}
			}
		})
	}
}
