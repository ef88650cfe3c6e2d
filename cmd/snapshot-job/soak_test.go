//go:build soak

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// TestSoak runs back-to-back backup+prune cycles against one bucket with
// faults injected at random, then checks that every surviving snapshot
// verifies, that the newest restores to the tree it was taken from, and
// that the bucket holds exactly what retention says. Run with `make soak`
// (SOAK_CYCLES, SOAK_SEED to change the defaults).
func TestSoak(t *testing.T) {
	cycles := envInt(t, "SOAK_CYCLES", 50)
	seed := uint64(envInt(t, "SOAK_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("soak: %d cycles, seed %d (SOAK_SEED=%d reproduces the fault pattern)", cycles, seed, seed)
	const keepLast = 5

	fx := &s3Fixture{v: testenv.StartVersity(t)}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "node-1"), 0o755)
	writeBig(t, filepath.Join(src, "node-1", "capture.pcap"), 11<<20) // three 5 MiB parts
	e, bucket := fx.setup(t, src)
	e = e.with("SNAPSHOT_RETENTION_KEEP_LAST", fmt.Sprint(keepLast), "SNAPSHOT_IO_TIMEOUT", "2s")

	proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 7))
	injected := map[string]int{}
	storm := false // some cycles get four times the faults, so that some runs fail
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		mu.Lock()
		defer mu.Unlock()
		x := rng.Float64()
		if storm {
			x /= 4
		}
		var f testenv.Fault
		var kind string
		switch {
		case x < 0.04:
			f, kind = testenv.Fault{Status: 503, Body: "<Error><Code>SlowDown</Code></Error>"}, "503"
		case x < 0.06:
			f, kind = testenv.Fault{Status: 500, Body: "<Error><Code>InternalError</Code></Error>"}, "500"
		case x < 0.08:
			f, kind = testenv.Fault{Reset: true}, "reset"
		case x < 0.09:
			f, kind = testenv.Fault{Hang: true}, "hang"
		case x < 0.11 && r.Method == http.MethodGet:
			f, kind = testenv.Fault{CutAfter: 1 + rng.Int64N(64<<10)}, "cut"
		case x < 0.13:
			f, kind = testenv.Fault{Delay: time.Duration(rng.IntN(500)) * time.Millisecond}, "delay"
		default:
			return testenv.Fault{}
		}
		injected[kind]++
		return f
	})
	faulty := e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL)

	trees := map[string]map[string]testenv.Entry{} // snapshot key -> source tree it was taken from
	var stored []string
	codes := map[int]int{}
	for i := range cycles {
		// Capture files grow and new ones appear between runs.
		f, _ := os.OpenFile(filepath.Join(src, "node-1", "capture.pcap"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "cycle %d\n", i)
		f.Close()
		os.WriteFile(filepath.Join(src, "node-1", fmt.Sprintf("events-%03d.json", i)), []byte(fmt.Sprintf(`{"cycle":%d}`, i)), 0o644)
		tree := testenv.ReadTree(t, src, nil)
		mu.Lock()
		storm = rng.IntN(10) < 3
		mu.Unlock()
		// Names have one-second resolution.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))

		r := runJob(t, faulty)
		codes[r.code]++
		switch r.code {
		case 0, 6: // stored (6: pruning failed afterwards)
			var term map[string]any
			b, _ := os.ReadFile(e["SNAPSHOT_TERMINATION_LOG"])
			if err := json.Unmarshal(b, &term); err != nil || term["key"] == nil {
				t.Fatalf("cycle %d: exit %d without a key in the termination message %q", i, r.code, b)
			}
			key := term["key"].(string)
			stored = append(stored, key)
			trees[key] = tree
		case 5: // transfer failed after retries: nothing may be left
		default:
			t.Fatalf("cycle %d: exit %d, want 0, 5 or 6\n%s", i, r.code, r)
		}
	}
	t.Logf("exit codes %v; faults injected %v", codes, injected)
	if len(stored) < keepLast {
		t.Fatalf("only %d of %d backups stored: the faults are too heavy to judge anything", len(stored), cycles)
	}

	// One clean prune; then the bucket holds exactly the keepLast newest
	// stored snapshots, and no upload is left open.
	proxy.SetRule(nil)
	expect(t, runJob(t, e, "prune"), 0)
	slices.Sort(stored)
	want := stored[len(stored)-keepLast:]
	if got := fx.v.Keys(t, bucket, ""); !slices.Equal(got, want) {
		t.Fatalf("bucket holds\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if u := fx.v.MultipartUploads(t, bucket, ""); len(u) != 0 {
		t.Errorf("open multipart uploads: %q", u)
	}
	for _, key := range want {
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_KEY", key), "verify"), 0)
	}
	newest := want[len(want)-1]
	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, faulty.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_KEY", newest), "restore"), 0)
	if got := testenv.ReadTree(t, dst, nil); !sameTree(trees[newest], got) {
		t.Errorf("the newest snapshot does not restore to the tree it was taken from")
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
