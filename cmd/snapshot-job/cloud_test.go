package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// cloud is what the binary tests need of a real store behind the job:
// S3 on versitygw or Azure on Azurite. A "bucket" is a bucket or a
// container.
type cloud interface {
	// setup makes a new bucket and returns the job's environment for it.
	setup(t *testing.T, src string) (env, string)
	put(t *testing.T, bucket, key string, data []byte)
	keys(t *testing.T, bucket, prefix string) []string
	// nothingLeft fails unless the bucket holds no object and nothing
	// half-uploaded (open multipart uploads, uncommitted blocks).
	nothingLeft(t *testing.T, bucket string)
}

// cloudTests are the scenarios every provider passes through the binary.
func cloudTests(t *testing.T, c cloud) {
	t.Run("RoundTrip", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "node-1", "big.pcap"), 12<<20) // several parts
		e, bucket := c.setup(t, src)
		c.put(t, bucket, "snapshots2/kubeshark-20200101T000000Z.tar.zst", []byte("neighbour"))
		expect(t, runJob(t, e), 0)
		keys := c.keys(t, bucket, "snapshots/")
		if len(keys) != 1 || !strings.HasPrefix(keys[0], "snapshots/kubeshark-") {
			t.Fatalf("keys %q", keys)
		}
		r := runJob(t, e, "list")
		expect(t, r, 0)
		if !strings.Contains(r.stdout, keys[0]) || strings.Contains(r.stdout, "snapshots2") {
			t.Errorf("list: %s", r.stdout)
		}
		expect(t, runJob(t, e, "verify"), 0)
		dst := filepath.Join(t.TempDir(), "restore")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
		// Nothing but the snapshot and the neighbour: no leftovers.
		if all := c.keys(t, bucket, ""); len(all) != 2 {
			t.Errorf("bucket holds %q", all)
		}
	})

	t.Run("RetentionLeavesDecoys", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, bucket := c.setup(t, src)
		old := []string{"snapshots/kubeshark-20200101T000000Z.tar.zst", "snapshots/kubeshark-20200102T000000Z.tar.zst"}
		for _, k := range append(slices.Clone(old), decoys...) {
			c.put(t, bucket, k, []byte(k))
		}
		expect(t, runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1", "SNAPSHOT_RETENTION_DRY_RUN", "true")), 0)
		if got := c.keys(t, bucket, ""); len(got) != len(old)+len(decoys)+1 {
			t.Fatalf("dry run changed the bucket: %q", got)
		}
		time.Sleep(1100 * time.Millisecond) // a new second, a new key
		expect(t, runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1")), 0)
		got := c.keys(t, bucket, "")
		var ours []string
		for _, k := range got {
			if !slices.Contains(decoys, k) {
				ours = append(ours, k)
			}
		}
		for _, d := range decoys {
			if !slices.Contains(got, d) {
				t.Errorf("decoy %s deleted", d)
			}
		}
		if len(ours) != 1 || slices.Contains(old, ours[0]) {
			t.Errorf("left %q, want only the newest snapshot", ours)
		}
	})

	t.Run("RetentionRules", func(t *testing.T) {
		checkRetention(t, func(t *testing.T, keys []string) (env, func() []string) {
			e, bucket := c.setup(t, t.TempDir())
			for _, k := range keys {
				c.put(t, bucket, k, []byte(k))
			}
			return e, func() []string { return c.keys(t, bucket, "") }
		})
	})
}
