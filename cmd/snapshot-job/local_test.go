package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// The pod runs as a non-root user; a file it cannot read fails the backup
// with exit 4 naming the file, and nothing is stored.
func TestUnreadableSourceFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the job as another user")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "readable.pcap"), []byte("ok"), 0o644)
	os.WriteFile(filepath.Join(src, "private.pcap"), []byte("secret"), 0o600) // root's
	e, store := fileEnv(t, src)
	reachable(t, src, false)
	reachable(t, store, true)
	reachable(t, filepath.Dir(e["SNAPSHOT_TERMINATION_LOG"]), true)
	r := runJobAs(t, e)
	expect(t, r, 4, "private.pcap", "fsGroup")
	if f := storeFiles(t, store); len(f) != 0 {
		t.Errorf("store holds %q", f)
	}
}

// A restore that fills the target volume exits 4 and leaves the target as
// it was: the staging directory goes, and with it every byte written.
func TestRestoreTargetFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "big.pcap"), 8<<20)
	os.WriteFile(filepath.Join(src, "small.json"), []byte("{}"), 0o644)
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)

	dst := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dst).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dst).Run() })
	os.WriteFile(filepath.Join(dst, "already-here.txt"), []byte("keep"), 0o644)
	before := testenv.ReadTree(t, dst, nil)
	r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore")
	expect(t, r, 4, "space")
	if after := testenv.ReadTree(t, dst, nil); !sameTree(before, after) {
		t.Errorf("target changed: %v", after)
	}
}
