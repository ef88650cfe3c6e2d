package main

import (
	"context"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/snapshot-job/snapshot-job/internal/metrics"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// allSeries are the series every push carries; last success only on
// success.
var allSeries = []string{
	metrics.StartTime, metrics.EndTime, metrics.Duration, metrics.ExitCode, metrics.SourceBytes,
	metrics.StoredBytes, metrics.Entries, metrics.Deleted, metrics.Kept,
}

// group is one grouping key's series as scraped from the Pushgateway.
type group map[string]float64

// scrapeGroup scrapes the Pushgateway and returns the series of the
// group whose labels are exactly want (plus the instance="" the
// Pushgateway adds); it fails when a series of ours has the labels of no
// group pushed, or when the group's series appear more than once.
func scrapeGroup(t *testing.T, pg *testenv.Pushgateway, want map[string]string) group {
	t.Helper()
	text := pg.Scrape(t)
	series := testenv.Series(t, text)
	full := maps.Clone(want)
	full["instance"] = ""
	g := group{}
	for name, samples := range series {
		if !strings.HasPrefix(name, "snapshot_job_") {
			continue
		}
		for _, s := range samples {
			if maps.Equal(s.Labels, full) {
				if _, dup := g[name]; dup {
					t.Fatalf("%s twice in the group %v:\n%s", name, want, text)
				}
				g[name] = s.Value
			}
		}
	}
	return g
}

// checkRun asserts the series every push carries: exit code, times
// within [before, after], duration = end - start, and the counts.
func checkRun(t *testing.T, g group, code int, before, after time.Time, counts map[string]float64) {
	t.Helper()
	for _, name := range allSeries {
		if _, ok := g[name]; !ok {
			t.Errorf("%s missing from the group: %v", name, g)
		}
	}
	if g[metrics.ExitCode] != float64(code) {
		t.Errorf("%s = %v, want %d", metrics.ExitCode, g[metrics.ExitCode], code)
	}
	start, end := g[metrics.StartTime], g[metrics.EndTime]
	lo, hi := float64(before.UnixNano())/1e9, float64(after.UnixNano())/1e9
	if start < lo || end > hi || start > end {
		t.Errorf("start %f, end %f: want %f <= start <= end <= %f", start, end, lo, hi)
	}
	if d := g[metrics.Duration]; math.Abs(d-(end-start)) > 0.002 {
		t.Errorf("%s = %f, want end - start = %f", metrics.Duration, d, end-start)
	}
	for name, want := range counts {
		if g[name] != want {
			t.Errorf("%s = %v, want %v", name, g[name], want)
		}
	}
}

// TestMetricsPushed runs backups that succeed, fail and are stopped
// against versitygw and the real Pushgateway, scraping its /metrics after
// each: every series with its value and labels, and the last success
// moved only by the successful runs.
func TestMetricsPushed(t *testing.T) {
	pg := testenv.StartPushgateway(t)
	fx := &s3Fixture{v: testenv.StartVersity(t)}
	src := t.TempDir()
	files := map[string]int{"node-1/capture-0001.pcap": 300_000, "node-1/events.json": 1234, "node-2/capture.pcap": 77}
	var sourceBytes float64
	for rel, n := range files {
		os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755)
		writeBig(t, filepath.Join(src, rel), n)
		sourceBytes += float64(n)
	}
	e, bucket := fx.setup(t, src)
	e = e.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", pg.URL, "POD_NAMESPACE", "kubeshark",
		"SNAPSHOT_METRICS_CRONJOB", "snap-snapshot-job-backup", "SNAPSHOT_RETENTION_KEEP_LAST", "1")
	labels := map[string]string{"job": "snapshot-job", "snapshot": "kubeshark", "verb": "backup",
		"namespace": "kubeshark", "cronjob": "snap-snapshot-job-backup"}
	// An older snapshot for retention to delete, and a key of another
	// job it must leave alone (and not count).
	fx.put(t, bucket, "snapshots/kubeshark-20200101T000000Z.tar.zst", []byte("old"))
	fx.put(t, bucket, "snapshots/other-20200101T000000Z.tar.zst", []byte("other"))

	var lastSuccess float64
	t.Run("Success", func(t *testing.T) {
		before := time.Now()
		r := runJob(t, e)
		after := time.Now()
		expect(t, r, 0)
		if !hasLine(r, "metrics pushed") {
			t.Errorf("no \"metrics pushed\" line:\n%s", r)
		}
		m := termination(t, e)
		key, _ := m["key"].(string)
		head, err := fx.v.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("the snapshot %q: %v", key, err)
		}
		g := scrapeGroup(t, pg, labels)
		checkRun(t, g, 0, before, after, map[string]float64{
			metrics.SourceBytes: sourceBytes,
			metrics.StoredBytes: float64(aws.ToInt64(head.ContentLength)),
			metrics.Entries:     m["entries"].(float64),
			metrics.Deleted:     1,
			metrics.Kept:        1,
		})
		// Three files in two directories.
		if g[metrics.Entries] != 5 {
			t.Errorf("%s = %v, want 5", metrics.Entries, g[metrics.Entries])
		}
		lastSuccess = g[metrics.LastSuccess]
		if lastSuccess != g[metrics.EndTime] {
			t.Errorf("%s = %f, want the end time %f", metrics.LastSuccess, lastSuccess, g[metrics.EndTime])
		}
		if len(g) != len(allSeries)+1 {
			t.Errorf("series %v, want exactly %d", g, len(allSeries)+1)
		}
	})
	if lastSuccess == 0 {
		t.Fatal("no successful run to compare with")
	}

	t.Run("WrongBucket", func(t *testing.T) {
		before := time.Now()
		r := runJob(t, e.with("SNAPSHOT_AWS_BUCKET", "no-such-bucket"))
		after := time.Now()
		expect(t, r, 3, "no-such-bucket")
		g := scrapeGroup(t, pg, labels)
		checkRun(t, g, 3, before, after, map[string]float64{
			metrics.SourceBytes: 0, metrics.StoredBytes: 0, metrics.Entries: 0, metrics.Deleted: 0, metrics.Kept: 0,
		})
		if g[metrics.LastSuccess] != lastSuccess {
			t.Errorf("%s = %f after a failed run, want %f (the success's)", metrics.LastSuccess, g[metrics.LastSuccess], lastSuccess)
		}
	})

	t.Run("Sigterm", func(t *testing.T) {
		big := t.TempDir()
		writeBig(t, filepath.Join(big, "capture.pcap"), 48<<20)
		proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
				return testenv.Fault{Delay: 300 * time.Millisecond}
			}
			return testenv.Fault{}
		})
		// Snapshot names have a resolution of one second.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		before := time.Now()
		j := startJob(t, e.with("SNAPSHOT_SOURCE_DIR", big, "SNAPSHOT_AWS_ENDPOINT", proxy.URL))
		j.waitFor(t, "progress")
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		after := time.Now()
		if !strings.Contains(j.stderr.String(), `"msg":"metrics pushed"`) {
			t.Errorf("no \"metrics pushed\" line:\n%s", j.stderr.String())
		}
		g := scrapeGroup(t, pg, labels)
		checkRun(t, g, 143, before, after, map[string]float64{metrics.StoredBytes: 0, metrics.Deleted: 0, metrics.Kept: 0})
		if g[metrics.LastSuccess] != lastSuccess {
			t.Errorf("%s = %f after a SIGTERM'd run, want %f (the success's)", metrics.LastSuccess, g[metrics.LastSuccess], lastSuccess)
		}
	})

	t.Run("FileStoreOwnGroup", func(t *testing.T) {
		fe, _ := fileEnv(t, src)
		fe = fe.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", pg.URL, "SNAPSHOT_METRICS_JOB", "local-backups", "SNAPSHOT_NAME", "files")
		before := time.Now()
		expect(t, runJob(t, fe), 0)
		after := time.Now()
		m := termination(t, fe)
		own := map[string]string{"job": "local-backups", "snapshot": "files", "verb": "backup"}
		g := scrapeGroup(t, pg, own)
		checkRun(t, g, 0, before, after, map[string]float64{
			metrics.SourceBytes: sourceBytes, metrics.StoredBytes: m["bytes"].(float64), metrics.Entries: 5,
		})
		if g[metrics.LastSuccess] != g[metrics.EndTime] {
			t.Errorf("%s = %f, want the end time %f", metrics.LastSuccess, g[metrics.LastSuccess], g[metrics.EndTime])
		}
		// The S3 runs' group is untouched.
		if s := scrapeGroup(t, pg, labels); s[metrics.LastSuccess] != lastSuccess || s[metrics.ExitCode] != 143 {
			t.Errorf("the other group changed: %v", s)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		fe, store := fileEnv(t, src)
		fe = fe.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", pg.URL, "SNAPSHOT_NAME", "pruned", "SNAPSHOT_RETENTION_KEEP_LAST", "1")
		os.MkdirAll(filepath.Join(store, "snapshots"), 0o755)
		for _, k := range []string{"pruned-20260101T000000Z.tar.zst", "pruned-20260102T000000Z.tar.zst", "pruned-20260103T000000Z.tar.zst", "other-20260101T000000Z.tar.zst"} {
			os.WriteFile(filepath.Join(store, "snapshots", k), []byte("x"), 0o644)
		}
		own := map[string]string{"job": "snapshot-job", "snapshot": "pruned", "verb": "prune"}
		for _, tc := range []struct {
			dry           string
			deleted, kept float64
		}{{"true", 0, 3}, {"false", 2, 1}} {
			before := time.Now()
			expect(t, runJob(t, fe.with("SNAPSHOT_RETENTION_DRY_RUN", tc.dry), "prune"), 0)
			after := time.Now()
			checkRun(t, scrapeGroup(t, pg, own), 0, before, after, map[string]float64{
				metrics.Deleted: tc.deleted, metrics.Kept: tc.kept, metrics.SourceBytes: 0, metrics.StoredBytes: 0,
			})
			if m := termination(t, fe); m["kept"] != tc.kept {
				t.Errorf("dry run %s: termination message %v, want kept %v", tc.dry, m, tc.kept)
			}
		}
		if f := storeFiles(t, store); len(f) != 2 {
			t.Errorf("store holds %q, want the newest and the other job's", f)
		}
	})

	t.Run("ConfigErrorPushesExit2", func(t *testing.T) {
		fe, store := fileEnv(t, src)
		fe = fe.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", pg.URL, "SNAPSHOT_NAME", "bad", "SNAPSHOT_UPLOAD_CONCURRENCY", "lots")
		expect(t, runJob(t, fe), 2, "SNAPSHOT_UPLOAD_CONCURRENCY")
		if f := storeFiles(t, store); len(f) != 0 {
			t.Errorf("files stored: %q", f)
		}
		g := scrapeGroup(t, pg, map[string]string{"job": "snapshot-job", "snapshot": "bad", "verb": "backup"})
		if g[metrics.ExitCode] != 2 {
			t.Errorf("group %v, want exit code 2", g)
		}
		if _, ok := g[metrics.LastSuccess]; ok {
			t.Errorf("a failed run pushed %s", metrics.LastSuccess)
		}
	})

	t.Run("CredentialsInURL", func(t *testing.T) {
		fe, _ := fileEnv(t, src)
		url := strings.Replace(pg.URL, "http://", "http://ops:pa55w0rd-xyz@", 1)
		fe = fe.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", url, "SNAPSHOT_NAME", "creds", "SNAPSHOT_LOG_LEVEL", "debug")
		r := runJob(t, fe)
		expect(t, r, 0)
		if strings.Contains(r.stderr, "pa55w0rd") || strings.Contains(r.stderr, "ops:") {
			t.Errorf("the Pushgateway credentials were logged:\n%s", r.stderr)
		}
		if g := scrapeGroup(t, pg, map[string]string{"job": "snapshot-job", "snapshot": "creds", "verb": "backup"}); g[metrics.ExitCode] != 0 || g[metrics.LastSuccess] == 0 {
			t.Errorf("group %v", g)
		}
	})
}

// TestMetricsBasicAuth: user:password in the URL authenticates the push
// to a Pushgateway that requires it, and is never logged; without it the
// push is refused, which is a warning and leaves the exit code alone.
func TestMetricsBasicAuth(t *testing.T) {
	pg := testenv.StartPushgateway(t, testenv.WithBasicAuth("ops", "pa55w0rd-xyz"))
	src := t.TempDir()
	testenv.MakeTree(t, src)
	// A store of its own for each run: two backups within one second
	// would want the same name.
	newEnv := func() env { e, _ := fileEnv(t, src); return e }
	group := map[string]string{"job": "snapshot-job", "snapshot": "kubeshark", "verb": "backup"}

	r := runJob(t, newEnv().with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", pg.URL))
	expect(t, r, 0)
	if w := pushWarning(r.lines); w == nil || !strings.Contains(w["msg"].(string), "401") {
		t.Errorf("without credentials: warning %v, want the 401\n%s", w, r)
	}
	if g := scrapeGroup(t, pg, group); len(g) != 0 {
		t.Fatalf("pushed without credentials: %v", g)
	}

	withCreds := strings.Replace(pg.URL, "http://", "http://ops:pa55w0rd-xyz@", 1)
	r = runJob(t, newEnv().with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", withCreds, "SNAPSHOT_LOG_LEVEL", "debug"))
	expect(t, r, 0)
	if pushWarning(r.lines) != nil || !hasLine(r, "metrics pushed") {
		t.Errorf("with credentials: not pushed\n%s", r)
	}
	if strings.Contains(r.stderr, "pa55w0rd") || strings.Contains(r.stderr, "ops:") {
		t.Errorf("the Pushgateway credentials were logged:\n%s", r.stderr)
	}
	if g := scrapeGroup(t, pg, group); g[metrics.ExitCode] != 0 || g[metrics.LastSuccess] == 0 || len(g) != len(allSeries)+1 {
		t.Errorf("group %v", g)
	}

	// A wrong password: refused, and the run's failure code stays.
	wrong := strings.Replace(pg.URL, "http://", "http://ops:not-it@", 1)
	r = runJob(t, newEnv().with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", wrong, "SNAPSHOT_SOURCE_DIR", filepath.Join(src, "missing")))
	expect(t, r, 4)
	if w := pushWarning(r.lines); w == nil || w["exit_code"] != float64(4) {
		t.Errorf("wrong password: warning %v\n%s", w, r)
	}
	if strings.Contains(r.stderr, "not-it") {
		t.Errorf("the password was logged:\n%s", r.stderr)
	}
}

func hasLine(r jobResult, msg string) bool {
	for _, l := range r.lines {
		if l["msg"] == msg {
			return true
		}
	}
	return false
}

// pushWarning returns the warning of a push that failed, or nil.
func pushWarning(lines []map[string]any) map[string]any {
	for _, l := range lines {
		if msg, _ := l["msg"].(string); l["level"] == "WARN" && strings.HasPrefix(msg, "metrics not pushed") {
			return l
		}
	}
	return nil
}

// TestMetricsPushFails: a Pushgateway that is down or hangs is a warning
// that costs at most metrics.Timeout and never changes the exit code,
// SIGTERM'd runs included. The bounds are loose: the tests check the
// bound, not a speed.
func TestMetricsPushFails(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	slack := 20 * time.Second
	for _, tc := range []struct{ name, url string }{
		{"Down", testenv.ClosedPort(t)},
		{"Hangs", testenv.Hanging(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := strings.Replace(tc.url, "http://", "http://ops:pa55w0rd-xyz@", 1)
			e, _ := fileEnv(t, src)
			e = e.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", url)
			for _, c := range []struct {
				env  env
				code int
			}{
				{e, 0},
				{e.with("SNAPSHOT_SOURCE_DIR", filepath.Join(src, "missing")), 4},
			} {
				start := time.Now()
				r := runJob(t, c.env)
				took := time.Since(start)
				expect(t, r, c.code)
				w := pushWarning(r.lines)
				if w == nil {
					t.Fatalf("no warning about the failed push:\n%s", r)
				}
				if w["exit_code"] != float64(c.code) || !strings.Contains(w["hint"].(string), "unchanged") {
					t.Errorf("warning %v", w)
				}
				if took > metrics.Timeout+slack {
					t.Errorf("the run took %s with a Pushgateway that is %s; the push is bounded by %s", took, tc.name, metrics.Timeout)
				}
				if strings.Contains(r.stderr, "pa55w0rd") || strings.Contains(r.stderr, "ops:") {
					t.Errorf("the Pushgateway credentials were logged:\n%s", r.stderr)
				}
			}
		})
	}

	t.Run("SigtermWhileHanging", func(t *testing.T) {
		big := t.TempDir()
		writeBig(t, filepath.Join(big, "capture.pcap"), 64<<20)
		e, store := fileEnv(t, big)
		j := startJob(t, e.with("SNAPSHOT_COMPRESSION_LEVEL", "best", "SNAPSHOT_METRICS_PUSHGATEWAY_URL", testenv.Hanging(t)))
		j.waitFor(t, "progress")
		sent := time.Now()
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		if took := time.Since(sent); took > metrics.Timeout+slack {
			t.Errorf("exit %s after SIGTERM; the push is bounded by %s", took, metrics.Timeout)
		}
		if w := pushWarning(parseLines(j.stderr.String())); w == nil || w["exit_code"] != float64(143) {
			t.Errorf("warning %v\n%s", w, j.stderr.String())
		}
		if f := storeFiles(t, store); len(f) != 0 {
			t.Errorf("files left in the store: %q", f)
		}
	})

	t.Run("MalformedURL", func(t *testing.T) {
		e, store := fileEnv(t, src)
		for _, url := range []string{"http://ops:pa55w0rd-xyz@pushgateway:port", "pushgateway.monitoring:9091", "http://pushgateway:9091/metrics/job/x"} {
			r := runJob(t, e.with("SNAPSHOT_METRICS_PUSHGATEWAY_URL", url))
			expect(t, r, 2, "SNAPSHOT_METRICS_PUSHGATEWAY_URL")
			if strings.Contains(r.stderr, "pa55w0rd") {
				t.Errorf("the URL's password was logged:\n%s", r.stderr)
			}
			if pushWarning(r.lines) != nil {
				t.Errorf("a push was tried with a malformed URL:\n%s", r)
			}
		}
		if f := storeFiles(t, store); len(f) != 0 {
			t.Errorf("files stored: %q", f)
		}
	})
}
