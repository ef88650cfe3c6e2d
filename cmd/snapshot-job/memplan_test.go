package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// memoryPlan is the run's "memory plan" log line.
func memoryPlan(t *testing.T, r jobResult) map[string]any {
	t.Helper()
	var plan map[string]any
	for _, l := range r.lines {
		if l["msg"] == "memory plan" {
			if plan != nil {
				t.Errorf("more than one memory plan logged")
			}
			plan = l
		}
	}
	if plan == nil {
		t.Fatalf("no memory plan logged\n%s", r)
	}
	return plan
}

// sparseVolume is a source whose size estimate is size bytes without
// taking the disk space: the plan is made from the scan alone.
func sparseVolume(t *testing.T, size int64) string {
	t.Helper()
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "capture.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Skipf("no sparse file of %d bytes here: %v", size, err)
	}
	return src
}

// The memory plan never exceeds the limit: a 5 TiB volume needs 586 MiB
// parts, and one of them in flight does not fit in 512 MiB, so the backup
// stops with exit 2 naming the memory to give, before anything is stored.
// (Started anyway, it would be OOM-killed and retried, each time
// re-reading the volume.)
func TestMemoryPlanRefusesWhatCannotFit(t *testing.T) {
	src := sparseVolume(t, 5<<40)
	t.Run("s3", func(t *testing.T) {
		fx := &s3Fixture{v: testenv.StartVersity(t)}
		e, bucket := fx.setup(t, src)
		r := runJobTimeout(t, 2*time.Minute, e.with("GOMEMLIMIT", "512MiB", "SNAPSHOT_PART_SIZE", "16MiB"))
		expect(t, r, 2, "a snapshot of about 5.1 TiB needs parts of 586 MiB", "even one part in flight needs 1847 MiB;",
			"the limit is 512 MiB (GOMEMLIMIT)", "raise resources.limits.memory to at least 1847Mi")
		fx.nothingLeft(t, bucket)
	})
	t.Run("file", func(t *testing.T) {
		e, store := fileEnv(t, src)
		r := runJobTimeout(t, 2*time.Minute, e.with("GOMEMLIMIT", "64MiB"))
		expect(t, r, 2, "a backup needs at least 89 MiB", "the limit is 64 MiB (GOMEMLIMIT)", "at least 89Mi")
		if f := storeFiles(t, store); len(f) != 0 {
			t.Errorf("store holds %q", f)
		}
	})
}

// Under a limit too small for the configured parts in flight, the job
// keeps fewer in flight rather than exceed it, and says so once.
func TestMemoryPlanFewerPartsInFlight(t *testing.T) {
	fx := &s3Fixture{v: testenv.StartVersity(t)}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, _ := fx.setup(t, src)
	e = e.with("SNAPSHOT_PART_SIZE", "64MiB", "SNAPSHOT_UPLOAD_CONCURRENCY", "4")

	// 64 MiB + compression + (parts + 2) × 64 MiB: one part in 300 MiB.
	r := runJob(t, e.with("GOMEMLIMIT", "300MiB"))
	expect(t, r, 0)
	plan := memoryPlan(t, r)
	for k, want := range map[string]any{"limit_bytes": float64(300 << 20), "source": "GOMEMLIMIT",
		"parts_in_flight": 1.0, "part_size": float64(64 << 20)} {
		if plan[k] != want {
			t.Errorf("memory plan %s = %v, want %v (%v)", k, plan[k], want, plan)
		}
	}
	if b, _ := plan["planned_bytes"].(float64); b > 300<<20 || b < 3*64<<20 {
		t.Errorf("planned %v bytes for 3 parts of 64 MiB within 300 MiB", b)
	}

	// On two cores 136 MiB (64 base, 4 write-behind, (2 + 2) × 17 of
	// frames) + (ranges + 1) × 64 MiB: one range in 290 MiB.
	dst := t.TempDir()
	r = runJob(t, e.with("GOMEMLIMIT", "290MiB", "GOMAXPROCS", "2", "SNAPSHOT_RESTORE_DIR", dst), "restore")
	expect(t, r, 0)
	if plan := memoryPlan(t, r); plan["parts_in_flight"] != 1.0 || plan["part_size"] != float64(64<<20) {
		t.Errorf("restore memory plan %v, want one range of 64 MiB", plan)
	}
	testenv.CompareTrees(t, src, dst, nil)

	// Without a limit (this machine's cgroup has none unless the tests
	// run in one), the configured four.
	r = runJob(t, e, "verify")
	expect(t, r, 0)
	if plan := memoryPlan(t, r); plan["parts_in_flight"] != 4.0 && plan["limit_bytes"] == 0.0 {
		t.Errorf("verify memory plan %v, want 4 ranges without a limit", plan)
	}
}

// The index of a volume's entries is in the plan: 89 MiB holds a backup
// of a few files, but not the index of 20,000 more (64 bytes each, 1.2
// MiB), and the backup stops with exit 2 naming the memory, before
// anything is stored.
func TestMemoryPlanCountsTheIndex(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	e, store := fileEnv(t, src)
	r := runJob(t, e.with("GOMEMLIMIT", "89MiB"))
	expect(t, r, 0)
	if plan := memoryPlan(t, r); plan["entries"] != 1.0 || plan["index_bytes"] != 64.0 {
		t.Errorf("memory plan of one file: %v", plan)
	}
	for d := range 20 {
		dir := filepath.Join(src, "node-"+strconv.Itoa(d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".json"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := storeFiles(t, store)
	// 88 MiB + 20,021 × 64 bytes.
	r = runJob(t, e.with("GOMEMLIMIT", "89MiB"))
	expect(t, r, 2, "a backup needs at least 90 MiB", "(2 MiB of it for the index of its 20021 entries)",
		"the limit is 89 MiB (GOMEMLIMIT)", "raise resources.limits.memory to at least 90Mi")
	if after := storeFiles(t, store); len(after) != len(before) {
		t.Errorf("store held %q, now %q", before, after)
	}
}
