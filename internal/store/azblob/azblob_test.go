package azblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

const testContainer = "snapshots"

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
	tm.retryDelay = 10 * time.Millisecond
	tm.maxRetryDelay = 50 * time.Millisecond
	tm.checkTry = 5 * time.Second
	tm.controlTry = 5 * time.Second
	tm.commitTry = 5 * time.Second
	tm.dataTry = 5 * time.Second
	tm.cleanup = 5 * time.Second
	return tm
}

// startAzurite runs Azurite with the test container created.
func startAzurite(t *testing.T) *testenv.Azurite {
	az := testenv.StartAzurite(t)
	az.CreateContainer(t, testContainer)
	return az
}

func azureConfig(endpoint, containerName, key string) Config {
	return Config{
		Account:    testenv.AzuriteAccount,
		Container:  containerName,
		StorageKey: setting.Secret(key),
		Endpoint:   endpoint,
	}
}

func newTestStore(t testing.TB, cfg Config, partSize int64, concurrency int) *Store {
	t.Helper()
	s, err := New(t.Context(), cfg, store.Options{PartSize: partSize, Concurrency: concurrency, Logger: testLogger(t), Version: "v0.0.0-test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.tm = fastTiming()
	return s
}

// assertNothingLeft checks that no blob, committed or not, is under prefix.
func assertNothingLeft(t testing.TB, az *testenv.Azurite, prefix string) {
	t.Helper()
	if b := az.Blobs(t, testContainer, prefix); len(b) != 0 {
		t.Errorf("blobs left under %q: %q", prefix, b)
	}
	if b := az.UncommittedBlobs(t, testContainer, prefix); len(b) != 0 {
		t.Errorf("uncommitted blocks left under %q: %q", prefix, b)
	}
}

// TestAzurite runs every scenario against one Azurite: starting it costs
// seconds. Scenarios keep to their own key prefixes.
func TestAzurite(t *testing.T) {
	az := startAzurite(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *testenv.Azurite)
	}{
		{"Conformance", conformance},
		{"LeftoversDetectable", leftoversDetectable},
		{"Stream100MiBSmallBlocks", stream100MiBSmallBlocks},
		{"PutOptionsOverrideStore", putOptionsOverrideStore},
		{"FailedBlockLeavesNothing", failedBlockLeavesNothing},
		{"AccessDeniedOnBlock", accessDeniedOnBlock},
		{"CancelMidUpload", cancelMidUpload},
		{"RefusesExistingBeforeUploading", refusesExistingBeforeUploading},
		{"CommitRaceNeverOverwrites", commitRaceNeverOverwrites},
		{"CommitRetryAfterLostAnswer", commitRetryAfterLostAnswer},
		{"WrongKeyAndMissingContainer", wrongKeyAndMissingContainer},
		{"DeadEndpoint", deadEndpoint},
		{"RangedReadSurvivesCutResponses", rangedReadSurvivesCutResponses},
		{"MetadataAndTier", metadataAndTier},
		{"ListHidesDiscardPlaceholder", listHidesDiscardPlaceholder},
		{"ListPaginates", listPaginates},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, az) })
	}
}

func conformance(t *testing.T, az *testenv.Azurite) {
	const part = 1 << 20
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			return newTestStore(t, azureConfig(az.Endpoint(), testContainer, az.Key()), part, 3)
		},
		PartSize: part,
		// Azure keeps the blocks of a failed upload as an uncommitted blob,
		// billed until it drops them a week later; Azurite lists them with
		// include=uncommittedblobs just as Azure does.
		Leftovers: func(t *testing.T, _ store.Store, prefix string) []string {
			return az.UncommittedBlobs(t, testContainer, prefix)
		},
	})
}

// TestLeftoversDetectable proves the conformance suite's Leftovers hook
// can fail: a staged, never committed block is reported.
func leftoversDetectable(t *testing.T, az *testenv.Azurite) {
	bb := az.ContainerClient(t, testContainer).NewBlockBlobClient("probe/staged-only")
	id := base64.StdEncoding.EncodeToString([]byte("block-0"))
	if _, err := bb.StageBlock(t.Context(), id, nopSeekCloser(bytes.NewReader([]byte("x"))), nil); err != nil {
		t.Fatal(err)
	}
	if got := az.UncommittedBlobs(t, testContainer, "probe/"); !slices.Equal(got, []string{"probe/staged-only"}) {
		t.Fatalf("UncommittedBlobs = %q, want the staged blob", got)
	}
	if got := az.Blobs(t, testContainer, "probe/"); len(got) != 0 {
		t.Fatalf("Blobs = %q, want nothing committed", got)
	}
}

type seekCloser struct{ *bytes.Reader }

func (seekCloser) Close() error { return nil }

func nopSeekCloser(r *bytes.Reader) io.ReadSeekCloser { return seekCloser{r} }

// onlyReader hides everything but Read, as the archive pipe does.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// requestsWith returns the requests the proxy saw with method whose query
// matches.
func requestsWith(t testing.TB, p *testenv.FaultProxy, method string, match func(url.Values) bool) []string {
	t.Helper()
	var out []string
	for _, r := range p.Requests() {
		m, uri, _ := strings.Cut(r, " ")
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			t.Fatalf("proxy log entry %q: %v", r, err)
		}
		if m == method && match(u.Query()) {
			out = append(out, r)
		}
	}
	return out
}

func isBlockPut(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("comp") == "block"
}

// The memory plan's blocks in flight and block size, passed in
// PutOptions, override the store's own.
func putOptionsOverrideStore(t *testing.T, az *testenv.Azurite) {
	const block = 1 << 20
	var inFlight, peak atomic.Int32
	u, _ := url.Parse(az.Origin())
	rp := httputil.NewSingleHostReverseProxy(u)
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isBlockPut(r) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(probe.Close)
	s := newTestStore(t, azureConfig(probe.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), block, 4)
	want := storetest.Payload(8*block, 9)
	key := "planned/snap.tar.zst"
	if _, err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(want)}, store.PutOptions{
		SizeHint: int64(len(want)), Concurrency: 1, PartSize: 2 * block,
	}); err != nil {
		t.Fatal(err)
	}
	sizes := az.BlockSizes(t, testContainer, key)
	if len(sizes) != 4 || sizes[0] != 2*block {
		t.Errorf("block sizes %v, want 4 of %d", sizes, 2*block)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("peak blocks in flight = %d, want 1", p)
	}
	if got := storetest.Get(t, s, key); !bytes.Equal(got, want) {
		t.Fatal("read back differs")
	}
}

func stream100MiBSmallBlocks(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	const (
		size  = 100 << 20
		block = 1 << 20
		conc  = 4
	)
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), block, conc)
	want := storetest.Payload(size, 42)
	key := "stream/big.tar.zst"

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(want)}, store.PutOptions{SizeHint: size})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if n != size {
		t.Fatalf("Put stored %d bytes, want %d", n, size)
	}
	// Buffers are (concurrency+1) blocks whatever the size; a Put that
	// buffered the stream would allocate at least its 100 MiB.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Put allocated %.1f MiB", float64(alloc)/(1<<20))
	if alloc > 40<<20 {
		t.Errorf("Put allocated %d MiB for a %d MiB stream with %d x %d MiB blocks", alloc>>20, size>>20, conc+1, block>>20)
	}

	puts := len(requestsWith(t, proxy, http.MethodPut, func(q url.Values) bool { return q.Get("comp") == "block" }))
	if puts != size/block {
		t.Errorf("proxy saw %d Put Block requests, want %d", puts, size/block)
	}
	sizes := az.BlockSizes(t, testContainer, key)
	if len(sizes) != size/block {
		t.Fatalf("committed %d blocks, want %d", len(sizes), size/block)
	}
	for i, sz := range sizes {
		if sz != block {
			t.Fatalf("block %d has %d bytes, want %d", i, sz, block)
		}
	}
	got := storetest.Get(t, s, key)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("read back %d bytes that differ from the %d stored", len(got), size)
	}
}

// Azure's block sizes: store.PartSize with Azure's limits.
func TestBlockSizes(t *testing.T) {
	const (
		mib = int64(1 << 20)
		gib = 1024 * mib
		tib = 1024 * gib
	)
	// The largest hint that 16 MiB blocks take with the 10 % margin.
	edge := int64(MaxBlocks*16*mib) * 10 / 11
	tests := []struct {
		name             string
		hint, configured int64
		want             int64
	}{
		{"unknown size keeps the configured size", -1, 16 * mib, 16 * mib},
		{"zero keeps the configured size", 0, 16 * mib, 16 * mib},
		{"1 GiB fits easily", gib, 16 * mib, 16 * mib},
		{"just below the raise", edge, 16 * mib, 16 * mib},
		{"just above the raise", edge + 100, 16 * mib, 17 * mib},
		// 5.5 TiB / 50,000 blocks = 115.3 MiB, rounded up to whole MiB.
		{"5 TiB source", 5 * tib, 16 * mib, 116 * mib},
		{"5 TiB source, larger configured size wins", 5 * tib, 256 * mib, 256 * mib},
		{"100 TiB", 100 * tib, 16 * mib, 2307 * mib},
		{"beyond the service limit is capped", 1024 * tib, 16 * mib, MaxBlockSize},
		{"configured above the limit is capped", gib, 5000 * mib, MaxBlockSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Limits().PartSize(tc.hint, tc.configured)
			if got != tc.want {
				t.Fatalf("PartSize(%d, %d) = %d (%.2f MiB), want %d MiB", tc.hint, tc.configured, got, float64(got)/float64(mib), tc.want/mib)
			}
		})
	}
	// Every hint up to the largest blob Azure takes, 10 % larger than
	// estimated, still fits in 50,000 blocks.
	for hint := int64(1); hint <= MaxBlocks*MaxBlockSize/11*10; hint = hint*3 + 12345 {
		bs := Limits().PartSize(hint, 8*mib)
		if need := hint + hint/10; (need+bs-1)/bs > MaxBlocks {
			t.Fatalf("hint %d: block size %d needs %d blocks", hint, bs, (need+bs-1)/bs)
		}
		if bs%mib != 0 {
			t.Fatalf("hint %d: block size %d is not whole MiB", hint, bs)
		}
	}
}

func failedBlockLeavesNothing(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 3)
	// The third block always fails, every retry included.
	var mu sync.Mutex
	var failedID string
	var blockPuts int
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if !isBlockPut(r) {
			return testenv.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		blockPuts++
		id := r.URL.Query().Get("blockid")
		raw, _ := base64.StdEncoding.DecodeString(id)
		if strings.HasSuffix(string(raw), "-00000002") {
			failedID = id
			return testenv.Fault{Status: http.StatusInternalServerError, Body: "<Error><Code>InternalError</Code></Error>"}
		}
		return testenv.Fault{}
	})
	data := storetest.Payload(8<<20, 7)
	_, err := s.Put(t.Context(), "fail/block.tar.zst", bytes.NewReader(data), store.PutOptions{SizeHint: int64(len(data))})
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("Put with a failing block: err = %v, want ErrTransfer", err)
	}
	if failedID == "" {
		t.Fatal("the fault never fired")
	}
	tries := len(requestsWith(t, proxy, http.MethodPut, func(q url.Values) bool { return q.Get("blockid") == failedID }))
	if want := int(s.tm.retries) + 1; tries != want {
		t.Errorf("the failing block was tried %d times, want %d (1 + SDK retries)", tries, want)
	}
	assertNothingLeft(t, az, "fail/")
}

func accessDeniedOnBlock(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 2)
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if isBlockPut(r) {
			return testenv.Fault{Status: http.StatusForbidden, Body: "<Error><Code>AuthorizationPermissionMismatch</Code></Error>"}
		}
		return testenv.Fault{}
	})
	_, err := s.Put(t.Context(), "denied/a.tar.zst", bytes.NewReader(storetest.Payload(3<<20, 1)), store.PutOptions{SizeHint: 3 << 20})
	if !errors.Is(err, store.ErrAccess) {
		t.Fatalf("Put denied: err = %v, want ErrAccess", err)
	}
	assertNothingLeft(t, az, "denied/")
}

func cancelMidUpload(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var blocks sync.WaitGroup
	blocks.Add(1)
	var once sync.Once
	var seen int
	var mu sync.Mutex
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if isBlockPut(r) {
			mu.Lock()
			seen++
			if seen == 5 {
				once.Do(cancel) // as SIGTERM would, with blocks in flight
			}
			mu.Unlock()
		}
		return testenv.Fault{}
	})
	data := storetest.Payload(20<<20, 9)
	_, err := s.Put(ctx, "cancel/a.tar.zst", bytes.NewReader(data), store.PutOptions{SizeHint: int64(len(data))})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: err = %v, want context.Canceled", err)
	}
	if seen < 5 {
		t.Fatalf("only %d blocks were sent before the end", seen)
	}
	assertNothingLeft(t, az, "cancel/")
}

func refusesExistingBeforeUploading(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 2)
	az.PutBlob(t, testContainer, "exists/a.tar.zst", []byte("first"))
	_, err := s.Put(t.Context(), "exists/a.tar.zst", bytes.NewReader(storetest.Payload(3<<20, 1)), store.PutOptions{SizeHint: 3 << 20})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("Put over an existing blob: err = %v, want ErrExists", err)
	}
	if r := requestsWith(t, proxy, http.MethodPut, func(q url.Values) bool { return q.Get("comp") == "block" }); len(r) != 0 {
		t.Fatalf("blocks were sent for a blob that exists: %q", r)
	}
	if got := az.BlobData(t, testContainer, "exists/a.tar.zst"); string(got) != "first" {
		t.Fatalf("existing blob changed to %q", got)
	}
}

// TestCommitRaceNeverOverwrites covers the blob appearing between the
// existence check and the commit: the conditional commit refuses, and
// the staged blocks stay Azure's to expire (they belong to that blob now).
func commitRaceNeverOverwrites(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 2)
	key := "race/a.tar.zst"
	var once sync.Once
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "blocklist" {
			once.Do(func() { az.PutBlob(t, testContainer, key, []byte("other writer")) })
		}
		return testenv.Fault{}
	})
	_, err := s.Put(t.Context(), key, bytes.NewReader(storetest.Payload(3<<20, 1)), store.PutOptions{SizeHint: 3 << 20})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("Put racing another writer: err = %v, want ErrExists", err)
	}
	if got := az.BlobData(t, testContainer, key); string(got) != "other writer" {
		t.Fatalf("the other writer's blob changed to %d bytes", len(got))
	}
}

// TestCommitRetryAfterLostAnswer: a commit that succeeded but whose
// answer was lost is retried by the SDK and refused by If-None-Match;
// the blob carries this upload's ID, so Put reports success.
func commitRetryAfterLostAnswer(t *testing.T, az *testenv.Azurite) {
	s := newTestStore(t, azureConfig(az.Endpoint(), testContainer, az.Key()), 1<<20, 2)
	key := "lost/a.tar.zst"
	bb := s.client.NewBlockBlobClient(key)
	id := blockID("feedfacefeedfacefeedfacefeedface", 0)
	if _, err := bb.StageBlock(t.Context(), id, nopSeekCloser(bytes.NewReader([]byte("data"))), nil); err != nil {
		t.Fatal(err)
	}
	md := s.metadataToAzure(nil, "feedfacefeedfacefeedfacefeedface")
	if err := s.commit(t.Context(), bb, key, []string{id}, md, "feedfacefeedfacefeedfacefeedface"); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	if err := s.commit(t.Context(), bb, key, []string{id}, md, "feedfacefeedfacefeedfacefeedface"); err != nil {
		t.Fatalf("repeated commit of the same upload: %v, want success", err)
	}
	if err := s.commit(t.Context(), bb, key, []string{id}, md, "00000000000000000000000000000000"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("commit of another upload: %v, want ErrExists", err)
	}
	if got := az.BlobData(t, testContainer, key); string(got) != "data" {
		t.Fatalf("blob = %q", got)
	}
}

func wrongKeyAndMissingContainer(t *testing.T, az *testenv.Azurite) {
	wrongKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 64))
	t.Run("wrong key", func(t *testing.T) {
		s := newTestStore(t, azureConfig(az.Endpoint(), testContainer, wrongKey), 1<<20, 2)
		err := s.Check(t.Context(), store.Write)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check: err = %v, want ErrAccess", err)
		}
		for _, want := range []string{testenv.AzuriteAccount, testContainer, "shared key", "SNAPSHOT_AZBLOB_STORAGE_KEY"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		if strings.Contains(err.Error(), wrongKey) {
			t.Fatalf("error leaks the key: %v", err)
		}
		if _, err := s.Put(t.Context(), "k/a", bytes.NewReader([]byte("x")), store.PutOptions{SizeHint: 1}); !errors.Is(err, store.ErrAccess) {
			t.Errorf("Put: err = %v, want ErrAccess", err)
		}
		if _, err := s.List(t.Context(), "k/"); !errors.Is(err, store.ErrAccess) {
			t.Errorf("List: err = %v, want ErrAccess", err)
		}
		if _, _, err := s.Get(t.Context(), "k/a"); !errors.Is(err, store.ErrAccess) {
			t.Errorf("Get: err = %v, want ErrAccess", err)
		}
	})
	t.Run("missing container", func(t *testing.T) {
		s := newTestStore(t, azureConfig(az.Endpoint(), "no-such-container", az.Key()), 1<<20, 2)
		err := s.Check(t.Context(), store.Write)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check: err = %v, want ErrAccess", err)
		}
		for _, want := range []string{testenv.AzuriteAccount, "no-such-container", "does not exist", "shared key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		if _, err := s.Put(t.Context(), "k/a", bytes.NewReader([]byte("x")), store.PutOptions{SizeHint: 1}); !errors.Is(err, store.ErrAccess) {
			t.Errorf("Put: err = %v, want ErrAccess", err)
		}
		if _, err := s.List(t.Context(), ""); !errors.Is(err, store.ErrAccess) {
			t.Errorf("List: err = %v, want ErrAccess", err)
		}
	})
}

func deadEndpoint(t *testing.T, az *testenv.Azurite) {
	key := testenv.AzuriteKey
	t.Run("closed port", func(t *testing.T) {
		s := newTestStore(t, azureConfig("http://"+testenv.ClosedAddr(t)+"/"+testenv.AzuriteAccount, testContainer, key), 1<<20, 2)
		assertAllTransfer(t, s)
	})
	t.Run("hanging server", func(t *testing.T) {
		proxy := testenv.StartFaultProxy(t, az.Origin())
		proxy.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
		s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, key), 1<<20, 2)
		// Per-try timeouts shrunk from production's so the test is quick;
		// the structure (timeout per try, bounded retries) is the same.
		s.tm.checkTry, s.tm.controlTry, s.tm.dataTry, s.tm.commitTry = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		assertAllTransfer(t, s)
	})
}

func assertAllTransfer(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Check(t.Context(), store.Write); !errors.Is(err, store.ErrTransfer) {
		t.Errorf("Check: err = %v, want ErrTransfer", err)
	} else {
		t.Logf("Check: %v", err)
	}
	if _, err := s.Put(t.Context(), "dead/a", bytes.NewReader([]byte("x")), store.PutOptions{SizeHint: 1}); !errors.Is(err, store.ErrTransfer) {
		t.Errorf("Put: err = %v, want ErrTransfer", err)
	}
	if _, _, err := s.Get(t.Context(), "dead/a"); !errors.Is(err, store.ErrTransfer) {
		t.Errorf("Get: err = %v, want ErrTransfer", err)
	}
	if _, err := s.List(t.Context(), "dead/"); !errors.Is(err, store.ErrTransfer) {
		t.Errorf("List: err = %v, want ErrTransfer", err)
	}
	if err := s.Delete(t.Context(), []string{"dead/a"}); !errors.Is(err, store.ErrTransfer) {
		t.Errorf("Delete: err = %v, want ErrTransfer", err)
	}
}

func rangedReadSurvivesCutResponses(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 3)
	want := storetest.Payload(11<<20+777, 11) // 12 ranges; the short last one is never cut
	key := "cut/a.tar.zst"
	if _, err := s.Put(t.Context(), key, bytes.NewReader(want), store.PutOptions{SizeHint: int64(len(want))}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	cuts := map[string]bool{}
	var issued int
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		rng := r.Header.Get("x-ms-range")
		if r.Method != http.MethodGet || rng == "" {
			return testenv.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		// Cut the first try of every other range after 100 KiB. The
		// short last range ends before the cut, so it is never picked
		// (which range is seen first depends on scheduling).
		var from, to int64
		fmt.Sscanf(rng, "bytes=%d-%d", &from, &to)
		if !cuts[rng] && len(cuts)%2 == 0 && to-from+1 > 100<<10 {
			cuts[rng] = true
			issued++
			return testenv.Fault{CutAfter: 100 << 10}
		}
		cuts[rng] = true
		return testenv.Fault{}
	})
	got := storetest.Get(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes that differ from the %d stored", len(got), len(want))
	}
	ranges := len(requestsWith(t, proxy, http.MethodGet, func(url.Values) bool { return true }))
	if issued == 0 || ranges != 12+issued {
		t.Fatalf("%d GETs for 12 ranges of which %d were cut: want one retry per cut", ranges, issued)
	}
}

func metadataAndTier(t *testing.T, az *testenv.Azurite) {
	cfg := azureConfig(az.Endpoint(), testContainer, az.Key())
	cfg.AccessTier = "Cool"
	s := newTestStore(t, cfg, 1<<20, 2)
	key := "meta/a.tar.zst"
	md := map[string]string{"source-bytes": "12345", "file-count": "7", "bad-välue": "x", "note": "ünïcode"}
	if _, err := s.Put(t.Context(), key, bytes.NewReader([]byte("hello")), store.PutOptions{SizeHint: 5, Metadata: md}); err != nil {
		t.Fatal(err)
	}
	raw, tier := az.BlobMetadata(t, testContainer, key)
	if tier != "Cool" {
		t.Errorf("access tier = %q, want Cool", tier)
	}
	if metaValue(toPtrs(raw), "source_bytes") != "12345" {
		t.Errorf("stored metadata %v has no source_bytes", raw)
	}
	got, err := s.Metadata(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"source-bytes": "12345", "file-count": "7", "snapshot-job-version": "v0.0.0-test"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Metadata[%q] = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["note"]; ok {
		t.Errorf("a non-ASCII value was stored: %v", got)
	}
	if got["snapshot-job-upload"] == "" {
		t.Errorf("no upload ID in %v", got)
	}
}

func toPtrs(m map[string]string) map[string]*string {
	out := map[string]*string{}
	for k, v := range m {
		out[k] = to.Ptr(v)
	}
	return out
}

// TestListHidesDiscardPlaceholder: the empty blob that discards a failed
// upload's blocks lives for one round trip; List never shows it.
func listHidesDiscardPlaceholder(t *testing.T, az *testenv.Azurite) {
	s := newTestStore(t, azureConfig(az.Endpoint(), testContainer, az.Key()), 1<<20, 2)
	_, err := az.ContainerClient(t, testContainer).NewBlockBlobClient("hide/a.tar.zst").CommitBlockList(t.Context(), nil,
		&blockblob.CommitBlockListOptions{Metadata: map[string]*string{metaDiscard: to.Ptr("true")}})
	if err != nil {
		t.Fatal(err)
	}
	az.PutBlob(t, testContainer, "hide/b.tar.zst", []byte("b"))
	objs, err := s.List(t.Context(), "hide/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Key != "hide/b.tar.zst" || objs[0].Size != 1 {
		t.Fatalf("List = %+v, want only hide/b.tar.zst", objs)
	}
}

func listPaginates(t *testing.T, az *testenv.Azurite) {
	proxy := testenv.StartFaultProxy(t, az.Origin())
	s := newTestStore(t, azureConfig(proxy.URL+"/"+testenv.AzuriteAccount, testContainer, az.Key()), 1<<20, 2)
	s.listPage = 7 // the service's page is 5,000 names; a small one keeps the test quick
	const n = 30
	for i := range n {
		az.PutBlob(t, testContainer, fmt.Sprintf("many/%05d", i), []byte{byte(i)})
	}
	az.PutBlob(t, testContainer, "other/x", nil)
	objs, err := s.List(t.Context(), "many/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != n {
		t.Fatalf("List found %d blobs, want %d", len(objs), n)
	}
	for i, o := range objs {
		if o.Key != fmt.Sprintf("many/%05d", i) || o.Size != 1 {
			t.Fatalf("List[%d] = %+v", i, o)
		}
	}
	pages := requestsWith(t, proxy, http.MethodGet, func(q url.Values) bool { return q.Get("comp") == "list" })
	if len(pages) != (n+6)/7 {
		t.Fatalf("%d list requests, want %d pages", len(pages), (n+6)/7)
	}
}
