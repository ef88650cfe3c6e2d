package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// runJobUmask runs the job with the given umask, as a container runtime
// sets one before the entrypoint.
func runJobUmask(t *testing.T, e env, umask string, args ...string) jobResult {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `umask "$0" && exec "$@"`, umask, binary}, args...)...)
	cmd.Env = e.list(t)
	return runCmd(t, cmd)
}

// runJobTimeout is runJob, killed after d: a run that should have
// stopped at once must not hang the tests.
func runJobTimeout(t *testing.T, d time.Duration, e env, args ...string) jobResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = e.list(t)
	return runCmd(t, cmd)
}

// partials lists the store's temporary files, relative to the store.
func partials(t *testing.T, store string) []string {
	t.Helper()
	var out []string
	for _, f := range storeFiles(t, store) {
		if strings.HasPrefix(filepath.Base(f), ".partial-") {
			out = append(out, f)
		}
	}
	return out
}

// killedBackup starts a backup, SIGKILLs it while it writes its snapshot
// and returns the partial file it left.
func killedBackup(t *testing.T, e env, store string) string {
	t.Helper()
	before := partials(t, store)
	fresh := func() []string {
		var out []string
		for _, p := range partials(t, store) {
			if !slices.Contains(before, p) {
				out = append(out, p)
			}
		}
		return out
	}
	r := startJob(t, e.with("SNAPSHOT_COMPRESSION_LEVEL", "best"))
	r.waitFor(t, "backup started")
	deadline := time.Now().Add(time.Minute)
	for len(fresh()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no partial file appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := r.signal(t, syscall.SIGKILL); code != -1 {
		t.Fatalf("killed backup exited %d", code)
	}
	left := fresh()
	if len(left) != 1 {
		t.Fatalf("partial files after SIGKILL: %q", left)
	}
	return left[0]
}

// partialKey is the key a partial file's name gives, "" when it names
// none.
func partialKey(rel string) string {
	dir, base := filepath.Split(filepath.ToSlash(rel))
	rest, ok := strings.CutPrefix(base, ".partial-")
	if !ok || len(rest) < 18 || rest[len(rest)-17] != '-' {
		return ""
	}
	return dir + rest[:len(rest)-17]
}

func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

func removedKeys(r jobResult) []string {
	var keys []string
	for _, l := range r.lines {
		if l["msg"] == "removed incomplete upload" {
			keys = append(keys, fmt.Sprint(l["key"]))
		}
	}
	return keys
}

// A backup killed with SIGKILL cannot remove its partial file; pruning
// (the verb, and a backup's) removes this job's partials once they are a
// day old, and nothing else.
func TestPruneRemovesPartialsOfKilledBackups(t *testing.T) {
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "big.pcap"), 64<<20)
	e, store := fileEnv(t, src)
	e = e.with("SNAPSHOT_RETENTION_KEEP_LAST", "3")

	left := killedBackup(t, e, store)
	ourKey := partialKey(left)
	if !strings.HasPrefix(ourKey, "snapshots/kubeshark-") || !strings.HasSuffix(ourKey, ".tar.zst") {
		t.Errorf("partial %s does not name its snapshot", left)
	}
	age(t, filepath.Join(store, left), 25*time.Hour)
	others := map[string]time.Duration{
		"snapshots/.partial-other-20261120T000000Z.tar.zst-0123456789abcdef":     48 * time.Hour, // another job's
		"snapshots/.partial-kubeshark-20261126T000000Z.tar.zst-0123456789abcdef": time.Hour,      // a backup still running
		"snapshots/.partial-4711":                                      48 * time.Hour, // not a name this job writes
		".partial-kubeshark-20261120T000000Z.tar.zst-0123456789abcdef": 48 * time.Hour, // another prefix
	}
	for rel, d := range others {
		p := filepath.Join(store, filepath.FromSlash(rel))
		os.WriteFile(p, []byte("x"), 0o644)
		age(t, p, d)
	}

	r := runJob(t, e, "prune")
	expect(t, r, 0)
	if got := removedKeys(r); !slices.Equal(got, []string{ourKey}) {
		t.Errorf("prune removed %q, want [%s]", got, ourKey)
	}
	if _, err := os.Stat(filepath.Join(store, left)); !os.IsNotExist(err) {
		t.Errorf("the stale partial %s is still there", left)
	}
	for rel := range others {
		if _, err := os.Stat(filepath.Join(store, filepath.FromSlash(rel))); err != nil {
			t.Errorf("%s was touched: %v", rel, err)
		}
	}

	// A backup with retention sweeps too.
	left = killedBackup(t, e, store)
	age(t, filepath.Join(store, left), 25*time.Hour)
	r = runJob(t, e)
	expect(t, r, 0)
	if got := removedKeys(r); !slices.Equal(got, []string{partialKey(left)}) {
		t.Errorf("backup removed %q, want [%s]", got, partialKey(left))
	}
	if got := len(partials(t, store)); got != len(others) {
		t.Errorf("%d partial files left, want the %d that are not this job's stale ones: %q", got, len(others), partials(t, store))
	}
}

// roMount bind-mounts dir read-only over itself.
func roMount(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("bind mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("read-only remount: %v %s", err, out)
	}
}

// A store the job may read but not write serves restore, verify and list;
// only backup and prune need write access, and they fail with exit 3.
func TestReadOnlyStoreServesReadingVerbs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount and to run the job as another user")
	}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	run := func(t *testing.T, asPod bool, e env, args ...string) jobResult {
		if asPod {
			return runJobAs(t, e, args...)
		}
		return runJob(t, e, args...)
	}
	for _, tc := range []struct {
		name  string
		asPod bool
		setup func(t *testing.T, store string)
	}{
		{"read-only mount", false, roMount},
		{"directory the pod user may not write", true, func(t *testing.T, store string) {
			// Readable by all, writable by root only; the modes are set
			// here so that only the access check is under test.
			filepath.Walk(store, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.IsDir() {
					os.Chmod(p, 0o755)
				} else if err == nil {
					os.Chmod(p, 0o644)
				}
				return nil
			})
			reachable(t, store, false)
			reachable(t, src, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, store := fileEnv(t, src)
			expect(t, runJob(t, e), 0)
			files := storeFiles(t, store)
			tc.setup(t, store)
			reachable(t, filepath.Dir(e["SNAPSHOT_TERMINATION_LOG"]), true)
			dst := t.TempDir()
			reachable(t, dst, true)

			r := run(t, tc.asPod, e, "list")
			expect(t, r, 0)
			if !strings.Contains(r.stdout, files[0]) {
				t.Errorf("list does not show %s:\n%s", files[0], r.stdout)
			}
			expect(t, run(t, tc.asPod, e, "verify"), 0)
			expect(t, run(t, tc.asPod, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
			testenv.CompareTrees(t, src, dst, nil)

			expect(t, run(t, tc.asPod, e), 3, "not writable")
			expect(t, run(t, tc.asPod, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1"), "prune"), 3, "not writable")
			if got := storeFiles(t, store); !slices.Equal(got, files) {
				t.Errorf("store changed: %q, was %q", got, files)
			}
		})
	}
}

// A snapshot gets the mode the umask gives any new file, so that other
// users (a restore pod running as another uid) may read it.
func TestSnapshotModeFollowsUmask(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("pcap"), 0o644)
	for _, tc := range []struct {
		umask string
		mode  os.FileMode
	}{{"022", 0o644}, {"027", 0o640}, {"002", 0o664}} {
		e, store := fileEnv(t, src)
		expect(t, runJobUmask(t, e, tc.umask), 0)
		files := storeFiles(t, store)
		if len(files) != 1 {
			t.Fatalf("store holds %q", files)
		}
		fi, err := os.Stat(filepath.Join(store, files[0]))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.mode {
			t.Errorf("umask %s: snapshot mode %03o, want %03o", tc.umask, got, tc.mode)
		}
	}
}

// A snapshot the job may not read is an access problem (exit 3, fix the
// modes), not a transfer to retry (exit 5).
func TestUnreadableSnapshotIsAccessError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the job as another user")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("pcap"), 0o644)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	files := storeFiles(t, store)
	// The store is the pod user's; the snapshot is root's and private.
	reachable(t, filepath.Join(store, "snapshots"), false)
	reachable(t, store, true)
	os.Chmod(filepath.Join(store, files[0]), 0o600)
	reachable(t, filepath.Dir(e["SNAPSHOT_TERMINATION_LOG"]), true)
	dst := t.TempDir()
	reachable(t, dst, true)

	expect(t, runJobAs(t, e, "verify"), 3, "permission denied", "uid 65532")
	expect(t, runJobAs(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 3, "permission denied")
	os.Chmod(filepath.Join(store, "snapshots"), 0o700)
	expect(t, runJobAs(t, e, "list"), 3, "permission denied")
}

// The store never lists or reads outside its directory, whatever the
// prefix or key says.
func TestStoreRefusesEscapingNames(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("pcap"), 0o644)
	e, store := fileEnv(t, src)
	outside := "kubeshark-20261126T031500Z.tar.zst"
	os.WriteFile(filepath.Join(filepath.Dir(store), outside), []byte("not in the store"), 0o644)
	for _, tc := range []struct {
		name string
		env  env
		verb string
	}{
		{"prefix ../", e.with("SNAPSHOT_CLOUD_PREFIX", "../"), "list"},
		{"prefix a/../../", e.with("SNAPSHOT_CLOUD_PREFIX", "a/../../"), "list"},
		{"restore key ../", e.with("SNAPSHOT_RESTORE_KEY", "../"+outside, "SNAPSHOT_RESTORE_DIR", t.TempDir()), "restore"},
		{"verify key a/../../", e.with("SNAPSHOT_RESTORE_KEY", "a/../../"+outside), "verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runJob(t, tc.env, tc.verb)
			expect(t, r, 2)
			if strings.Contains(r.stdout, outside) {
				t.Errorf("%s shows a file outside the store:\n%s", tc.verb, r.stdout)
			}
		})
	}
}
