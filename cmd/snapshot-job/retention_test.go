package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedStore puts fake snapshots and decoys into a file store. Pruning
// never reads a snapshot's body, so any bytes do.
func seedStore(t *testing.T, store string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		p := filepath.Join(store, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var decoys = []string{
	"snapshots/kubeshark-20200101T000000Z.tar.zst.bak",
	"snapshots/kubeshark-latest.tar.zst",
	"snapshots/other-20200101T000000Z.tar.zst",
	"snapshots/sub/kubeshark-20200101T000000Z.tar.zst",
	"snapshots2/kubeshark-20200101T000000Z.tar.zst",
	"kubeshark-20200101T000000Z.tar.zst",
}

func TestBackupWithRetention(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("data"), 0o644)
	e, store := fileEnv(t, src)
	old := []string{
		"snapshots/kubeshark-20200101T000000Z.tar.zst",
		"snapshots/kubeshark-20200102T000000Z.tar.zst",
		"snapshots/kubeshark-20200103T000000Z.tar.zst",
	}
	seedStore(t, store, append(slices.Clone(old), decoys...)...)

	// Dry run: every decision logged, nothing deleted.
	r := runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "2", "SNAPSHOT_RETENTION_DRY_RUN", "true"))
	expect(t, r, 0)
	if n := strings.Count(r.stderr, "would delete (dry run)"); n != 2 {
		t.Errorf("%d would-delete lines, want 2:\n%s", n, r.stderr)
	}
	files := storeFiles(t, store)
	if len(files) != len(old)+len(decoys)+1 {
		t.Fatalf("dry run changed the store: %q", files)
	}

	// For real: the two newest stay (the one just written and the dry
	// run's), and every decoy.
	time.Sleep(1100 * time.Millisecond) // a new second, a new key
	r = runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "2"))
	expect(t, r, 0)
	files = storeFiles(t, store)
	var ours []string
	for _, f := range files {
		if !slices.Contains(decoys, f) {
			ours = append(ours, f)
		}
	}
	for _, d := range decoys {
		if !slices.Contains(files, d) {
			t.Errorf("decoy %s deleted", d)
		}
	}
	if len(ours) != 2 || slices.ContainsFunc(ours, func(k string) bool { return slices.Contains(old, k) }) {
		t.Errorf("snapshots left: %q, want only the two new ones", ours)
	}
	// Five snapshots (three old, the dry run's, this run's), two kept.
	if n := strings.Count(r.stderr, `"msg":"deleting snapshot"`); n != 3 {
		t.Errorf("%d deletion lines, want 3:\n%s", n, r.stderr)
	}
}

func TestPruneVerb(t *testing.T) {
	e, store := fileEnv(t, t.TempDir())
	snaps := []string{
		"snapshots/kubeshark-20261124T100000Z.tar.zst",
		"snapshots/kubeshark-20261125T100000Z.tar.zst",
		"snapshots/kubeshark-20261125T230000Z.tar.zst",
		"snapshots/kubeshark-20261126T010000Z.tar.zst",
	}
	seedStore(t, store, append(slices.Clone(snaps), decoys...)...)
	// No rule: nothing deleted, and the log says why.
	r := runJob(t, e, "prune")
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "no retention rule is set") || len(storeFiles(t, store)) != len(snaps)+len(decoys) {
		t.Fatalf("prune without rules:\n%s", r)
	}
	// Daily 2: the newest of the two most recent days with snapshots.
	expect(t, runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_DAILY", "2"), "prune"), 0)
	got := storeFiles(t, store)
	want := append([]string{snaps[2], snaps[3]}, decoys...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("left %q\nwant %q", got, want)
	}
}
