package kube

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
)

// TestBackupAndRestoreOnSameVolume: a backup Job starts while a restore Job
// is extracting into the same volume. The backup exits 9 (busy) and stores
// nothing; the restore completes; the backup's retry then succeeds, and
// its snapshot holds the restored tree and nothing of the restore's own
// (no .snapshot-job-* entry, no staging directory).
func TestBackupAndRestoreOnSameVolume(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "same/", proxy: true})
	d.writeTree()
	tree := d.chownTree(imageUser)
	d.backup("first")
	s.wantComplete("first", 0)
	first := d.keys()

	// The restore holds the volume while its download is held.
	d.proxy.holdOps("GetObject")
	s.createJobWithEnv(d.full+"-restore", "restoring", "SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite")
	d.proxy.waitHeld(t)
	waitLock(t, d.vol)
	nextSecond()
	d.backup("during")
	if code := s.firstPodExit("during"); code != 9 {
		t.Fatalf("backup during the restore exited %d, want 9", code)
	}
	if keys := d.keys(); !slices.Equal(keys, first) {
		t.Fatalf("bucket %q after the busy backup, want only %q", keys, first)
	}
	d.proxy.Release()
	s.wantComplete("restoring", 0)

	// The Job controller retries after its back-off; by then the restore
	// is done.
	s.wantComplete("during", 9, 0)
	keys := d.keys()
	if len(keys) != 2 {
		t.Fatalf("bucket %q, want the first snapshot and the retry's", keys)
	}
	got := fixture.Tree(t, d.restoreLocally(keys[1]), "lost+found")
	for p := range maps.Keys(got) {
		if strings.Contains("/"+p, "/.snapshot-job-") {
			t.Errorf("the snapshot holds the restore's own entry %s", p)
		}
	}
	fixture.CompareTrees(t, withoutSetgid(tree), withoutSetgid(got))
}
