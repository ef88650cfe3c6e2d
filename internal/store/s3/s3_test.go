package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

const testPart = 5 << 20

// server is one versitygw with one bucket for a test.
type server struct {
	v      *testenv.Versity
	bucket string
}

func startServer(t *testing.T) *server {
	t.Helper()
	isolateAWS(t)
	v := testenv.StartVersity(t)
	s := &server{v: v, bucket: fmt.Sprintf("snap-%d", rand.Uint32())}
	v.CreateBucket(t, s.bucket)
	return s
}

// isolateAWS keeps the developer's or CI's AWS settings out of a test and
// the test away from the EC2 metadata address (no traffic off loopback).
func isolateAWS(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
		"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
	} {
		unsetenv(t, k)
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func unsetenv(t *testing.T, k string) {
	t.Setenv(k, "") // restores the old value when the test ends
	os.Unsetenv(k)
}

// cfg is the S3 configuration for this server through endpoint (the
// server itself, or a proxy in front of it).
func (s *server) cfg(endpoint string) Config {
	if endpoint == "" {
		endpoint = s.v.Endpoint
	}
	return Config{
		Bucket:         s.bucket,
		Region:         s.v.Region,
		AccessKey:      setting.Secret(s.v.AccessKey),
		SecretKey:      setting.Secret(s.v.SecretKey),
		Endpoint:       endpoint,
		ForcePathStyle: true,
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newStore(t *testing.T, cfg Config, opts store.Options) *Store {
	t.Helper()
	if opts.PartSize == 0 {
		opts.PartSize = testPart
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Version == "" {
		opts.Version = "v0.0.0-test"
	}
	st, err := New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return st
}

// attempts makes each request be tried n times, counting the first,
// through the SDK's own AWS_MAX_ATTEMPTS.
func attempts(t *testing.T, n int) { t.Setenv("AWS_MAX_ATTEMPTS", strconv.Itoa(n)) }

// fastFail makes requests to dead endpoints give up quickly in tests.
func fastFail(t *testing.T) store.Options {
	attempts(t, 2)
	return store.Options{StallTimeout: 500 * time.Millisecond}
}

// assertNothingUnder checks that no object and no open multipart upload
// is left under prefix.
func (s *server) assertNothingUnder(t *testing.T, prefix string) {
	t.Helper()
	if k := s.v.Keys(t, s.bucket, prefix); len(k) != 0 {
		t.Errorf("objects left under %q: %q", prefix, k)
	}
	if u := s.v.MultipartUploads(t, s.bucket, prefix); len(u) != 0 {
		t.Errorf("open multipart uploads left under %q: %q", prefix, u)
	}
}

// onlyReader hides every interface but io.Reader, as the archive stream
// the command hands to Put does.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func s3Error(code string) string {
	return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + code + "</Code><Message>injected by the test</Message></Error>"
}

func isPart(r *http.Request, n int) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == fmt.Sprint(n)
}

func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

func isPutObject(r *http.Request) bool {
	return r.Method == http.MethodPut && !r.URL.Query().Has("partNumber")
}

func TestConformance(t *testing.T) {
	s := startServer(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			return newStore(t, s.cfg(""), store.Options{Concurrency: 3})
		},
		PartSize: testPart,
		Leftovers: func(t *testing.T, _ store.Store, prefix string) []string {
			return s.v.MultipartUploads(t, s.bucket, prefix)
		},
	})
}

// concurrencyProbe is a reverse proxy that counts the part uploads in
// flight at once.
type concurrencyProbe struct {
	inFlight, peak atomic.Int32
}

func (c *concurrencyProbe) start(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("partNumber") {
			n := c.inFlight.Add(1)
			defer c.inFlight.Add(-1)
			for {
				p := c.peak.Load()
				if n <= p || c.peak.CompareAndSwap(p, n) {
					break
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The memory plan's parts in flight and part size, passed in PutOptions,
// override the store's own.
func TestPutOptionsOverrideStore(t *testing.T) {
	s := startServer(t)
	var probe concurrencyProbe
	proxy := testenv.StartFaultProxy(t, probe.start(t, s.v.Endpoint))
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 4})
	data := storetest.Payload(40<<20, 7)
	key := "planned/snap-20261126T031500Z.tar.zst"
	n, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{
		SizeHint: int64(len(data)), Concurrency: 1, PartSize: 10 << 20,
	})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Put = %d, %v", n, err)
	}
	parts := map[string]bool{}
	for _, r := range proxy.Requests() {
		if u, err := url.Parse(strings.TrimPrefix(r, "PUT ")); err == nil && strings.HasPrefix(r, "PUT ") && u.Query().Has("partNumber") {
			parts[u.Query().Get("partNumber")] = true
		}
	}
	if len(parts) != 4 {
		t.Errorf("uploaded %d parts, want 4 (40 MiB in 10 MiB parts)", len(parts))
	}
	if p := probe.peak.Load(); p != 1 {
		t.Errorf("peak parts in flight = %d, want 1", p)
	}
	if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ from the uploaded ones")
	}
}

func TestStream100MiBIn5MiBParts(t *testing.T) {
	s := startServer(t)
	var probe concurrencyProbe
	proxy := testenv.StartFaultProxy(t, probe.start(t, s.v.Endpoint))
	const concurrency = 3
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: concurrency})
	data := storetest.Payload(100<<20, 42)
	key := "stream/snap-20261126T031500Z.tar.zst"
	n, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{
		SizeHint: int64(len(data)),
		Metadata: map[string]string{"source-bytes": "123456", "files": "42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Put stored %d bytes, want %d", n, len(data))
	}
	parts := map[string]bool{}
	for _, r := range proxy.Requests() {
		if u, err := url.Parse(strings.TrimPrefix(r, "PUT ")); err == nil && strings.HasPrefix(r, "PUT ") && u.Query().Has("partNumber") {
			parts[u.Query().Get("partNumber")] = true
		}
	}
	if len(parts) != 20 {
		t.Errorf("uploaded %d distinct parts, want 20 (100 MiB in 5 MiB parts)", len(parts))
	}
	if p := probe.peak.Load(); p > concurrency || p < 2 {
		t.Errorf("peak parts in flight = %d, want 2..%d", p, concurrency)
	}
	if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ from the uploaded ones")
	}
	head, err := s.v.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"source-bytes": "123456", "files": "42", "tool-version": "v0.0.0-test"} {
		if got := head.Metadata[k]; got != want {
			t.Errorf("metadata %s = %q, want %q (all: %v)", k, got, want, head.Metadata)
		}
	}
	if len(head.Metadata[tokenKey]) != 32 {
		t.Errorf("metadata %s = %q, want a 32-digit token", tokenKey, head.Metadata[tokenKey])
	}
	if ct := aws.ToString(head.ContentType); ct != "application/zstd" {
		t.Errorf("content type = %q, want application/zstd", ct)
	}
	s.assertNothingUnder(t, "stream/missing")
	if u := s.v.MultipartUploads(t, s.bucket, "stream/"); len(u) != 0 {
		t.Errorf("open uploads after success: %q", u)
	}
}

func TestPart3FailsLeavesNothing(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if isPart(r, 3) {
			return testenv.Fault{Status: http.StatusInternalServerError, Body: s3Error("InternalError")}
		}
		return testenv.Fault{}
	})
	opts := fastFail(t)
	opts.Concurrency = 2
	st := newStore(t, s.cfg(proxy.URL), opts)
	data := storetest.Payload(8*testPart, 3)
	_, err := st.Put(t.Context(), "fail/part3.tar.zst", onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))})
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("err = %v, want ErrTransfer", err)
	}
	if !strings.Contains(err.Error(), "fail/part3.tar.zst") {
		t.Errorf("error does not name the key: %v", err)
	}
	s.assertNothingUnder(t, "fail/")
	var aborts int
	for _, r := range proxy.Requests() {
		if strings.HasPrefix(r, "DELETE ") && strings.Contains(r, "uploadId=") {
			aborts++
		}
	}
	if aborts == 0 {
		t.Error("no AbortMultipartUpload was sent")
	}
}

func TestCancelMidUploadLeavesNothing(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if isPart(r, 3) {
			cancel() // SIGTERM arrives while parts are in flight
			return testenv.Fault{Delay: time.Second}
		}
		return testenv.Fault{}
	})
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 2})
	data := storetest.Payload(8*testPart, 4)
	_, err := st.Put(ctx, "cancel/mid.tar.zst", onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	s.assertNothingUnder(t, "cancel/")
}

// The object got completed on the server but the client was cancelled
// before it heard so: the upload was interrupted, so the object must go.
func TestCancelDuringCompleteLeavesNothing(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	key := "cancel/complete.tar.zst"
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if isComplete(r) {
			go func() {
				// Cancel only once the server has stored the object.
				for range 200 {
					if len(s.v.Keys(t, s.bucket, key)) == 1 {
						break
					}
					time.Sleep(25 * time.Millisecond)
				}
				cancel()
			}()
			return testenv.Fault{HoldResponse: time.Hour}
		}
		return testenv.Fault{}
	})
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 2})
	data := storetest.Payload(3*testPart, 5)
	_, err := st.Put(ctx, key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	s.assertNothingUnder(t, "cancel/")
}

// The server completed the upload but its answer was lost, so the SDK
// sends CompleteMultipartUpload again. Stores answer that retry
// differently: versitygw repeats its success, AWS may refuse it with 412
// (If-None-Match sees the object the first attempt made) or 404
// NoSuchUpload. The object is this Put's in every case, so Put succeeds.
func TestLostCompleteAnswerIsSuccess(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry testenv.Fault
	}{
		{"retry forwarded", testenv.Fault{}},
		{"retry refused 412", testenv.Fault{Status: http.StatusPreconditionFailed, Body: s3Error("PreconditionFailed")}},
		{"retry NoSuchUpload", testenv.Fault{Status: http.StatusNotFound, Body: s3Error("NoSuchUpload")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
			var completes atomic.Int32
			proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
				if isComplete(r) {
					if completes.Add(1) == 1 {
						return testenv.Fault{HoldResponse: time.Hour}
					}
					return tc.retry
				}
				return testenv.Fault{}
			})
			attempts(t, 3)
			st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 2, StallTimeout: time.Second})
			data := storetest.Payload(3*testPart+7, 6)
			key := "lost/complete.tar.zst"
			n, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if n != int64(len(data)) {
				t.Fatalf("Put stored %d bytes, want %d", n, len(data))
			}
			if completes.Load() < 2 {
				t.Fatalf("CompleteMultipartUpload sent %d times, want a retry", completes.Load())
			}
			if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
				t.Fatal("object differs")
			}
			if u := s.v.MultipartUploads(t, s.bucket, "lost/"); len(u) != 0 {
				t.Errorf("open uploads: %q", u)
			}
		})
	}
}

// Another writer stores the key between our check and our final request:
// If-None-Match keeps its object, and our upload is aborted.
func TestConditionalWriteRace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		final func(*http.Request) bool
	}{
		{"multipart", 3 * testPart, isComplete},
		{"single", 1000, isPutObject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
			key := "race/" + tc.name + ".tar.zst"
			theirs := []byte("the other writer's snapshot")
			proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
				if tc.final(r) && r.Header.Get("If-None-Match") == "*" {
					s.v.PutObject(t, s.bucket, key, theirs)
				}
				return testenv.Fault{}
			})
			st := newStore(t, s.cfg(proxy.URL), store.Options{})
			data := storetest.Payload(tc.size, 7)
			_, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: tc.size})
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("err = %v, want ErrExists", err)
			}
			if got := storetest.Get(t, st, key); !bytes.Equal(got, theirs) {
				t.Fatal("the other writer's object was overwritten")
			}
			if u := s.v.MultipartUploads(t, s.bucket, "race/"); len(u) != 0 {
				t.Errorf("open uploads: %q", u)
			}
		})
	}
}

// A store that answers 501 to If-None-Match still gets the upload, and
// existing keys are still refused by the check before writing.
func TestStoreWithoutConditionalWrites(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	var refused atomic.Int32
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Header.Get("If-None-Match") != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			refused.Add(1)
			return testenv.Fault{Status: http.StatusNotImplemented, Body: s3Error("NotImplemented")}
		}
		return testenv.Fault{}
	})
	st := newStore(t, s.cfg(proxy.URL), store.Options{})
	for i, size := range []int64{3 * testPart, 1000} {
		key := fmt.Sprintf("nocond/%d.tar.zst", i)
		data := storetest.Payload(size, uint64(i))
		if _, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: size}); err != nil {
			t.Fatalf("Put(%d bytes): %v", size, err)
		}
		if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
			t.Fatalf("%s differs", key)
		}
	}
	if refused.Load() != 1 {
		t.Errorf("If-None-Match sent %d times, want once (then remembered)", refused.Load())
	}
	_, err := st.Put(t.Context(), "nocond/0.tar.zst", onlyReader{strings.NewReader("new")}, store.PutOptions{SizeHint: 3})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("overwrite: err = %v, want ErrExists", err)
	}
	if u := s.v.MultipartUploads(t, s.bucket, "nocond/"); len(u) != 0 {
		t.Errorf("open uploads: %q", u)
	}
}

func TestRangeCutShortIsRetried(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 2})
	key := "range/cut.tar.zst"
	data := storetest.Payload(3*testPart+123, 8)
	if _, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	var cuts atomic.Int32
	var mu sync.Mutex
	ranges := map[string]int{}
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		rg := r.Header.Get("Range")
		if r.Method != http.MethodGet || rg == "" {
			return testenv.Fault{}
		}
		mu.Lock()
		ranges[rg]++
		first := ranges[rg] == 1
		mu.Unlock()
		// Cut the first answer for the second and last ranges.
		if first && (strings.HasPrefix(rg, fmt.Sprintf("bytes=%d-", testPart)) || strings.HasPrefix(rg, fmt.Sprintf("bytes=%d-", 3*testPart))) {
			cuts.Add(1)
			return testenv.Fault{CutAfter: 60}
		}
		return testenv.Fault{}
	})
	if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ")
	}
	if cuts.Load() != 2 {
		t.Fatalf("cut %d responses, want 2", cuts.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 4 {
		t.Errorf("requested %d distinct ranges, want 4: %v", len(ranges), ranges)
	}
}

// S3's part sizes: store.PartSize with S3's limits.
func TestPartSizes(t *testing.T) {
	const mib, gib, tib = int64(1 << 20), int64(1 << 30), int64(1 << 40)
	for _, tc := range []struct {
		hint, configured, want int64
	}{
		{-1, 16 * mib, 16 * mib},
		{0, 16 * mib, 16 * mib},
		{1, 16 * mib, 16 * mib},
		{10 * gib, 16 * mib, 16 * mib},
		{100 * gib, 16 * mib, 16 * mib},
		{150 * gib, 16 * mib, 17 * mib},   // 165 GiB / 10,000 = 16.9 MiB
		{1 * tib, 16 * mib, 116 * mib},    // 1.1 TiB / 10,000 = 115.3 MiB
		{5 * tib, 16 * mib, 577 * mib},    // 5.5 TiB / 10,000 = 576.7 MiB
		{5 * tib, 1024 * mib, 1024 * mib}, // already large enough
		{1000, 64_000_000, 62 * mib},      // "64M" rounded up to whole MiB
		{1000, 1, 5 * mib},                // S3's minimum part
		{100 * tib, 16 * mib, 5 * gib},    // S3's maximum part
	} {
		got := Limits().PartSize(tc.hint, tc.configured)
		if got != tc.want {
			t.Errorf("PartSize(%d, %d) = %d (%.1f MiB), want %d", tc.hint, tc.configured, got, float64(got)/float64(mib), tc.want)
		}
		if got%mib != 0 {
			t.Errorf("PartSize(%d, %d) = %d is not whole MiB", tc.hint, tc.configured, got)
		}
		if tc.hint > 0 && tc.hint <= 5*tib {
			if parts := (tc.hint + tc.hint/10 + got - 1) / got; parts > MaxParts {
				t.Errorf("PartSize(%d, %d): a stream 10%% over the hint needs %d parts", tc.hint, tc.configured, parts)
			}
		}
	}
}

func TestSweepIncomplete(t *testing.T) {
	s := startServer(t)
	st := newStore(t, s.cfg(""), store.Options{})
	c := s.v.Client()
	create := func(key string) {
		t.Helper()
		if _, err := c.CreateMultipartUpload(t.Context(), &awss3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key}); err != nil {
			t.Fatal(err)
		}
	}
	create("job/snap-20260101T000000Z.tar.zst")
	create("job/other-20260101T000000Z.tar.zst") // another job's, same prefix
	create("job2/snap-20260101T000000Z.tar.zst") // a neighbour prefix
	// versitygw cannot backdate an upload; the cut-off does the work.
	time.Sleep(1100 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(1100 * time.Millisecond)
	create("job/snap-20260102T000000Z.tar.zst")

	ours := func(key string) bool { return !strings.Contains(key, "other-") }
	aborted, err := st.SweepIncomplete(t.Context(), "job/", cutoff, ours)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"job/snap-20260101T000000Z.tar.zst"}; !slices.Equal(aborted, want) {
		t.Fatalf("aborted %q, want %q", aborted, want)
	}
	if got, want := s.v.MultipartUploads(t, s.bucket, ""), []string{"job/other-20260101T000000Z.tar.zst", "job/snap-20260102T000000Z.tar.zst", "job2/snap-20260101T000000Z.tar.zst"}; !slices.Equal(got, want) {
		t.Fatalf("uploads left: %q, want %q", got, want)
	}
	aborted, err = st.SweepIncomplete(t.Context(), "job/", cutoff, ours)
	if err != nil || len(aborted) != 0 {
		t.Fatalf("second run: %q, %v; want nothing", aborted, err)
	}
}

func TestDeleteBatches(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	st := newStore(t, s.cfg(proxy.URL), store.Options{})
	var keys []string
	for i := range 1003 {
		k := fmt.Sprintf("del/%04d", i)
		s.v.PutObject(t, s.bucket, k, []byte{byte(i)})
		keys = append(keys, k)
	}
	s.v.PutObject(t, s.bucket, "del-keep", []byte("x"))
	objs, err := st.List(t.Context(), "del/")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range objs {
		if o.Size != 1 || o.Modified.IsZero() {
			t.Fatalf("List: %+v", o)
		}
		listed = append(listed, o.Key)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, keys) {
		t.Fatalf("List found %d keys, want the %d stored", len(listed), len(keys))
	}
	var pages int
	for _, r := range proxy.Requests() {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "list-type=2") {
			pages++
		}
	}
	if pages != 2 {
		t.Errorf("List read %d pages, want 2 (1,000 keys a page)", pages)
	}
	if err := st.Delete(t.Context(), append(keys, "del/missing-1", "del/missing-2")); err != nil {
		t.Fatal(err)
	}
	var batches int
	for _, r := range proxy.Requests() {
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "delete") {
			batches++
		}
	}
	if batches != 2 {
		t.Errorf("sent %d DeleteObjects requests, want 2 for 1005 keys", batches)
	}
	if left := s.v.Keys(t, s.bucket, "del"); !slices.Equal(left, []string{"del-keep"}) {
		t.Fatalf("left: %q", left)
	}

	// Per-key failures are reported, naming the key.
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodPost && r.URL.Query().Has("delete") {
			return testenv.Fault{Status: http.StatusOK, Body: `<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult><Error><Key>del-keep</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>`}
		}
		return testenv.Fault{}
	})
	err = st.Delete(t.Context(), []string{"del-keep"})
	if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "del-keep") {
		t.Fatalf("err = %v, want ErrAccess naming del-keep", err)
	}
}

func TestServerSideEncryptionAndStorageClass(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	var mu sync.Mutex
	seen := map[string]map[string]string{}
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodPost && r.URL.Query().Has("uploads") || isPutObject(r) {
			mu.Lock()
			seen[r.Method] = map[string]string{
				"sse":   r.Header.Get("X-Amz-Server-Side-Encryption"),
				"kms":   r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"),
				"class": r.Header.Get("X-Amz-Storage-Class"),
			}
			mu.Unlock()
		}
		return testenv.Fault{}
	})
	cfg := s.cfg(proxy.URL)
	cfg.SSE, cfg.SSEKMSKeyID, cfg.StorageClass = "aws:kms", "alias/snapshots", "STANDARD_IA"
	st := newStore(t, cfg, store.Options{})
	for _, size := range []int64{100, 2 * testPart} {
		_, err := st.Put(t.Context(), fmt.Sprintf("sse/%d.tar.zst", size), onlyReader{bytes.NewReader(storetest.Payload(size, 9))}, store.PutOptions{SizeHint: size})
		if err != nil {
			// versitygw may refuse what it cannot do; the headers are what
			// this test is about.
			t.Logf("Put(%d): %v", size, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{"sse": "aws:kms", "kms": "alias/snapshots", "class": "STANDARD_IA"}
	for _, m := range []string{http.MethodPut, http.MethodPost} {
		for k, v := range want {
			if seen[m][k] != v {
				t.Errorf("%s: %s header = %q, want %q", m, k, seen[m][k], v)
			}
		}
	}
}

// On a custom endpoint no request carries a checksum the API does not
// require; the SDK's own variable still switches them back on.
func TestChecksumsOnCustomEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want bool
	}{
		{"default", "", false},
		{"when_supported", "when_supported", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			if tc.env != "" {
				t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", tc.env)
			}
			proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
			var withChecksum atomic.Int32
			proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
				if r.Method == http.MethodPut {
					for h := range r.Header {
						if strings.HasPrefix(strings.ToLower(h), "x-amz-checksum-") || strings.EqualFold(h, "X-Amz-Trailer") {
							withChecksum.Add(1)
						}
					}
				}
				return testenv.Fault{}
			})
			st := newStore(t, s.cfg(proxy.URL), store.Options{})
			data := storetest.Payload(2*testPart+1, 10)
			if _, err := st.Put(t.Context(), "sum/x.tar.zst", onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))}); err != nil {
				t.Fatal(err)
			}
			if got := withChecksum.Load() > 0; got != tc.want {
				t.Fatalf("PUTs with checksums: %d, want any=%v", withChecksum.Load(), tc.want)
			}
			if got := storetest.Get(t, st, "sum/x.tar.zst"); !bytes.Equal(got, data) {
				t.Fatal("object differs")
			}
		})
	}
}

func TestAWSDefaults(t *testing.T) {
	isolateAWS(t)
	st, err := New(t.Context(), Config{Bucket: "b", Region: "eu-west-1", AccessKey: "AKIAEXAMPLE", SecretKey: "very-secret"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := st.client.Options()
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenSupported {
		t.Errorf("checksum calculation on AWS = %v, want when_supported (CRC32 on every upload)", o.RequestChecksumCalculation)
	}
	if o.BaseEndpoint != nil || o.UsePathStyle {
		t.Errorf("endpoint %v, path style %v: want AWS defaults", o.BaseEndpoint, o.UsePathStyle)
	}
	if got := st.String(); got != "s3://b (eu-west-1)" || strings.Contains(got, "very-secret") {
		t.Errorf("String() = %q", got)
	}
	if st.CredentialMethod() != "static keys" {
		t.Errorf("CredentialMethod() = %q", st.CredentialMethod())
	}

	custom, err := New(t.Context(), Config{Bucket: "b", Endpoint: "https://minio.example:9000", ForcePathStyle: true}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o = custom.client.Options()
	if !o.UsePathStyle || aws.ToString(o.BaseEndpoint) != "https://minio.example:9000" {
		t.Errorf("endpoint %v, path style %v: want the configured ones", aws.ToString(o.BaseEndpoint), o.UsePathStyle)
	}
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired || o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Errorf("checksums on a custom endpoint: %v/%v, want when_required", o.RequestChecksumCalculation, o.ResponseChecksumValidation)
	}
	if o.Region != "us-east-1" {
		t.Errorf("region without SNAPSHOT_AWS_REGION = %q, want us-east-1", o.Region)
	}
	if got := custom.String(); got != "s3://b at https://minio.example:9000 (us-east-1)" {
		t.Errorf("String() = %q", got)
	}
	if custom.CredentialMethod() != "default chain" {
		t.Errorf("CredentialMethod() = %q", custom.CredentialMethod())
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	isolateAWS(t)
	for name, cfg := range map[string]Config{
		"no bucket":       {Region: "us-east-1"},
		"bad endpoint":    {Bucket: "b", Endpoint: "minio:9000"},
		"half static key": {Bucket: "b", AccessKey: "AKIA"},
	} {
		if _, err := New(t.Context(), cfg, store.Options{}); !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("%s: err = %v, want setting.ErrInvalid", name, err)
		}
	}
	if _, err := New(t.Context(), Config{Bucket: "b"}, store.Options{PartSize: 1 << 20}); !errors.Is(err, setting.ErrInvalid) {
		t.Errorf("1 MiB parts: err = %v, want setting.ErrInvalid", err)
	}
}

// GetRange resumes a body cut mid-read from where it stopped, pinned to
// the object it started on; a range that keeps failing is ErrTransfer.
func TestGetRangeCutIsResumed(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	st := newStore(t, s.cfg(proxy.URL), store.Options{Concurrency: 2})
	key := "range/getrange-cut.tar.zst"
	data := storetest.Payload(200_000, 9)
	if _, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		rg := r.Header.Get("Range")
		if r.Method != http.MethodGet || rg == "" {
			return testenv.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, rg)
		if len(seen) <= 2 {
			return testenv.Fault{CutAfter: 30_000}
		}
		return testenv.Fault{}
	})
	rc, err := st.GetRange(t.Context(), key, 1000, 150_000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[1000:151000]) {
		t.Fatalf("got %d bytes, want the 150000 from 1000", len(got))
	}
	mu.Lock()
	if len(seen) != 3 || seen[0] != "bytes=1000-150999" || seen[2] != "bytes=61000-150999" {
		t.Errorf("ranges requested: %q", seen)
	}
	mu.Unlock()

	proxy.SetRule(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			return testenv.Fault{CutAfter: 1000}
		}
		return testenv.Fault{}
	})
	rc, err = st.GetRange(t.Context(), key, 0, 190_000)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("a range cut every time: err = %v, want ErrTransfer", err)
	}
}
