package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// hangBound is far above every documented bound at SNAPSHOT_IO_TIMEOUT=1s:
// a run that takes longer is hanging, not retrying.
const hangBound = 2 * time.Minute

// attempts counts requests per key, so that a rule can fail the first
// tries of something and let later ones through.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) next(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[key]++
	return a.n[key]
}

// waitRequest returns once the proxy has seen a request whose
// "METHOD uri" line satisfies match.
func waitRequest(t *testing.T, p *testenv.FaultProxy, match func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, r := range p.Requests() {
			if match(r) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no matching request in a minute; seen:\n%s", strings.Join(p.Requests(), "\n"))
}

func timed(t *testing.T, f func() jobResult) jobResult {
	t.Helper()
	start := time.Now()
	r := f()
	el := time.Since(start)
	t.Logf("job took %s", el.Round(time.Millisecond))
	if el > hangBound {
		t.Errorf("job took %s: longer than any documented bound", el)
	}
	return r
}

func isPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func s3Faults(t *testing.T, fx *s3Fixture) {
	v := fx.v
	bigSource := func(t *testing.T, n int) string {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), n)
		os.WriteFile(filepath.Join(src, "events.json"), []byte(`{"a":1}`), 0o644)
		return src
	}

	t.Run("SlowDownBurstsAreRetried", func(t *testing.T) {
		src := bigSource(t, 16<<20)
		e, bucket := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isPart(r) && a.next(r.URL.Query().Get("partNumber")) <= 2 {
				return testenv.Fault{Status: 503, Body: "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL)), 0)
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 1 {
			t.Fatalf("keys %q", k)
		}
		if u := v.MultipartUploads(t, bucket, ""); len(u) != 0 {
			t.Errorf("open uploads: %q", u)
		}
		dst := filepath.Join(t.TempDir(), "r")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
	})

	t.Run("ResetMidPartIsRetried", func(t *testing.T) {
		src := bigSource(t, 16<<20)
		e, bucket := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isPart(r) && a.next(r.URL.Query().Get("partNumber")) == 1 {
				return testenv.Fault{Reset: true}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL)), 0)
		expect(t, runJob(t, e, "verify"), 0)
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 1 {
			t.Fatalf("keys %q", k)
		}
	})

	t.Run("ServerStopsAnswering", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 1<<20))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
		r := timed(t, func() jobResult {
			return runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_IO_TIMEOUT", "1s"))
		})
		expect(t, r, 5)
		fx.nothingLeft(t, bucket)
	})

	t.Run("ServerStopsAnsweringMidUpload", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 16<<20))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isPart(r) && r.URL.Query().Get("partNumber") == "2" {
				return testenv.Fault{Hang: true}
			}
			return testenv.Fault{}
		})
		r := timed(t, func() jobResult {
			return runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_IO_TIMEOUT", "1s"))
		})
		expect(t, r, 5)
		fx.nothingLeft(t, bucket)
	})

	t.Run("TruncatedObject", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 2<<20))
		expect(t, runJob(t, e), 0)
		key := v.Keys(t, bucket, "snapshots/")[0]
		data := getObject(t, v, bucket, key)
		v.PutObject(t, bucket, "snapshots/kubeshark-20991231T000000Z.tar.zst", data[:len(data)*2/3])
		expect(t, runJob(t, e, "verify"), 7) // latest is the truncated one
		dst := t.TempDir()
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 7)
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("restore left %v", entries)
		}
	})

	// SIGTERM at each phase: exit 143, nothing visible, nothing billed.
	t.Run("SigtermDuringAccessCheck", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 1<<20))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
		j := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL))
		waitRequest(t, proxy, func(r string) bool { return strings.HasPrefix(r, "HEAD /"+bucket) })
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		fx.nothingLeft(t, bucket)
	})

	t.Run("SigtermDuringCompletion", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 12<<20))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		complete := func(r *http.Request) bool {
			return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		}
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if complete(r) {
				// The server completes the upload; the job never hears.
				return testenv.Fault{HoldResponse: time.Minute}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL))
		waitRequest(t, proxy, func(r string) bool { return strings.HasPrefix(r, "POST /") && strings.Contains(r, "uploadId=") })
		time.Sleep(300 * time.Millisecond) // let the server finish the completion
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		fx.nothingLeft(t, bucket)
	})

	t.Run("SigtermDuringRetention", func(t *testing.T) {
		e, bucket := fx.setup(t, bigSource(t, 1<<20))
		v.PutObject(t, bucket, "snapshots/kubeshark-20200101T000000Z.tar.zst", []byte("old"))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPost && r.URL.Query().Has("delete") {
				return testenv.Fault{Hang: true}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RETENTION_KEEP_LAST", "1"))
		waitRequest(t, proxy, func(r string) bool { return strings.HasPrefix(r, "POST /") && strings.Contains(r, "delete") })
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		// The backup was complete before pruning began: it stays.
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 2 {
			t.Errorf("keys %q: want the old snapshot and the new one", k)
		}
		if u := v.MultipartUploads(t, bucket, ""); len(u) != 0 {
			t.Errorf("open uploads: %q", u)
		}
	})

	t.Run("SigtermDuringRestore", func(t *testing.T) {
		src := bigSource(t, 24<<20)
		e, _ := fx.setup(t, src)
		expect(t, runJob(t, e), 0)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodGet && r.Header.Get("Range") != "" && !strings.HasPrefix(r.Header.Get("Range"), "bytes=0-") {
				return testenv.Fault{Delay: 5 * time.Second}
			}
			return testenv.Fault{}
		})
		parent := t.TempDir()
		dst := filepath.Join(parent, "restore")
		os.Mkdir(dst, 0o755)
		os.WriteFile(filepath.Join(parent, "marker"), nil, 0o644)
		j := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst), "restore")
		j.waitFor(t, "restore started")
		time.Sleep(200 * time.Millisecond)
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("target holds %v after an interrupted restore", entries)
		}
	})
}

func azureFaults(t *testing.T, fx *azFixture) {
	az := fx.az
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "capture.pcap"), 16<<20)
	isBlock := func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("comp") == "block"
	}

	t.Run("ServerBusyBurstsAreRetried", func(t *testing.T) {
		e, c := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isBlock(r) && a.next(r.URL.Query().Get("blockid")) <= 2 {
				return testenv.Fault{Status: 503, Body: "<Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>"}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account())), 0)
		if b := az.Blobs(t, c, "snapshots/"); len(b) != 1 {
			t.Fatalf("blobs %q", b)
		}
		expect(t, runJob(t, e, "verify"), 0)
	})

	t.Run("ServerStopsAnswering", func(t *testing.T) {
		e, c := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		proxy.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
		r := timed(t, func() jobResult {
			return runJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account(), "SNAPSHOT_IO_TIMEOUT", "1s"))
		})
		expect(t, r, 5)
		fx.nothingLeft(t, c)
	})

	t.Run("ServerStopsAnsweringMidUpload", func(t *testing.T) {
		e, c := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isBlock(r) && a.next("block") == 2 {
				return testenv.Fault{Hang: true}
			}
			return testenv.Fault{}
		})
		r := timed(t, func() jobResult {
			return runJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account(), "SNAPSHOT_IO_TIMEOUT", "1s"))
		})
		// One block's connection stalls; it is dropped and retried, and
		// the backup completes.
		expect(t, r, 0)
		if b := az.Blobs(t, c, "snapshots/"); len(b) != 1 {
			t.Fatalf("blobs %q", b)
		}
	})

	t.Run("SigtermDuringCommit", func(t *testing.T) {
		e, c := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "blocklist" && a.next("commit") == 1 {
				// The server commits; the job never hears.
				return testenv.Fault{HoldResponse: time.Minute}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account()))
		waitRequest(t, proxy, func(r string) bool { return strings.HasPrefix(r, "PUT /") && strings.Contains(r, "comp=blocklist") })
		time.Sleep(300 * time.Millisecond)
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		fx.nothingLeft(t, c)
	})

	t.Run("AlteredInTransit", func(t *testing.T) {
		e, _ := fx.setup(t, src)
		expect(t, runJob(t, e), 0)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodGet && r.Header.Get("x-ms-range")+r.Header.Get("Range") != "" {
				return testenv.Fault{FlipAt: 100000, FlipSet: true}
			}
			return testenv.Fault{}
		})
		dst := t.TempDir()
		expect(t, runJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account(), "SNAPSHOT_RESTORE_DIR", dst), "restore"), 7)
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("restore left %v", entries)
		}
	})
}
