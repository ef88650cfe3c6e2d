package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// faultyStore injects failures into a real file store.
type faultyStore struct {
	store.Store
	deleteErr error
	putErr    error
}

func (f faultyStore) Delete(ctx context.Context, keys []string) error {
	if f.deleteErr != nil {
		return f.deleteErr
	}
	return f.Store.Delete(ctx, keys)
}

func (f faultyStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (int64, error) {
	if f.putErr != nil {
		// Read a little, as a real upload would, then fail.
		io.CopyN(io.Discard, r, 1000)
		return 0, f.putErr
	}
	return f.Store.Put(ctx, key, r, o)
}

func testRunner(t *testing.T, store store.Store) (*Runner, *bytes.Buffer) {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), bytes.Repeat([]byte("pcap"), 100000), 0o644)
	var logs bytes.Buffer
	return &Runner{
		Config: config.Config{
			Provider: "file", Prefix: "snaps/", Name: "snap", SourceDir: src, CompressionLevel: "fastest",
			ProgressInterval: setting.Duration(time.Hour),
			Restore:          config.Restore{Key: "latest", IfMissing: "fail", IfNotEmpty: "fail"},
		},
		Store:  store,
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
		Stdout: io.Discard,
		Now:    func() time.Time { return time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC) },
	}, &logs
}

func TestPruneFailureAfterStoredBackup(t *testing.T) {
	dir := t.TempDir()
	base := fileStore(t, dir)
	boom := fmt.Errorf("%w: delete denied", store.ErrAccess)
	r, _ := testRunner(t, faultyStore{Store: base, deleteErr: boom})
	r.Config.Retention.KeepLast = 1
	os.MkdirAll(filepath.Join(dir, "snaps"), 0o755)
	os.WriteFile(filepath.Join(dir, "snaps", "snap-20200101T000000Z.tar.zst"), []byte("old"), 0o644)
	res, err := r.Backup(t.Context())
	if !errors.Is(err, ErrPrune) || !errors.Is(err, store.ErrAccess) {
		t.Fatalf("err = %v, want ErrPrune wrapping the store's error", err)
	}
	if !strings.Contains(err.Error(), "snaps/snap-20261126T030000Z.tar.zst is stored and safe") {
		t.Errorf("error does not say the backup is safe: %v", err)
	}
	if res.Key == "" || res.Outcome != "stored" {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(res.Key))); err != nil {
		t.Errorf("the new snapshot is missing: %v", err)
	}
}

func TestStoreFailureIsReported(t *testing.T) {
	boom := fmt.Errorf("%w: connection reset", store.ErrTransfer)
	r, _ := testRunner(t, faultyStore{Store: fileStore(t, t.TempDir()), putErr: boom})
	_, err := r.Backup(t.Context())
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("err = %v, want the store's error", err)
	}
}

func TestRestoreLatestPicksNewest(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, fileStore(t, dir))
	for _, k := range []string{"snaps/snap-20261125T000000Z.tar.zst", "snaps/snap-20261126T000000Z.tar.zst", "snaps/snap-20261124T000000Z.tar.zst", "snaps/snap-20991231T000000Z.tar.zst.bak"} {
		os.MkdirAll(filepath.Join(dir, "snaps"), 0o755)
		os.WriteFile(filepath.Join(dir, k), nil, 0o644)
	}
	key, err := r.resolve(t.Context())
	if err != nil || key != "snaps/snap-20261126T000000Z.tar.zst" {
		t.Fatalf("resolve = %q, %v", key, err)
	}
}

// recordingStore remembers the options of each Put and the access of
// each Check.
type recordingStore struct {
	store.Store
	puts   []store.PutOptions
	checks []store.Access
}

func (s *recordingStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (int64, error) {
	s.puts = append(s.puts, o)
	return s.Store.Put(ctx, key, r, o)
}

func (s *recordingStore) Check(ctx context.Context, a store.Access) error {
	s.checks = append(s.checks, a)
	return s.Store.Check(ctx, a)
}

// The memory plan made from the size estimate reaches the store; a plan
// that cannot fit stops the backup before the store is touched.
func TestBackupFollowsThePlan(t *testing.T) {
	st := &recordingStore{Store: fileStore(t, t.TempDir())}
	r, _ := testRunner(t, st)
	var estimate, entries int64
	r.PlanMemory = func(hint, n int64) (Plan, error) {
		estimate, entries = hint, n
		return Plan{PartsInFlight: 2, PartSize: 32 << 20, Workers: 1}, nil
	}
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(st.puts) != 1 || st.puts[0].Concurrency != 2 || st.puts[0].PartSize != 32<<20 || st.puts[0].SizeHint != estimate || estimate <= 0 || entries <= 0 {
		t.Errorf("Put options %+v, estimate %d, entries %d", st.puts, estimate, entries)
	}
	if len(st.checks) != 1 || st.checks[0] != store.Write {
		t.Errorf("checks %v, want one for write", st.checks)
	}

	refused := fmt.Errorf("%w: does not fit", setting.ErrInvalid)
	st = &recordingStore{Store: fileStore(t, t.TempDir())}
	r, _ = testRunner(t, st)
	r.PlanMemory = func(int64, int64) (Plan, error) { return Plan{}, refused }
	if _, err := r.Backup(t.Context()); !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the plan's", err)
	}
	if len(st.puts)+len(st.checks) != 0 {
		t.Errorf("the store was used: %d puts, %d checks", len(st.puts), len(st.checks))
	}
}

// Reading verbs check for read access only.
func TestReadingVerbsCheckRead(t *testing.T) {
	dir := t.TempDir()
	st := &recordingStore{Store: fileStore(t, dir)}
	r, _ := testRunner(t, st)
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.checks = nil
	r.Config.Restore.Dir = t.TempDir()
	for _, verb := range []func(context.Context) (Result, error){
		r.Restore, r.Verify, func(ctx context.Context) (Result, error) { return r.List(ctx, false) },
	} {
		if _, err := verb(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if want := []store.Access{store.Read, store.Read, store.Read}; !slices.Equal(st.checks, want) {
		t.Errorf("checks %v, want %v", st.checks, want)
	}
	st.checks = nil
	r.Config.Retention.KeepLast = 1
	if _, err := r.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.checks, []store.Access{store.Write}) {
		t.Errorf("prune checks %v, want write", st.checks)
	}
}
