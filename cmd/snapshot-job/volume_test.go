package main

// Runs that share one volume, as pods on one claim do: a backup beside a
// restore, two restores into one target, a restore killed mid-way. Each
// run is its own process; the volume is all they share.

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
	"github.com/snapshot-job/snapshot-job/internal/volume"
)

// slowGets delays every ranged GET, so that a restore is still running
// when the next job starts.
func slowGets(d time.Duration) testenv.Rule {
	return func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			return testenv.Fault{Delay: d}
		}
		return testenv.Fault{}
	}
}

// slowParts delays every part upload, so that a backup is still reading
// its source when the next job starts.
func slowParts(d time.Duration) testenv.Rule {
	return func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			return testenv.Fault{Delay: d}
		}
		return testenv.Fault{}
	}
}

// snapshotsOf backs up src twice, a second apart, and returns the keys.
func snapshotsOf(t *testing.T, fx *s3Fixture, e env, bucket string, n int) []string {
	t.Helper()
	for i := range n {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // names have whole seconds
		}
		expect(t, runJob(t, e), 0)
	}
	keys := fx.keys(t, bucket, "snapshots/")
	if len(keys) != n {
		t.Fatalf("keys %q, want %d snapshots", keys, n)
	}
	return keys
}

// reservedIn lists the names under dir that are the job's own.
func reservedIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && archive.Reserved(d.Name()) {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// slowRestore starts a restore of the latest snapshot into vol that takes
// seconds, and returns once it has started extracting.
func slowRestore(t *testing.T, fx *s3Fixture, e env, vol string) *running {
	t.Helper()
	proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
	proxy.SetRule(slowGets(2 * time.Second))
	r := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", vol,
		"SNAPSHOT_UPLOAD_CONCURRENCY", "1"), "restore")
	r.waitFor(t, "restore started")
	waitForStaging(t, vol)
	return r
}

// waitForStaging returns once a restore into vol has made its staging
// directory beside its lock.
func waitForStaging(t *testing.T, vol string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); len(reservedIn(t, vol)) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("no staging directory in %s: %q", vol, reservedIn(t, vol))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVolumeSharedBetweenRuns(t *testing.T) {
	fx := &s3Fixture{v: testenv.StartVersity(t)}

	// The post-install restore hook and the first scheduled backup start
	// together: the backup exits 9 without storing or pruning, and its
	// retry after the restore stores the restored tree.
	t.Run("BackupBesideRestore", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "node-1", "big.pcap"), 12<<20)
		e, bucket := fx.setup(t, src)
		old := snapshotsOf(t, fx, e, bucket, 2)

		vol := filepath.Join(t.TempDir(), "snapshots")
		proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
		proxy.SetRule(slowGets(2 * time.Second))
		restore := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", vol,
			"SNAPSHOT_UPLOAD_CONCURRENCY", "1"), "restore")
		restore.waitFor(t, "restore started")

		backup := e.with("SNAPSHOT_SOURCE_DIR", vol, "SNAPSHOT_RETENTION_KEEP_LAST", "1")
		r := runJob(t, backup)
		expect(t, r, 9, "restore into "+vol, "in progress")
		if got := fx.keys(t, bucket, "snapshots/"); !slices.Equal(got, old) {
			t.Fatalf("a busy backup changed the bucket: %q, want %q", got, old)
		}
		if u := fx.v.MultipartUploads(t, bucket, ""); len(u) != 0 {
			t.Fatalf("a busy backup left uploads: %q", u)
		}
		if code := restore.wait(t); code != 0 {
			t.Fatalf("restore exited %d:\n%s", code, restore.stderr.String())
		}
		testenv.CompareTrees(t, src, vol, nil)

		time.Sleep(1100 * time.Millisecond)
		expect(t, runJob(t, backup), 0)
		got := fx.keys(t, bucket, "snapshots/")
		if len(got) != 1 || slices.Contains(old, got[0]) {
			t.Fatalf("after the retry: %q, want one new snapshot", got)
		}
		// The stored snapshot is the restored tree, and none of the
		// restore's working files.
		again := filepath.Join(t.TempDir(), "again")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", again), "restore"), 0)
		testenv.CompareTrees(t, src, again, nil)
		if res := reservedIn(t, again); len(res) != 1 || res[0] != volume.LockName {
			t.Fatalf("reserved names in the restored snapshot: %q, want only this restore's own lock", res)
		}
	})

	// A restore that starts and finishes while a backup reads the same
	// directory: the backup cannot tell which files it read before and
	// which after, so it stores nothing and exits 9.
	t.Run("RestoreDuringBackup", func(t *testing.T) {
		other := t.TempDir()
		os.WriteFile(filepath.Join(other, "restored.json"), []byte(`{"x":1}`), 0o644)
		e, bucket := fx.setup(t, other)
		old := snapshotsOf(t, fx, e, bucket, 1)
		time.Sleep(1100 * time.Millisecond) // the next backup gets another name

		vol := t.TempDir()
		writeBig(t, filepath.Join(vol, "a.pcap"), 24<<20)
		writeBig(t, filepath.Join(vol, "z.pcap"), 24<<20)
		proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
		proxy.SetRule(slowParts(1500 * time.Millisecond))
		backup := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_SOURCE_DIR", vol,
			"SNAPSHOT_UPLOAD_CONCURRENCY", "1", "SNAPSHOT_RETENTION_KEEP_LAST", "1"))
		backup.waitFor(t, "backup started")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", vol, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore"), 0)
		code := backup.wait(t)
		if code != 9 || !strings.Contains(backup.stderr.String(), "while this backup read it") {
			t.Fatalf("backup exited %d, want 9 naming the restore:\n%s", code, backup.stderr.String())
		}
		if got := fx.keys(t, bucket, "snapshots/"); !slices.Equal(got, old) {
			t.Fatalf("bucket after the refused backup: %q, want %q", got, old)
		}
		if u := fx.v.MultipartUploads(t, bucket, ""); len(u) != 0 {
			t.Fatalf("uploads left: %q", u)
		}
	})

	// The second of two restores into one target exits 9 and leaves the
	// first one's staging alone; the first completes.
	t.Run("TwoRestoresOneTarget", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "big.pcap"), 12<<20)
		e, _ := fx.setup(t, src)
		expect(t, runJob(t, e), 0)
		vol := t.TempDir()
		first := slowRestore(t, fx, e, vol)
		staging := reservedIn(t, vol)
		r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", vol), "restore")
		expect(t, r, 9, "another restore holds "+vol)
		if got := reservedIn(t, vol); !slices.Equal(got, staging) {
			t.Fatalf("the refused restore touched the first one's files: %q, then %q", staging, got)
		}
		if code := first.wait(t); code != 0 {
			t.Fatalf("first restore exited %d:\n%s", code, first.stderr.String())
		}
		testenv.CompareTrees(t, src, vol, nil)
	})

	// SIGKILL leaves the lock and the staging directory: the next backup
	// goes ahead without them, the next restore cleans them up.
	t.Run("KilledRestore", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "big.pcap"), 12<<20)
		e, bucket := fx.setup(t, src)
		expect(t, runJob(t, e), 0)
		vol := t.TempDir()
		victim := slowRestore(t, fx, e, vol)
		if code := victim.signal(t, syscall.SIGKILL); code != -1 {
			t.Fatalf("SIGKILL: exit %d", code)
		}
		if len(reservedIn(t, vol)) < 2 {
			t.Fatalf("expected the killed restore's lock and staging in %s: %q", vol, reservedIn(t, vol))
		}
		time.Sleep(1100 * time.Millisecond)
		r := runJob(t, e.with("SNAPSHOT_SOURCE_DIR", vol))
		expect(t, r, 0)
		if !strings.Contains(r.stderr, "was interrupted before it moved anything") {
			t.Errorf("the backup did not report the interrupted restore:\n%s", r.stderr)
		}
		if n := len(fx.keys(t, bucket, "snapshots/")); n != 2 {
			t.Fatalf("%d snapshots, want 2", n)
		}
		r = runJob(t, e.with("SNAPSHOT_RESTORE_DIR", vol, "SNAPSHOT_RESTORE_KEY", fx.keys(t, bucket, "snapshots/")[0]), "restore")
		expect(t, r, 0)
		if !strings.Contains(r.stderr, "taking over the lock of an interrupted restore") {
			t.Errorf("the restore did not report the takeover:\n%s", r.stderr)
		}
		testenv.CompareTrees(t, src, vol, nil)
		if res := reservedIn(t, vol); len(res) != 1 || res[0] != volume.LockName {
			t.Fatalf("left in the volume: %q, want only the lock", res)
		}
	})
}

// A restore killed while it moved entries in leaves the target mixed: a
// backup refuses it (9) until a restore has rolled the commit back.
func TestInterruptedCommitBlocksBackup(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	before := storeFiles(t, store)

	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "half.pcap"), []byte("half"), 0o644)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	rec, _ := json.Marshal(map[string]any{"state": "restoring", "generation": 4, "phase": "committing",
		"token": "deadbeef", "host": "restore-xyz", "boot_id": strings.TrimSpace(string(boot)), "pid": 4242})
	os.WriteFile(filepath.Join(vol, volume.LockName), rec, 0o644)

	r := runJob(t, e.with("SNAPSHOT_SOURCE_DIR", vol, "SNAPSHOT_RETENTION_KEEP_LAST", "1"))
	expect(t, r, 9, "interrupted while it moved entries in", "restore-xyz")
	if got := storeFiles(t, store); !slices.Equal(got, before) {
		t.Fatalf("store changed: %q, want %q", got, before)
	}
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", vol, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore"), 0)
	time.Sleep(1100 * time.Millisecond)
	expect(t, runJob(t, e.with("SNAPSHOT_SOURCE_DIR", vol)), 0)
}

// A source with no regular file (an unmounted volume, a wrong path) is
// stored, but never makes retention push real snapshots out.
func TestEmptySourceNeverPrunes(t *testing.T) {
	full := t.TempDir()
	testenv.MakeTree(t, full)
	e, store := fileEnv(t, full)
	expect(t, runJob(t, e), 0)
	time.Sleep(1100 * time.Millisecond)
	empty := t.TempDir()
	os.MkdirAll(filepath.Join(empty, "node-1", "pcaps"), 0o755)
	r := runJob(t, e.with("SNAPSHOT_SOURCE_DIR", empty, "SNAPSHOT_RETENTION_KEEP_LAST", "1"))
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "holds no regular file") {
		t.Errorf("no warning about the empty source:\n%s", r.stderr)
	}
	if n := len(storeFiles(t, store)); n != 2 {
		t.Fatalf("store holds %d files, want both snapshots", n)
	}
}
