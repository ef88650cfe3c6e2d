package kube

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
)

// TestManualBackup: `kubectl create job --from=cronjob/<fullname>-backup`
// runs one pod that stores exactly one snapshot of the volume, reports its
// key in the termination message, and leaves the volume as it was.
func TestManualBackup(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "cluster-a/"})
	tree := d.writeTree()

	d.backup("manual-1")
	s.wantComplete("manual-1", 0)
	res := result(t, s.pods.ofJob("manual-1")[0])
	keys := d.keys()
	if len(keys) != 1 || res["key"] != keys[0] || res["verb"] != "backup" || res["exit_code"] != 0.0 {
		t.Fatalf("bucket %q, result %v: want one snapshot, the one the result names", keys, res)
	}
	d.noUploads()
	fixture.CompareTrees(t, tree, fixture.Tree(t, d.vol, "lost+found"))
	fixture.CompareTrees(t, withoutSetgid(tree), withoutSetgid(fixture.Tree(t, d.restoreLocally(keys[0]), "lost+found")))
}

// TestManualBackupRetention: with retention.keepLast 2, three manual
// backups leave exactly the two newest snapshots, and the third run's
// result names the one it deleted.
func TestManualBackupRetention(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "ret/", values: []string{"retention: {keepLast: 2}"}})
	d.writeTree()

	var written []string
	for _, job := range []string{"backup-1", "backup-2", "backup-3"} {
		nextSecond()
		d.backup(job)
		s.wantComplete(job, 0)
		written = append(written, result(t, s.pods.ofJob(job)[0])["key"].(string))
	}
	if got, want := d.keys(), written[1:]; !slices.Equal(got, want) {
		t.Errorf("bucket %q, want the two newest %q", got, want)
	}
	res := result(t, s.pods.ofJob("backup-3")[0])
	if deleted, _ := res["deleted"].([]any); len(deleted) != 1 || deleted[0] != written[0] {
		t.Errorf("third backup deleted %v, want [%s]", res["deleted"], written[0])
	}
}

// TestManualRestoreOfNamedKey: the NOTES.txt command for an exact snapshot
// (create job --from=cronjob/<fullname>-restore, set env
// SNAPSHOT_RESTORE_KEY and SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite) puts
// that snapshot's entries back over the newer ones; an entry only the
// newer tree has stays. The tree belongs to the job's user, as one an
// earlier restore wrote does.
func TestManualRestoreOfNamedKey(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "named/"})
	d.writeTree()
	v1 := d.chownTree(imageUser)
	d.backup("backup-1")
	s.wantComplete("backup-1", 0)
	k1 := result(t, s.pods.ofJob("backup-1")[0])["key"].(string)

	// The volume moves on: a file changes, a file appears.
	if err := os.WriteFile(filepath.Join(d.vol, "node-a", "logs", "app.json"), []byte(`{"changed":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d.vol, "node-d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.vol, "node-d", "new.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.chownTree(imageUser)
	nextSecond()
	d.backup("backup-2")
	s.wantComplete("backup-2", 0)
	after := fixture.Tree(t, d.vol, "lost+found")

	cmd := notesCommand(t, d.rel0.Info.Notes, "Restore an exact snapshot:")
	s.runNotes(cmd, map[string]string{"<key>": k1, "$(date +%s)": "named"})
	job := d.full + "-restore-named"
	s.wantComplete(job, 0)
	if res := result(t, s.pods.ofJob(job)[0]); res["key"] != k1 {
		t.Errorf("restored %v, want %s", res["key"], k1)
	}
	want := maps.Clone(v1)
	want["node-d"], want["node-d/new.json"] = after["node-d"], after["node-d/new.json"]
	fixture.CompareTrees(t, withoutSetgid(want), withoutSetgid(fixture.Tree(t, d.vol, "lost+found")))
}
