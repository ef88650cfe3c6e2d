package gcs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

const testBucket = "snapshots"

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fastTiming keeps the retry structure but shrinks the waits, so that
// failure tests take seconds. The production values are in defaultTiming.
func fastTiming() timing {
	tm := defaultTiming()
	tm.backoff = 10 * time.Millisecond
	tm.maxBackoff = 50 * time.Millisecond
	tm.controlTry = 2 * time.Second
	tm.dataTry = 5 * time.Second
	tm.cleanup = 5 * time.Second
	return tm
}

func startFake(t *testing.T) *testenv.FakeGCS {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	f := testenv.StartFakeGCS(t)
	f.CreateBucket(t, testBucket)
	return f
}

func newTestStore(t testing.TB, cfg Config, partSize int64, concurrency int) *Store {
	t.Helper()
	s, err := New(t.Context(), cfg, store.Options{PartSize: partSize, Concurrency: concurrency, Logger: testLogger(t), Version: "v0.0.0-test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.tm = fastTiming()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// leftovers are the temporary parts under prefix, as the server lists
// them: what List hides.
func leftovers(t *testing.T, f *testenv.FakeGCS, bucket, prefix string) []string {
	var out []string
	for _, n := range f.Objects(t, bucket, prefix) {
		if snapshotOf(n) != "" {
			out = append(out, n)
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	f := startFake(t)
	const part = 5 << 20
	for _, c := range []struct {
		name, bucket string
		concurrency  int
	}{{"Composite", "composite", 3}, {"SingleStream", "single", 1}} {
		t.Run(c.name, func(t *testing.T) {
			f.CreateBucket(t, c.bucket)
			storetest.Run(t, storetest.Harness{
				New: func(t *testing.T) store.Store {
					return newTestStore(t, Config{Bucket: c.bucket, Endpoint: f.Endpoint()}, part, c.concurrency)
				},
				PartSize: part,
				Leftovers: func(t *testing.T, _ store.Store, prefix string) []string {
					return leftovers(t, f, c.bucket, prefix)
				},
			})
		})
	}
}

// TestLeftoversDetectable shows that the harness's Leftovers sees a
// temporary part that List hides: otherwise the suite's "nothing left"
// checks could not fail.
func TestLeftoversDetectable(t *testing.T) {
	f := startFake(t)
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: f.Endpoint()}, 5<<20, 2)
	key := "left/kubeshark-20261126T031500Z.tar.zst"
	part := tempName(key, "0123456789abcdef", "p", 1)
	f.PutObject(t, testBucket, part, []byte("part"))
	if got := leftovers(t, f, testBucket, "left/"); !slices.Equal(got, []string{part}) {
		t.Fatalf("Leftovers = %q, want %q", got, part)
	}
	objs, err := s.List(t.Context(), "left/")
	if err != nil || len(objs) != 0 {
		t.Fatalf("List = %v, %v; want the part hidden", objs, err)
	}
}

// TestCompositeTree stores more parts than one compose takes, so that the
// snapshot is composed through intermediate objects, and checks the bytes
// and that no temporary object is left.
func TestCompositeTree(t *testing.T) {
	f := startFake(t)
	const part = 5 << 20
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: f.Endpoint()}, part, 4)
	key := "tree/snap-20261126T031500Z.tar.zst"
	want := storetest.Payload(70*part+123, 7) // 71 parts: three groups, then one compose
	n, err := s.Put(t.Context(), key, bytes.NewReader(want), store.PutOptions{SizeHint: int64(len(want))})
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Put = %d, %v", n, err)
	}
	if got := storetest.Get(t, s, key); !bytes.Equal(got, want) {
		t.Fatal("read back differs")
	}
	if got := f.Objects(t, testBucket, "tree/"); !slices.Equal(got, []string{key}) {
		t.Fatalf("objects after Put: %q, want only the snapshot", got)
	}
	a := f.Attrs(t, testBucket, key)
	if a.ContentType != contentTypeZ || a.ContentEncoding != "" || a.Metadata[tokenKey] == "" || a.Metadata[versionKey] != "v0.0.0-test" {
		t.Fatalf("attributes: content type %q, encoding %q, metadata %v", a.ContentType, a.ContentEncoding, a.Metadata)
	}
}

// TestSweepIncomplete: pruning's sweep deletes this job's temporary parts
// older than the cut-off, and nothing else: not a younger part (an upload
// in progress), not another job's, not a snapshot.
func TestSweepIncomplete(t *testing.T) {
	f := startFake(t)
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: f.Endpoint()}, 5<<20, 2)
	mine := "sweep/kubeshark-20261126T031500Z.tar.zst"
	other := "sweep/other-20261126T031500Z.tar.zst"
	oldPart := tempName(mine, "0123456789abcdef", "p", 1)
	oldTree := tempName(mine, "0123456789abcdef", "c1-", 1)
	otherPart := tempName(other, "0123456789abcdef", "p", 1)
	for _, n := range []string{oldPart, oldTree, otherPart, mine} {
		f.PutObject(t, testBucket, n, []byte(n))
	}
	match := func(k string) bool { return strings.HasPrefix(k, "sweep/kubeshark-") }
	// Everything was created just now: a cut-off in the past sweeps nothing.
	got, err := s.SweepIncomplete(t.Context(), "sweep/", time.Now().Add(-time.Hour), match)
	if err != nil || len(got) != 0 {
		t.Fatalf("sweep before the cut-off = %q, %v; want nothing", got, err)
	}
	got, err = s.SweepIncomplete(t.Context(), "sweep/", time.Now().Add(time.Minute), match)
	if err != nil || !slices.Equal(got, []string{mine}) {
		t.Fatalf("sweep = %q, %v; want %q", got, err, mine)
	}
	if left := f.Objects(t, testBucket, "sweep/"); !slices.Equal(left, []string{otherPart, mine}) {
		t.Fatalf("left after the sweep: %q", left)
	}
}

// TestDeleteGuardedByGeneration: Delete sends the generation List saw as
// an ifGenerationMatch precondition, so that GCS refuses to delete a newer
// object of the same name. fake-gcs-server ignores that precondition on
// delete (see testenv.FakeGCS), so the test checks the request the server
// received, through a recording proxy, rather than the server's answer.
func TestDeleteGuardedByGeneration(t *testing.T) {
	f := startFake(t)
	p := testenv.StartFaultProxy(t, f.Endpoint())
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: p.URL}, 5<<20, 2)
	key := "guard/kubeshark-20261126T031500Z.tar.zst"
	f.PutObject(t, testBucket, key, []byte("old"))
	if _, err := s.List(t.Context(), "guard/"); err != nil {
		t.Fatal(err)
	}
	gen := f.Attrs(t, testBucket, key).Generation
	if err := s.Delete(t.Context(), []string{key}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ifGenerationMatch=%d", gen)
	var found bool
	for _, r := range p.Requests() {
		if strings.HasPrefix(r, "DELETE ") && strings.Contains(r, want) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no DELETE with %s among %q", want, p.Requests())
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	key, _ := testenv.GCSServiceAccountKey(t)
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no bucket", Config{}, "SNAPSHOT_GCS_BUCKET: is required"},
		{"URL as bucket", Config{Bucket: "gs://snaps"}, `use the bucket's name alone ("snaps")`},
		{"folder in bucket", Config{Bucket: "snaps/kubeshark"}, "SNAPSHOT_CLOUD_PREFIX"},
		{"upper case", Config{Bucket: "Snaps"}, "lower-case"},
		{"not JSON", Config{Bucket: "snaps", CredentialsJSON: "/var/run/key.json"}, "is not JSON"},
		{"user credentials", Config{Bucket: "snaps", CredentialsJSON: `{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}`}, `is a "authorized_user" credential, not a service-account key`},
		{"external account", Config{Bucket: "snaps", CredentialsJSON: `{"type":"external_account","audience":"x"}`}, "not a service-account key"},
		{"broken key", Config{Bucket: "snaps", CredentialsJSON: setting.Secret(strings.ReplaceAll(string(key), "-----", ""))}, "not a PEM key"},
		{"endpoint", Config{Bucket: "snaps", Endpoint: "storage.example.com"}, "SNAPSHOT_GCS_ENDPOINT is not an http or https URL"},
		{"endpoint query", Config{Bucket: "snaps", Endpoint: "https://storage.example.com/?key=secret"}, "must not carry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(t.Context(), c.cfg, store.Options{})
			if !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v; want ErrInvalid with %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "refresh_token") {
				t.Fatalf("the error quotes the setting: %v", err)
			}
		})
	}
}

// TestKeyAccepted: a real service-account key passes, and neither the
// store's name nor its log carries the private key.
func TestKeyAccepted(t *testing.T) {
	key, private := testenv.GCSServiceAccountKey(t)
	var logged bytes.Buffer
	s, err := New(t.Context(), Config{Bucket: "snaps", CredentialsJSON: setting.Secret(key), Endpoint: "https://storage.example.com"},
		store.Options{Logger: slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.CredentialMethod() != MethodKey || s.Identity() != "snapshots@test-project.iam.gserviceaccount.com" {
		t.Fatalf("method %q, identity %q", s.CredentialMethod(), s.Identity())
	}
	body := strings.Split(strings.TrimSpace(private), "\n")[1]
	if strings.Contains(s.String(), body) || strings.Contains(logged.String(), body) {
		t.Fatal("the private key shows")
	}
}

func TestCheckMissingBucket(t *testing.T) {
	f := startFake(t)
	s := newTestStore(t, Config{Bucket: "missing", Endpoint: f.Endpoint()}, 5<<20, 2)
	err := s.Check(t.Context(), store.Write)
	if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), `bucket "missing" does not exist`) {
		t.Fatalf("Check: %v", err)
	}
}

func TestDeadEndpointIsTransfer(t *testing.T) {
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: testenv.ClosedPort(t)}, 5<<20, 2)
	err := s.Check(t.Context(), store.Write)
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("Check: %v; want ErrTransfer", err)
	}
}

// TestCheckWithoutBucketMetadata: an identity refused the bucket's
// attributes (403, as for one with object roles only) but allowed to list
// passes the check, which says so; refused both, it is ErrAccess naming
// the roles. The 403s come from a fault proxy: the emulator has no IAM.
func TestCheckWithoutBucketMetadata(t *testing.T) {
	f := startFake(t)
	p := testenv.StartFaultProxy(t, f.Endpoint())
	var logged bytes.Buffer
	s, err := New(t.Context(), Config{Bucket: testBucket, Endpoint: p.URL, CheckPrefix: "snapshots/"},
		store.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.tm = fastTiming()
	denied := `{"error":{"code":403,"message":"snapshots@p.iam.gserviceaccount.com does not have storage.buckets.get access to the Google Cloud Storage bucket."}}`
	attrs := func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Path == "/storage/v1/b/"+testBucket
	}
	list := func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Path == "/storage/v1/b/"+testBucket+"/o"
	}
	p.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if attrs(r) {
			return testenv.Fault{Status: 403, Body: denied, Header: http.Header{"Content-Type": {"application/json"}}}
		}
		return testenv.Fault{}
	})
	if err := s.Check(t.Context(), store.Write); err != nil {
		t.Fatalf("Check with list access: %v", err)
	}
	if !strings.Contains(logged.String(), "storage.buckets.get") || !strings.Contains(logged.String(), "prefix=snapshots/") {
		t.Errorf("the log does not say the list was used:\n%s", logged.String())
	}
	var sawList bool
	for _, r := range p.Requests() {
		sawList = sawList || (strings.HasPrefix(r, "GET /storage/v1/b/"+testBucket+"/o?") && strings.Contains(r, "prefix=snapshots%2F") && strings.Contains(r, "maxResults=1"))
	}
	if !sawList {
		t.Errorf("no one-object list under the prefix among %q", p.Requests())
	}
	p.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if attrs(r) || list(r) {
			return testenv.Fault{Status: 403, Body: denied, Header: http.Header{"Content-Type": {"application/json"}}}
		}
		return testenv.Fault{}
	})
	err = s.Check(t.Context(), store.Write)
	if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "roles/storage.objectAdmin") {
		t.Fatalf("Check refused both: %v", err)
	}
}

// TestEmulatorHostIsTheEndpoint: STORAGE_EMULATOR_HOST, the Google
// client's own variable, is taken as the endpoint (plain HTTP, no
// credentials sent) when SNAPSHOT_GCS_ENDPOINT is unset.
func TestEmulatorHostIsTheEndpoint(t *testing.T) {
	f := startFake(t)
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(f.Endpoint(), "http://"))
	s := newTestStore(t, Config{Bucket: testBucket}, 5<<20, 2)
	if s.CredentialMethod() != MethodNone || s.String() != "gs://"+testBucket+" ("+f.Endpoint()+")" {
		t.Fatalf("method %q, store %s", s.CredentialMethod(), s)
	}
	if err := s.Check(t.Context(), store.Read); err != nil {
		t.Fatal(err)
	}
}

// TestGetRangeResumes: a range whose body is cut mid-read is resumed where
// it stopped, and the resumed read asks for the generation the first one
// read, so that it cannot mix two objects.
func TestGetRangeResumes(t *testing.T) {
	f := startFake(t)
	p := testenv.StartFaultProxy(t, f.Endpoint())
	s := newTestStore(t, Config{Bucket: testBucket, Endpoint: p.URL}, 5<<20, 2)
	key := "range/kubeshark-20261126T031500Z.tar.zst"
	want := storetest.Payload(3<<20, 9)
	f.PutObject(t, testBucket, key, want)
	gen := f.Attrs(t, testBucket, key).Generation
	var a attemptCounter
	p.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media" && a.next() == 1 {
			return testenv.Fault{CutAfter: 100000}
		}
		return testenv.Fault{}
	})
	rc, err := s.GetRange(t.Context(), key, 1000, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want[1000:1000+2<<20]) {
		t.Fatalf("read %d bytes, %v; want the range", len(got), err)
	}
	var media []string
	for _, r := range p.Requests() {
		if strings.Contains(r, "alt=media") {
			media = append(media, r)
		}
	}
	if len(media) != 2 || !strings.Contains(media[1], fmt.Sprintf("generation=%d", gen)) {
		t.Fatalf("range requests %q: want two, the second pinned to generation %d", media, gen)
	}
}

type attemptCounter struct {
	mu sync.Mutex
	n  int
}

func (c *attemptCounter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}
