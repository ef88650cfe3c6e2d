package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// treeOf is every entry of dir, and dir itself as ".": modes and
// nanosecond mtimes included.
func treeOf(t *testing.T, dir string) map[string]testenv.Entry {
	t.Helper()
	m := testenv.ReadDeepTree(t, dir, nil)
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	m["."] = testenv.Entry{Type: "dir", Mode: fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetgid | fs.ModeSetuid), MTime: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	return m
}

func assertTree(t *testing.T, what string, want map[string]testenv.Entry, dir string) {
	t.Helper()
	if d := testenv.SameTree(want, treeOf(t, dir)); d != "" {
		t.Fatalf("%s: the tree differs:\n%s", what, d)
	}
}

// makeWritable lets TempDir's cleanup remove read-only directories left
// by a test running as a user without root's powers.
func makeWritable(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// overwriteCase is a target that an earlier restore filled and the
// user then changed, and a newer snapshot to restore over it: files
// replaced, a directory replaced by a file and a file by a directory, a
// symlink replaced by a directory, a read-only directory whose file
// changes, entries only the target has, and new ones.
func overwriteCase(t *testing.T) (target string, newer []byte) {
	t.Helper()
	src := t.TempDir()
	makeWritable(t, src)
	testenv.MakeTree(t, src)
	older, _ := archiveOf(t, src, WriteOptions{})
	target = filepath.Join(t.TempDir(), "target")
	makeWritable(t, filepath.Dir(target))
	if _, err := Extract(t.Context(), bytes.NewReader(older), target, ExtractOptions{Token: "first"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"extra.txt", "node-1/extra.pcap"} {
		p = filepath.Join(target, p)
		os.WriteFile(p, []byte("only in the target"), 0o644)
		os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0))
	}

	// The newer snapshot: a copy of the tree, changed.
	src2 := filepath.Join(t.TempDir(), "src2")
	makeWritable(t, filepath.Dir(src2))
	if _, err := Extract(t.Context(), bytes.NewReader(older), src2, ExtractOptions{Token: "copy"}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src2, "node-1", "events.json"), []byte("newer events"), 0o640))
	must(os.Remove(filepath.Join(src2, "node-2", "run.sh")))
	must(os.Remove(filepath.Join(src2, "latest")))
	must(os.MkdirAll(filepath.Join(src2, "latest", "x"), 0o755))
	must(os.Remove(filepath.Join(src2, "empty-dir")))
	must(os.WriteFile(filepath.Join(src2, "empty-dir"), []byte("a file now"), 0o644))
	must(os.Remove(filepath.Join(src2, "node-2", "empty.pcap")))
	must(os.MkdirAll(filepath.Join(src2, "node-2", "empty.pcap", "inside"), 0o755))
	must(os.Chmod(filepath.Join(src2, "readonly"), 0o755))
	must(os.Chmod(filepath.Join(src2, "readonly", "inside.txt"), 0o644))
	must(os.WriteFile(filepath.Join(src2, "readonly", "inside.txt"), []byte("newer, still read-only"), 0o444))
	must(os.Chmod(filepath.Join(src2, "readonly", "inside.txt"), 0o444))
	must(os.Chmod(filepath.Join(src2, "readonly"), 0o555))
	must(os.MkdirAll(filepath.Join(src2, "new-dir"), 0o700))
	must(os.WriteFile(filepath.Join(src2, "new-dir", "new.txt"), []byte("new"), 0o600))
	newer, _ = archiveOf(t, src2, WriteOptions{})
	return target, newer
}

// failAt makes the n-th call of step fail.
func failAt(step string, n int) (func(string) error, *int) {
	calls := 0
	return func(s string) error {
		if s != step {
			return nil
		}
		calls++
		if calls == n {
			return fmt.Errorf("injected failure at %s %d", step, n)
		}
		return nil
	}, &calls
}

// A commit that fails at any step leaves the target exactly as it was,
// and so does a run killed at any step before the commit was marked done
// once Recover has run; one killed after it is finished by Recover.
func TestCommitAllOrNothing(t *testing.T) {
	if runAsPodUser(t) {
		return
	}
	target, newer := overwriteCase(t)
	before := treeOf(t, target)

	// What a successful restore gives, on a copy of the same target.
	ref, _ := overwriteCase(t)
	if _, err := Extract(t.Context(), bytes.NewReader(newer), ref, ExtractOptions{Token: "ref", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	after := testenv.ReadDeepTree(t, ref, nil)
	if _, ok := after["latest/x"]; !ok || after["empty-dir"].Type != "file" || after["node-1/extra.pcap"].Type != "file" {
		t.Fatalf("the successful restore is not the expected merge: %v", after)
	}

	moves := 0
	for n := 1; ; n++ {
		hook, calls := failAt("move", n)
		_, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "fail", Overwrite: true, testHook: hook, noSync: true})
		if *calls < n {
			moves = *calls
			break // every move succeeded
		}
		if !strings.Contains(fmt.Sprint(err), "injected failure") {
			t.Fatalf("move %d: err = %v", n, err)
		}
		assertTree(t, fmt.Sprintf("failure at move %d", n), before, target)
	}
	if moves < 10 {
		t.Fatalf("only %d moves: the case does not exercise the commit", moves)
	}
	t.Logf("%d moves", moves)
	// The run above that did not fail succeeded: start again.
	target, _ = overwriteCase(t)
	before = treeOf(t, target)
	for _, step := range []string{"dirs", "marker"} {
		hook, _ := failAt(step, 1)
		if _, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "fail", Overwrite: true, testHook: hook, noSync: true}); err == nil {
			t.Fatalf("%s: no error", step)
		}
		assertTree(t, "failure at "+step, before, target)
	}
	for n := 1; n <= moves; n++ {
		hook, _ := failAt("move", n)
		if _, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "crash", Overwrite: true, testHook: hook, testCrash: true, noSync: true}); err == nil {
			t.Fatal("no error")
		}
		journal, err := os.ReadFile(filepath.Join(target, StagingPrefix+"crash", journalName))
		if err != nil {
			t.Fatalf("the crashed run left no journal: %v", err)
		}
		// As the pod's user, the read-only directory the job owns is
		// made writable for the commit.
		_, afterEnter, _ := strings.Cut(string(journal), "enter \"readonly\" mode=0555")
		if os.Geteuid() != 0 && !strings.HasPrefix(afterEnter[strings.Index(afterEnter, "\n")+1:], "writable\n") {
			t.Fatalf("the journal does not make readonly/ writable:\n%s", journal)
		}
		if err := Recover(target, nil); err != nil {
			t.Fatalf("Recover after a crash at move %d: %v", n, err)
		}
		assertTree(t, fmt.Sprintf("recovery from a crash at move %d", n), before, target)
	}
	for _, step := range []string{"dirs", "marker"} {
		hook, _ := failAt(step, 1)
		Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "crash", Overwrite: true, testHook: hook, testCrash: true, noSync: true})
		if err := Recover(target, nil); err != nil {
			t.Fatal(err)
		}
		assertTree(t, "recovery from a crash at "+step, before, target)
	}
	// Killed after the commit was marked done: Recover finishes it.
	hook, _ := failAt("asides", 1)
	Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "crash", Overwrite: true, testHook: hook, testCrash: true, noSync: true})
	if _, err := os.Stat(filepath.Join(target, StagingPrefix+"crash", committedName)); err != nil {
		t.Fatalf("no committed marker: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(target, "*", ReservedPrefix+"aside-crash-*")); len(m) == 0 {
		t.Fatal("no entries set aside: the case does not test rolling forward")
	}
	if err := Recover(target, nil); err != nil {
		t.Fatal(err)
	}
	if d := testenv.SameTree(after, testenv.ReadDeepTree(t, target, nil)); d != "" {
		t.Fatalf("after rolling forward:\n%s", d)
	}
	// And a plain successful run.
	target, _ = overwriteCase(t)
	if _, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "ok", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if d := testenv.SameTree(after, testenv.ReadDeepTree(t, target, nil)); d != "" {
		t.Fatalf("after a successful restore:\n%s", d)
	}
}

// runAsPodUser runs the calling test again as the chart's non-root user
// (65532) when the tests run as root, and reports whether the caller is
// the root side, which must then return: the permission rules a commit
// deals with (read-only directories, ownership) do not bind root.
func runAsPodUser(t *testing.T) bool {
	t.Helper()
	if os.Getenv("ARCHIVE_TEST_POD_USER") != "" || os.Geteuid() != 0 {
		return false
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	copyExe := filepath.Join(dir, "archive.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyExe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o777)
	os.Chmod(tmp, 0o777)
	cmd := exec.Command(copyExe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "ARCHIVE_TEST_POD_USER=1", "TMPDIR="+tmp)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65532: %v\n%s", err, out)
	}
	t.Logf("as uid 65532:\n%s", out)
	return true
}

// TestCommitAllOrNothingAsRoot is the same as root, where ownership is
// restored and permissions do not stop anything.
func TestCommitAllOrNothingAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// Running the body directly, without runAsPodUser.
	t.Setenv("ARCHIVE_TEST_POD_USER", "root")
	TestCommitAllOrNothing(t)
}

func TestBeforeAndAfterCommit(t *testing.T) {
	target, newer := overwriteCase(t)
	before := treeOf(t, target)
	boom := errors.New("lock lost")
	_, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "x", Overwrite: true, BeforeCommit: func() error { return boom }})
	if err != boom {
		t.Fatalf("err = %v, want the hook's error as is", err)
	}
	assertTree(t, "BeforeCommit failed", before, target)

	calls := 0
	_, err = Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "y", Overwrite: true,
		BeforeCommit: func() error {
			if _, err := os.Stat(filepath.Join(target, StagingPrefix+"y", journalName)); err != nil {
				t.Errorf("BeforeCommit before the journal is durable: %v", err)
			}
			return nil
		},
		AfterCommit: func() {
			calls++
			if _, err := os.Stat(filepath.Join(target, StagingPrefix+"y", committedName)); err != nil {
				t.Errorf("AfterCommit before the commit is marked done: %v", err)
			}
		}})
	if err != nil || calls != 1 {
		t.Fatalf("err = %v, AfterCommit called %d times", err, calls)
	}
	assertNoStaging(t, target)
	if m, _ := filepath.Glob(filepath.Join(target, "*", ReservedPrefix+"*")); len(m) > 0 {
		t.Errorf("left behind: %q", m)
	}
}

// A conflict found while planning stops the restore before anything
// moves: here an immutable file the snapshot would replace.
func TestConflictBeforeAnyMove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chattr needs root")
	}
	target, newer := overwriteCase(t)
	f := filepath.Join(target, "node-2", "hardlink.pcap")
	if out, err := exec.Command("chattr", "+i", f).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s (filesystem without attributes)", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", f).Run() })
	before := treeOf(t, target)
	_, err := Extract(t.Context(), bytes.NewReader(newer), target, ExtractOptions{Token: "x", Overwrite: true})
	if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "hardlink.pcap: it is immutable") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	assertTree(t, "after the conflict", before, target)
	assertNoStaging(t, target)
}

// A failed restore removes every directory it created for the target,
// not only the last one.
func TestFailedRestoreRemovesCreatedParents(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "a", "b", "c")
	_, err := Extract(t.Context(), bytes.NewReader([]byte("not zstd")), target, ExtractOptions{Token: "x"})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
	// A parent that existed stays, even empty.
	os.Mkdir(filepath.Join(parent, "a"), 0o755)
	Extract(t.Context(), bytes.NewReader(nil), target, ExtractOptions{Token: "x"})
	if entries, _ := os.ReadDir(filepath.Join(parent, "a")); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
	if _, err := os.Stat(filepath.Join(parent, "a")); err != nil {
		t.Fatal(err)
	}
}

// Trees deeper than PATH_MAX restore, merge, roll back and recover:
// every operation goes through directory descriptors.
func TestDeeperThanPathMax(t *testing.T) {
	data := testenv.DeepFiles(t, 20, 240, 50) // paths of 12 KB
	target := filepath.Join(t.TempDir(), "r")
	if _, err := Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{Token: "a"}); err != nil {
		t.Fatal(err)
	}
	got := testenv.ReadDeepTree(t, target, nil)
	if len(got) != 261 {
		t.Fatalf("%d entries, want 261", len(got))
	}
	before := treeOf(t, target)
	for n := 1; n <= 20; n += 7 {
		hook, _ := failAt("move", n)
		Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{Token: "b", Overwrite: true, testHook: hook, testCrash: true, noSync: true})
		if err := Recover(target, nil); err != nil {
			t.Fatal(err)
		}
		assertTree(t, "recovered", before, target)
	}
	if _, err := Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{Token: "c", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if d := testenv.SameTree(got, testenv.ReadDeepTree(t, target, nil)); d != "" {
		t.Fatal(d)
	}
}
