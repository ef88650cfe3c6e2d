package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/setting"
)

const (
	mi = int64(1 << 20)
	gi = 1024 * mi
	ti = 1024 * gi
)

func TestReadMemLimit(t *testing.T) {
	cgroup := func(t *testing.T, files map[string]string) string {
		root := t.TempDir()
		for name, body := range files {
			p := filepath.Join(root, filepath.FromSlash(name))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(body), 0o644)
		}
		return root
	}
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	v1 := map[string]string{"memory/memory.limit_in_bytes": "536870912\n"}
	for _, tc := range []struct {
		name   string
		env    func(string) string
		files  map[string]string
		bytes  int64
		source string
	}{
		{"GOMEMLIMIT in MiB", env("GOMEMLIMIT", "512MiB"), v1, 512 * mi, "GOMEMLIMIT"},
		{"GOMEMLIMIT in bytes", env("GOMEMLIMIT", "1073741824"), nil, gi, "GOMEMLIMIT"},
		{"GOMEMLIMIT with B", env("GOMEMLIMIT", "1000B"), nil, 1000, "GOMEMLIMIT"},
		{"GOMEMLIMIT in TiB", env("GOMEMLIMIT", "2TiB"), nil, 2 * ti, "GOMEMLIMIT"},
		{"GOMEMLIMIT off", env("GOMEMLIMIT", "off"), v1, 0, "GOMEMLIMIT=off"},
		{"cgroup v2", env(), map[string]string{"memory.max": "268435456\n"}, 256 * mi, "cgroup v2 memory.max"},
		{"cgroup v2 max", env(), map[string]string{"memory.max": "max\n"}, 0, "cgroup v2 memory.max (max)"},
		{"cgroup v1", env(), v1, 512 * mi, "cgroup v1 memory.limit_in_bytes"},
		{"cgroup v1 unlimited", env(), map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, "cgroup v1 memory.limit_in_bytes (unlimited)"},
		{"v2 before v1", env(), map[string]string{"memory.max": "1048576000", "memory/memory.limit_in_bytes": "5"}, 1000 * mi, "cgroup v2 memory.max"},
		{"neither", env(), nil, 0, "no cgroup limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := readMemLimit(tc.env, cgroup(t, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			if l.bytes != tc.bytes || l.source != tc.source {
				t.Fatalf("limit %d (%s), want %d (%s)", l.bytes, l.source, tc.bytes, tc.source)
			}
		})
	}
	for _, bad := range []string{"512M", "lots", "-1", "1.5GiB"} {
		if _, err := readMemLimit(env("GOMEMLIMIT", bad), t.TempDir()); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("GOMEMLIMIT=%s: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := readMemLimit(env(), cgroup(t, map[string]string{"memory.max": "lots"})); err == nil {
		t.Error("a cgroup file that is not a number was accepted")
	}
}

// testPlanner is the defaults (4 parts of 16 MiB, level fastest) on two
// cores.
func testPlanner(provider string, limit int64) planner {
	cfg := config.Config{Provider: provider, PartSize: 16 << 20, UploadConcurrency: 4, CompressionLevel: "fastest"}
	p := newPlanner(cfg, memLimit{bytes: limit, source: "test"})
	p.workers = 2
	return p
}

// estimate is the job's size estimate for a volume of few large files.
func estimate(volume int64) int64 { return volume + volume/64 + 1<<20 }

func TestBackupPlan(t *testing.T) {
	// Compression at fastest on two cores: (2 + 2) × 2 × 4 MiB.
	const comp = 32 * mi
	for _, tc := range []struct {
		name     string
		provider string
		limit    int64
		volume   int64
		parts    int
		part     int64
		workers  int
		bytes    int64
	}{
		{"no limit: the defaults", "s3", 0, 10 * gi, 4, 16 * mi, 2, 64*mi + comp + 6*16*mi},
		{"512Mi, 100 GiB: the defaults fit", "s3", 512 * mi, 100 * gi, 4, 16 * mi, 2, 64*mi + comp + 6*16*mi},
		// 5 TiB needs 586 MiB parts: (4 + 2) × 586 MiB is 3.4 GiB.
		{"no limit, 5 TiB", "s3", 0, 5 * ti, 4, 586 * mi, 2, 64*mi + comp + 6*586*mi},
		{"2Gi, 5 TiB: one part in flight", "s3", 2 * gi, 5 * ti, 1, 586 * mi, 2, 64*mi + comp + 3*586*mi},
		{"2.5Gi, 5 TiB: two parts in flight", "s3", 2560 * mi, 5 * ti, 2, 586 * mi, 2, 64*mi + comp + 4*586*mi},
		// One worker less frees 8 MiB: enough to keep the 4 parts.
		{"workers go before parts", "s3", 64*mi + 24*mi + 6*16*mi, 10 * gi, 4, 16 * mi, 1, 64*mi + 24*mi + 6*16*mi},
		{"azure 512Mi, 5 TiB", "azblob", 512 * mi, 5 * ti, 2, 118 * mi, 2, 64*mi + comp + 3*118*mi},
		// GCS: Azure's 50,000-part bound and one extra part.
		{"gcs 512Mi, 5 TiB", "gcs", 512 * mi, 5 * ti, 2, 118 * mi, 2, 64*mi + comp + 3*118*mi},
		{"gcs no limit, 1 TiB", "gcs", 0, ti, 4, 24 * mi, 2, 64*mi + comp + 5*24*mi},
		{"file store: no parts", "file", 512 * mi, 5 * ti, 0, 0, 2, 64*mi + comp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := testPlanner(tc.provider, tc.limit).backup(estimate(tc.volume), 0)
			if err != nil {
				t.Fatal(err)
			}
			if plan.partsInFlight != tc.parts || plan.partSize != tc.part || plan.workers != tc.workers || plan.bytes != tc.bytes {
				t.Fatalf("plan: %d parts of %d MiB, %d workers, %d MiB; want %d of %d MiB, %d workers, %d MiB",
					plan.partsInFlight, plan.partSize/mi, plan.workers, plan.bytes/mi, tc.parts, tc.part/mi, tc.workers, tc.bytes/mi)
			}
			if tc.limit > 0 && plan.bytes > tc.limit {
				t.Fatalf("planned %d bytes over the limit %d", plan.bytes, tc.limit)
			}
		})
	}
}

func TestBackupPlanDoesNotFit(t *testing.T) {
	_, err := testPlanner("s3", 512*mi).backup(estimate(5*ti), 0)
	if !errors.Is(err, setting.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	// One part of 586 MiB in flight: 3 × 586 + 64 + (1 + 2) × 2 × 4 MiB.
	for _, w := range []string{"a snapshot of about 5.1 TiB", "parts of 586 MiB", "even one part in flight needs 1846 MiB",
		"the limit is 512 MiB (test)", "resources.limits.memory to at least 1846Mi"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "SNAPSHOT_PART_SIZE") {
		t.Errorf("%q suggests lowering a part size that the snapshot's size sets", err)
	}
	// A configured part size above what the size needs may be lowered.
	p := testPlanner("s3", 512*mi)
	p.partSize = gi
	if _, err := p.backup(estimate(gi), 0); err == nil || !strings.Contains(err.Error(), "or lower SNAPSHOT_PART_SIZE") {
		t.Errorf("1 GiB parts in 512 MiB: %v", err)
	}
	if _, err := testPlanner("file", 64*mi).backup(estimate(gi), 0); !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), "at least 88Mi") {
		t.Errorf("file store in 64 MiB: %v", err)
	}
}

// The index a backup holds grows the plan by IndexBytesPerEntry an
// entry; workers and then parts make room for it first, and a volume of
// entries whose index cannot fit is refused naming the memory needed.
func TestBackupPlanCountsTheIndex(t *testing.T) {
	const per = archive.IndexBytesPerEntry
	base, err := testPlanner("s3", 0).backup(estimate(10*gi), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{1, 1000, 1_000_000, 4_194_304} {
		plan, err := testPlanner("s3", 0).backup(estimate(10*gi), n)
		if err != nil {
			t.Fatal(err)
		}
		if plan.bytes != base.bytes+n*per || plan.entries != n {
			t.Errorf("%d entries: planned %d bytes, want %d", n, plan.bytes, base.bytes+n*per)
		}
	}
	// The defaults fill 192 MiB exactly: an index of 8 MiB costs one
	// worker (8 MiB), 16 MiB one part more (16 MiB).
	for _, tc := range []struct {
		entries        int64
		parts, workers int
	}{{0, 4, 2}, {8 * mi / per, 4, 1}, {16 * mi / per, 3, 2}} {
		plan, err := testPlanner("s3", 192*mi).backup(estimate(10*gi), tc.entries)
		if err != nil {
			t.Fatal(err)
		}
		if plan.partsInFlight != tc.parts || plan.workers != tc.workers || plan.bytes > 192*mi {
			t.Errorf("%d entries in 192 MiB: %d parts, %d workers, %d bytes; want %d parts, %d workers",
				tc.entries, plan.partsInFlight, plan.workers, plan.bytes, tc.parts, tc.workers)
		}
	}
	// A million entries: 88 MiB + 64,000,000 bytes is 149.04 MiB.
	_, err = testPlanner("file", 128*mi).backup(estimate(gi), 1_000_000)
	if !errors.Is(err, setting.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, w := range []string{"a backup needs at least 150 MiB", "(62 MiB of it for the index of its 1000000 entries)",
		"the limit is 128 MiB (test)", "at least 150Mi"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
	// One 16 MiB part in flight and one worker: 64 + 24 + 3 × 16 MiB,
	// and the index.
	_, err = testPlanner("s3", 192*mi).backup(estimate(10*gi), 1_000_000)
	for _, w := range []string{"even one part in flight needs 198 MiB (62 MiB of it for the index of its 1000000 entries)", "at least 198Mi"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("%v does not say %q", err, w)
		}
	}
}

func TestReadPlan(t *testing.T) {
	for _, tc := range []struct {
		provider string
		limit    int64
		ranges   int
		bytes    int64
	}{
		// 64 MiB base, 4 of write-behind, (2 + 2) × 17 of frames.
		{"s3", 0, 4, 136*mi + 5*16*mi},
		{"s3", 512 * mi, 4, 136*mi + 5*16*mi},
		{"s3", 136*mi + 3*16*mi, 2, 136*mi + 3*16*mi},
		{"azblob", 136*mi + 2*16*mi + 1, 1, 136*mi + 2*16*mi},
		{"gcs", 0, 4, 136*mi + 5*16*mi},
		{"file", 140 * mi, 0, 136 * mi},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.provider, tc.limit), func(t *testing.T) {
			plan, err := testPlanner(tc.provider, tc.limit).read()
			if err != nil {
				t.Fatal(err)
			}
			if plan.partsInFlight != tc.ranges || plan.bytes != tc.bytes {
				t.Fatalf("%d ranges, %d MiB; want %d, %d MiB", plan.partsInFlight, plan.bytes/mi, tc.ranges, tc.bytes/mi)
			}
		})
	}
	_, err := testPlanner("s3", 140*mi).read()
	if !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), "needs 168 MiB even with one range in flight") {
		t.Errorf("140 MiB: %v", err)
	}
}

// TestMemoryTable prints the memory a backup needs per volume size at the
// defaults (4 parts of 16 MiB in flight, level fastest, two cores), for
// the docs, and pins a few of its numbers.
func TestMemoryTable(t *testing.T) {
	var b strings.Builder
	fmt.Fprintln(&b, "| volume | S3 part | S3 default | S3 least | Azure block | Azure default | Azure least |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	rows := map[string][2]int64{}
	for _, v := range []struct {
		name string
		size int64
	}{{"10 GiB", 10 * gi}, {"100 GiB", 100 * gi}, {"1 TiB", ti}, {"5 TiB", 5 * ti}, {"10 TiB", 10 * ti}} {
		fmt.Fprintf(&b, "| %s |", v.name)
		for i, provider := range []string{"s3", "azblob"} {
			p := testPlanner(provider, 0)
			full, err := p.backup(estimate(v.size), 0)
			if err != nil {
				t.Fatal(err)
			}
			p.concurrency, p.workers = 1, 1
			least, _ := p.backup(estimate(v.size), 0)
			fmt.Fprintf(&b, " %s | %s | %s |", mib(full.partSize), mib(full.bytes), mib(least.bytes))
			r := rows[v.name]
			r[i] = full.bytes
			rows[v.name] = r
		}
		fmt.Fprintln(&b)
	}
	t.Log("\n" + b.String())
	if got := rows["5 TiB"]; got[0] != 64*mi+32*mi+6*586*mi || got[1] != 64*mi+32*mi+5*118*mi {
		t.Errorf("5 TiB: %d and %d MiB", got[0]/mi, got[1]/mi)
	}
	if got := rows["10 GiB"]; got[0] != 192*mi || got[1] != 176*mi {
		t.Errorf("10 GiB: %d and %d MiB", got[0]/mi, got[1]/mi)
	}
}
