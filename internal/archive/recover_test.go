package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustDo(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// stateLine is a journal's record of a directory as it is now.
func stateLine(t *testing.T, p string) string {
	t.Helper()
	var st syscall.Stat_t
	mustDo(t, syscall.Lstat(p, &st))
	return fmt.Sprintf("mode=%#o atime=%d.%09d mtime=%d.%09d", st.Mode&0o7777, st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
}

// A run killed during its commit, with some moves done, one half done
// and some not started: Recover puts the target back exactly.
func TestRecoverRollsBack(t *testing.T) {
	target := t.TempDir()
	makeWritable(t, target)
	write(t, filepath.Join(target, "keep.txt"), "untouched")
	write(t, filepath.Join(target, "d", "a"), "old a")
	write(t, filepath.Join(target, "d", "b"), "b")
	write(t, filepath.Join(target, "d", "sub", "x"), "old sub/x")
	old := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	mustDo(t, os.Chmod(filepath.Join(target, "d", "sub"), 0o555),
		os.Chtimes(filepath.Join(target, "d", "sub"), old, old),
		os.Chtimes(filepath.Join(target, "d"), old, old),
		os.Chtimes(target, old, old))
	before := treeOf(t, target)

	// The crashed run: staging with its journal, and the target as the
	// moves left it.
	// Extract records the target as it was before it made staging.
	rootLine := "root " + stateLine(t, target)
	staging := filepath.Join(target, StagingPrefix+"abc")
	mustDo(t, os.Mkdir(staging, 0o700))
	journal := strings.Join([]string{
		"snapshot-job commit journal 1",
		rootLine,
		`enter "d" ` + stateLine(t, filepath.Join(target, "d")),
		`move "a" ".snapshot-job-aside-abc-1"`,
		`move "sub" ".snapshot-job-aside-abc-2"`,
		`move "c" ""`,
		"leave",
		`move "top" ""`,
		"end", "",
	}, "\n")
	mustDo(t, os.WriteFile(filepath.Join(staging, journalName), []byte(journal), 0o600))
	write(t, filepath.Join(staging, "d", "sub"), "new sub")
	write(t, filepath.Join(staging, "d", "c"), "new c")
	d := filepath.Join(target, "d")
	// move 1 done
	mustDo(t, os.Rename(filepath.Join(d, "a"), filepath.Join(d, ".snapshot-job-aside-abc-1")))
	write(t, filepath.Join(d, "a"), "new a")
	// move 2 half done: set aside, the staged one not moved yet
	mustDo(t, os.Rename(filepath.Join(d, "sub"), filepath.Join(d, ".snapshot-job-aside-abc-2")))
	// move 4 done
	write(t, filepath.Join(target, "top"), "new top")

	log, buf := logBuffer()
	if err := Recover(target, log); err != nil {
		t.Fatal(err)
	}
	assertTree(t, "after Recover", before, target)
	if !strings.Contains(buf.String(), "rolling back a restore that was interrupted during its commit") {
		t.Errorf("log:\n%s", buf)
	}
}

// A run killed after its commit was marked done, while deleting what it
// set aside: Recover deletes the rest (read-only subtrees included) and
// leaves the restored tree, its directories' times included.
func TestRecoverRollsForward(t *testing.T) {
	target := t.TempDir()
	makeWritable(t, target)
	d := filepath.Join(target, "d")
	write(t, filepath.Join(d, "a"), "new a")
	write(t, filepath.Join(d, ".snapshot-job-aside-abc-1"), "old a")
	write(t, filepath.Join(d, ".snapshot-job-aside-abc-2", "deep", "x"), "old")
	mustDo(t, os.Chmod(filepath.Join(d, ".snapshot-job-aside-abc-2", "deep"), 0o555),
		os.Chmod(filepath.Join(d, ".snapshot-job-aside-abc-2"), 0o555))
	staging := filepath.Join(target, StagingPrefix+"abc")
	mustDo(t, os.MkdirAll(filepath.Join(staging, "d"), 0o700))
	journal := strings.Join([]string{
		"snapshot-job commit journal 1",
		"root " + stateLine(t, target),
		`enter "d" ` + stateLine(t, d),
		`move "a" ".snapshot-job-aside-abc-1"`,
		`move "gone" ".snapshot-job-aside-abc-3"`, // already deleted
		`move "sub" ".snapshot-job-aside-abc-2"`,
		"leave",
		"end", "",
	}, "\n")
	mustDo(t, os.WriteFile(filepath.Join(staging, committedName), []byte(journal), 0o600))
	restored := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	mustDo(t, os.Chmod(d, 0o555), os.Chtimes(d, restored, restored))
	want := treeOf(t, target)
	for k := range want {
		if strings.Contains(k, ReservedPrefix) {
			delete(want, k)
		}
	}
	want["."] = testenv.Entry{} // the target's own time moves with the cleanup
	if err := Recover(target, nil); err != nil {
		t.Fatal(err)
	}
	got := treeOf(t, target)
	got["."] = testenv.Entry{}
	if diff := testenv.SameTree(want, got); diff != "" {
		t.Fatal(diff)
	}
}

func TestRecoverOtherStates(t *testing.T) {
	t.Run("no journal", func(t *testing.T) {
		target := t.TempDir()
		write(t, filepath.Join(target, "keep"), "x")
		write(t, filepath.Join(target, StagingPrefix+"a", "half", "file"), "x")
		write(t, filepath.Join(target, StagingPrefix+"b", journalTemp), "snapshot-job commit journal 1\nroot mode=")
		write(t, filepath.Join(target, StagingPrefix+"c"), "a file with a staging name")
		if err := Recover(target, nil); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(target); len(entries) != 1 || entries[0].Name() != "keep" {
			t.Fatalf("left %v", entries)
		}
	})
	t.Run("unreadable journal", func(t *testing.T) {
		target := t.TempDir()
		write(t, filepath.Join(target, "d", "x"), "x")
		staging := filepath.Join(target, StagingPrefix+"a")
		write(t, filepath.Join(staging, journalName), "snapshot-job commit journal 1\nroot mode=0755 atime=1.0 mtime=1.0\nmove \"../../etc\" \"\"\nend\n")
		before := treeOf(t, target)
		err := Recover(target, nil)
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "unreadable commit journal") || !strings.Contains(err.Error(), "run the restore again") {
			t.Fatalf("err = %v", err)
		}
		assertTree(t, "after refusing", before, target)
	})
	t.Run("missing target", func(t *testing.T) {
		if err := Recover(filepath.Join(t.TempDir(), "nope"), nil); err != nil {
			t.Fatal(err)
		}
	})
}
