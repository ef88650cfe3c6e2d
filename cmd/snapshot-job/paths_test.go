package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// SNAPSHOT_RESTORE_PATHS end to end: a bad pattern is exit 2 before the
// store is touched, a selection that matches nothing is exit 8 and
// writes nothing, and a selection restores just its entries.
func TestRestorePaths(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)

	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-1,../etc"), "restore"), 2, "SNAPSHOT_RESTORE_PATHS", `"../etc"`)
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-9/**"), "restore"), 8, "node-9/**", "SNAPSHOT_RESTORE_PATHS")
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a restore that matched nothing created the target: %v", err)
	}
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "*/*.json, names/-rf"), "restore"), 0)
	want := testenv.ReadTree(t, src, func(rel string) bool {
		switch rel {
		case "node-1", "node-1/events.json", "names", "names/with space.json", "names/with\ttab.json", "names/-rf":
			return false
		}
		return true
	})
	if diff := testenv.SameTree(want, testenv.ReadTree(t, dst, nil)); diff != "" {
		t.Fatalf("restored subset differs:\n%s", diff)
	}
}
