package job

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// countingStore counts what reads fetch from a real store.
type countingStore struct {
	store.Store
	rangeBytes, ranges, gets int64
}

func (c *countingStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.ranges++
	rc, err := c.Store.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	c.rangeBytes += int64(len(b))
	return io.NopCloser(bytes.NewReader(b)), err
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	c.gets++
	return c.Store.Get(ctx, key)
}

// filesTree makes a small tree with fixed modes and times, and a 2 MiB
// file that does not compress, so that the object is far larger than
// what files should read of it.
func filesTree(t *testing.T, src string) {
	t.Helper()
	stamp := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.RemoveAll(filepath.Join(src, "a.pcap")))
	must(os.MkdirAll(filepath.Join(src, "node-1", "pcapdump"), 0o755))
	must(os.WriteFile(filepath.Join(src, "node-1", "pcapdump", "big.pcap"), random(2<<20), 0o640))
	must(os.WriteFile(filepath.Join(src, "node-1", "name with space.json"), []byte("{}\n"), 0o600))
	must(os.Symlink("node-1/pcapdump/big.pcap", filepath.Join(src, "latest")))
	must(os.Link(filepath.Join(src, "node-1", "name with space.json"), filepath.Join(src, "node-1", "z-link.json")))
	for _, p := range []string{"node-1/pcapdump/big.pcap", "node-1/name with space.json", "node-1/pcapdump", "node-1"} {
		must(os.Chtimes(filepath.Join(src, p), stamp, stamp))
	}
	tv := unix.NsecToTimeval(stamp.UnixNano())
	must(unix.Lutimes(filepath.Join(src, "latest"), []unix.Timeval{tv, tv}))
}

func random(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

const wantFilesTable = `TYPE      MODE            SIZE  MTIME                 PATH
symlink   0777               0  2026-11-25T01:02:03Z  latest -> node-1/pcapdump/big.pcap
dir       0755               0  2026-11-25T01:02:03Z  node-1
file      0600               3  2026-11-25T01:02:03Z  node-1/name with space.json
dir       0755               0  2026-11-25T01:02:03Z  node-1/pcapdump
file      0640         2097152  2026-11-25T01:02:03Z  node-1/pcapdump/big.pcap
hardlink  0600               0  2026-11-25T01:02:03Z  node-1/z-link.json -> node-1/name with space.json
`

const wantFilesJSON = `{"path":"latest","type":"symlink","size":0,"mode":"0777","mtime":"2026-11-25T01:02:03Z","link":"node-1/pcapdump/big.pcap"}
{"path":"node-1","type":"dir","size":0,"mode":"0755","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/name with space.json","type":"file","size":3,"mode":"0600","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/pcapdump","type":"dir","size":0,"mode":"0755","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/pcapdump/big.pcap","type":"file","size":2097152,"mode":"0640","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/z-link.json","type":"hardlink","size":0,"mode":"0600","mtime":"2026-11-25T01:02:03Z","link":"node-1/name with space.json"}
`

// files lists the entries from the index, reading only the object's tail.
func TestFilesReadsOnlyTheTail(t *testing.T) {
	cs := &countingStore{Store: fileStore(t, t.TempDir())}
	r, logs := testRunner(t, cs)
	filesTree(t, r.Config.SourceDir)
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatal(err)
	}
	objs, _ := cs.List(t.Context(), "snaps/")
	size := objs[0].Size
	for _, asJSON := range []bool{false, true} {
		cs.rangeBytes, cs.ranges, cs.gets = 0, 0, 0
		var out bytes.Buffer
		r.Stdout = &out
		res, err := r.Files(t.Context(), asJSON)
		if err != nil {
			t.Fatalf("Files: %v\n%s", err, logs)
		}
		want := wantFilesTable
		if asJSON {
			want = wantFilesJSON
		}
		if out.String() != want {
			t.Errorf("files (json %v) printed\n%s\nwant\n%s", asJSON, out.String(), want)
		}
		if cs.gets != 0 || cs.ranges != 1 || cs.rangeBytes > 64<<10 || cs.rangeBytes*10 > size {
			t.Errorf("files fetched %d bytes in %d ranges and %d whole reads of a %d-byte object; want one range of at most 64 KiB", cs.rangeBytes, cs.ranges, cs.gets, size)
		}
		if res.Entries != 6 || res.ObjectBytes != cs.rangeBytes {
			t.Errorf("result %+v", res)
		}
	}
}

// A snapshot written before there was an index is read whole, and the
// log says so.
func TestFilesWithoutIndex(t *testing.T) {
	dir := t.TempDir()
	cs := &countingStore{Store: fileStore(t, dir)}
	r, logs := testRunner(t, cs)
	old, err := os.ReadFile("testdata/old-snapshot.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Put(t.Context(), "snaps/snap-20261101T000000Z.tar.zst", bytes.NewReader(old), store.PutOptions{SizeHint: -1}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Stdout = &out
	res, err := r.Files(t.Context(), false)
	if err != nil {
		t.Fatalf("Files: %v\n%s", err, logs)
	}
	want := `TYPE      MODE            SIZE  MTIME                 PATH
dir       0755               0  2026-11-01T00:00:00Z  node-1
file      0644               5  2026-11-01T00:00:00Z  node-1/a.pcap
symlink   0777               0  2026-11-01T00:00:00Z  node-1/latest -> a.pcap
`
	if out.String() != want {
		t.Errorf("files printed\n%s\nwant\n%s", out.String(), want)
	}
	if !strings.Contains(logs.String(), "the snapshot has no index") || cs.gets != 1 || res.ObjectBytes != 2*int64(len(old)) { // the tail read that found no index, then the whole
		t.Errorf("gets %d, result %+v, logs:\n%s", cs.gets, res, logs)
	}
}

func TestFilesDamagedIndexIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, fileStore(t, dir))
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "snaps", "snap-20261126T030000Z.tar.zst")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-30] ^= 0xff // inside the seek table
	os.WriteFile(p, b, 0o644)
	if _, err := r.Files(t.Context(), false); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("Files(damaged) = %v, want ErrCorrupt", err)
	}
}

func TestFilesMissingKey(t *testing.T) {
	r, _ := testRunner(t, fileStore(t, t.TempDir()))
	r.Config.Restore.Key = "snaps/snap-20261126T030000Z.tar.zst"
	if _, err := r.Files(t.Context(), false); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Files(missing key) = %v, want ErrKeyNotFound", err)
	}
	r.Config.Restore.Key = "latest"
	if _, err := r.Files(t.Context(), false); !errors.Is(err, ErrNothingToRestore) {
		t.Fatalf("Files(latest, none) = %v, want ErrNothingToRestore", err)
	}
}

// verify checks the stream against the index when there is one, and
// still verifies a snapshot without one.
func TestVerifyUsesTheIndex(t *testing.T) {
	dir := t.TempDir()
	r, logs := testRunner(t, fileStore(t, dir))
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(t.Context()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !strings.Contains(logs.String(), "indexed=true") {
		t.Errorf("verify did not use the index:\n%s", logs)
	}
	p := filepath.Join(dir, "snaps", "snap-20261126T030000Z.tar.zst")
	b, _ := os.ReadFile(p)
	// The index frame sits before the seek table (9-byte footer, 12 bytes
	// a frame, 8-byte header); a byte in its middle fails its checksum.
	frames := int(b[len(b)-9]) // fewer than 256 here
	tableOff := len(b) - (8 + 12*frames + 9)
	indexSize := int(uint32(b[tableOff+8+12*(frames-1)]) | uint32(b[tableOff+8+12*(frames-1)+1])<<8)
	b[tableOff-indexSize/2] ^= 0x10
	os.WriteFile(p, b, 0o644)
	if _, err := r.Verify(t.Context()); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("Verify(damaged index) = %v, want ErrCorrupt", err)
	}

	old, _ := os.ReadFile("testdata/old-snapshot.tar.zst")
	os.WriteFile(p, old, 0o644)
	logs.Reset()
	if _, err := r.Verify(t.Context()); err != nil {
		t.Fatalf("Verify(no index): %v", err)
	}
	if !strings.Contains(logs.String(), "has no index") {
		t.Errorf("verify of an old snapshot does not say it has no index:\n%s", logs)
	}
}
