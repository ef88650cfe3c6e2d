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
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/upload"
	"github.com/snapshot-job/snapshot-job/internal/upload/file"
)

// faultyStore injects failures into a real file store.
type faultyStore struct {
	upload.Store
	deleteErr error
	putErr    error
}

func (f faultyStore) Delete(ctx context.Context, keys []string) error {
	if f.deleteErr != nil {
		return f.deleteErr
	}
	return f.Store.Delete(ctx, keys)
}

func (f faultyStore) Put(ctx context.Context, key string, r io.Reader, o upload.PutOptions) (int64, error) {
	if f.putErr != nil {
		// Read a little, as a real upload would, then fail.
		io.CopyN(io.Discard, r, 1000)
		return 0, f.putErr
	}
	return f.Store.Put(ctx, key, r, o)
}

func testRunner(t *testing.T, store upload.Store) (*Runner, *bytes.Buffer) {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), bytes.Repeat([]byte("pcap"), 100000), 0o644)
	var logs bytes.Buffer
	return &Runner{
		Config: config.Config{
			Provider: "file", Prefix: "snaps/", Name: "snap", SourceDir: src, CompressionLevel: "fastest",
			ProgressInterval: config.Duration(time.Hour),
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
	base := file.New(dir)
	boom := fmt.Errorf("%w: delete denied", upload.ErrAccess)
	r, _ := testRunner(t, faultyStore{Store: base, deleteErr: boom})
	r.Config.Retention.KeepLast = 1
	os.MkdirAll(filepath.Join(dir, "snaps"), 0o755)
	os.WriteFile(filepath.Join(dir, "snaps", "snap-20200101T000000Z.tar.zst"), []byte("old"), 0o644)
	res, err := r.Backup(t.Context())
	if !errors.Is(err, ErrPrune) || !errors.Is(err, upload.ErrAccess) {
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
	boom := fmt.Errorf("%w: connection reset", upload.ErrTransfer)
	r, _ := testRunner(t, faultyStore{Store: file.New(t.TempDir()), putErr: boom})
	_, err := r.Backup(t.Context())
	if !errors.Is(err, upload.ErrTransfer) {
		t.Fatalf("err = %v, want the store's error", err)
	}
}

func TestRestoreLatestPicksNewest(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, file.New(dir))
	for _, k := range []string{"snaps/snap-20261125T000000Z.tar.zst", "snaps/snap-20261126T000000Z.tar.zst", "snaps/snap-20261124T000000Z.tar.zst", "snaps/snap-20991231T000000Z.tar.zst.bak"} {
		os.MkdirAll(filepath.Join(dir, "snaps"), 0o755)
		os.WriteFile(filepath.Join(dir, k), nil, 0o644)
	}
	key, err := r.resolve(t.Context())
	if err != nil || key != "snaps/snap-20261126T000000Z.tar.zst" {
		t.Fatalf("resolve = %q, %v", key, err)
	}
}

func TestSizeHintIsAnUpperBound(t *testing.T) {
	r, _ := testRunner(t, nil)
	var buf bytes.Buffer
	st := mustScan(t, r.Config.SourceDir)
	n := mustWrite(t, &buf, r.Config.SourceDir)
	if hint := sizeHint(st); hint < n {
		t.Fatalf("hint %d < archive %d", hint, n)
	}
}
