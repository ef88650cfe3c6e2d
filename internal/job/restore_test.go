package job

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

func restoredNames(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && !archive.Reserved(filepath.Base(rel)) {
			names = append(names, rel)
		}
		return nil
	})
	return names
}

// A partial restore of an indexed snapshot reads it by ranges only, never
// as a whole; one of a snapshot without an index reads it whole, and
// says so. Both restore just the selection.
func TestPartialRestoreReads(t *testing.T) {
	paths, err := archive.ParsePaths([]string{"node-1/name with space.json"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: fileStore(t, t.TempDir())}
	r, logs := testRunner(t, cs)
	filesTree(t, r.Config.SourceDir)
	if _, err := r.Backup(t.Context()); err != nil {
		t.Fatalf("Backup: %v\n%s", err, logs)
	}
	r.Config.Restore.Selection = paths
	r.Config.Restore.Dir = filepath.Join(t.TempDir(), "restore")
	cs.gets, cs.ranges, cs.rangeBytes = 0, 0, 0
	res, err := r.Restore(t.Context())
	if err != nil {
		t.Fatalf("Restore: %v\n%s", err, logs)
	}
	if got := restoredNames(t, r.Config.Restore.Dir); !slices.Equal(got, []string{"node-1", "node-1/name with space.json"}) {
		t.Errorf("restored %q", got)
	}
	// The 2 MiB capture is not fetched: the tail (index and table) and
	// one frame.
	if cs.gets != 0 || cs.rangeBytes > 200<<10 || res.ObjectBytes != cs.rangeBytes {
		t.Errorf("gets %d, %d ranges of %d bytes, result %+v", cs.gets, cs.ranges, cs.rangeBytes, res)
	}
	if !strings.Contains(logs.String(), "frames_fetched=1") {
		t.Errorf("the log does not say one frame was fetched:\n%s", logs)
	}

	old, err := os.ReadFile("testdata/old-snapshot.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	cs2 := &countingStore{Store: fileStore(t, t.TempDir())}
	r2, logs2 := testRunner(t, cs2)
	if _, err := cs2.Put(t.Context(), "snaps/snap-20261101T000000Z.tar.zst", bytes.NewReader(old), store.PutOptions{SizeHint: -1}); err != nil {
		t.Fatal(err)
	}
	r2.Config.Restore.Selection, _ = archive.ParsePaths([]string{"node-1/a.pcap"})
	r2.Config.Restore.Dir = filepath.Join(t.TempDir(), "restore")
	if _, err := r2.Restore(t.Context()); err != nil {
		t.Fatalf("Restore(old): %v\n%s", err, logs2)
	}
	if got := restoredNames(t, r2.Config.Restore.Dir); !slices.Equal(got, []string{"node-1", "node-1/a.pcap"}) {
		t.Errorf("restored %q", got)
	}
	if cs2.gets != 1 || !strings.Contains(logs2.String(), "the snapshot has no index") {
		t.Errorf("gets %d; logs:\n%s", cs2.gets, logs2)
	}
}
