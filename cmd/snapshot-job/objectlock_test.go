package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// TestS3ObjectLock runs the binary against a versitygw bucket with Object
// Lock (and versioning, as on AWS).
func TestS3ObjectLock(t *testing.T) {
	fx := &s3Fixture{v: testenv.StartVersity(t, testenv.WithVersioning())}
	v := fx.v
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.pcap"), []byte("captured"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, _ := fx.setup(t, src) // creates a bucket without Object Lock: for NoLockOnBucket
	locked := "locked-snaps"
	v.CreateLockedBucket(t, locked)
	le := e.with("SNAPSHOT_AWS_BUCKET", locked, "SNAPSHOT_AWS_OBJECT_LOCK_MODE", "GOVERNANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "1")

	t.Run("BackupThenPruneKeepsLocked", func(t *testing.T) {
		started := time.Now()
		r := runJob(t, le)
		expect(t, r, 0)
		keys := v.Keys(t, locked, "snapshots/")
		if len(keys) != 1 {
			t.Fatalf("keys %q, want one snapshot", keys)
		}
		out, err := v.Client().GetObjectRetention(t.Context(), &awss3.GetObjectRetentionInput{Bucket: aws.String(locked), Key: &keys[0]})
		if err != nil {
			t.Fatalf("GetObjectRetention: %v", err)
		}
		until := aws.ToTime(out.Retention.RetainUntilDate)
		if out.Retention.Mode != types.ObjectLockRetentionModeGovernance || until.Before(started.Add(24*time.Hour-time.Second)) || until.After(time.Now().Add(24*time.Hour+time.Minute)) {
			t.Errorf("retention %s until %s, want GOVERNANCE for a day", out.Retention.Mode, until)
		}

		// A second backup, a second later (the names are the times),
		// with KEEP_LAST=1: its retention wants the first one gone, and
		// the lock keeps it. That is no pruning failure (exit 6).
		time.Sleep(1100 * time.Millisecond)
		r = runJob(t, le.with("SNAPSHOT_RETENTION_KEEP_LAST", "1"))
		expect(t, r, 0)
		for _, verb := range []string{"backup", "prune"} {
			if verb == "prune" {
				r = runJob(t, le.with("SNAPSHOT_RETENTION_KEEP_LAST", "1"), "prune")
				expect(t, r, 0)
			}
			want := "retained until " + until.UTC().Format(time.RFC3339)
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s did not log %q:\n%s", verb, want, r.stderr)
			}
			var summary map[string]any
			for _, l := range r.lines {
				if l["msg"] == "retention" {
					summary = l
				}
			}
			if summary == nil || summary["delete"] != 0.0 || summary["keep"] != 2.0 || summary["retained_by_lock"] != 1.0 {
				t.Errorf("%s: retention summary %v, want 0 deleted, 2 kept, 1 of them retained by its lock", verb, summary)
			}
			if res := r.last(); res["deleted"] != nil {
				t.Errorf("%s: the run reports deletions: %v", verb, res)
			}
			if k := v.Keys(t, locked, "snapshots/"); len(k) != 2 || k[0] != keys[0] {
				t.Errorf("%s: keys %q, want %q and the new one", verb, k, keys[0])
			}
		}
	})

	// Both features at once, through a multipart upload: the age object
	// is locked, and the job restores it.
	t.Run("EncryptedAndLocked", func(t *testing.T) {
		needAgeCLI(t)
		key := newAgeKey(t)
		big := t.TempDir()
		writeBig(t, filepath.Join(big, "capture.pcap"), 12<<20)
		ee := le.with("SNAPSHOT_SOURCE_DIR", big, "SNAPSHOT_CLOUD_PREFIX", "encrypted/", "SNAPSHOT_ENCRYPTION_RECIPIENTS", key.recipient)
		expect(t, runJob(t, ee), 0)
		keys := v.Keys(t, locked, "encrypted/")
		if len(keys) != 1 || !strings.HasSuffix(keys[0], ".tar.zst.age") {
			t.Fatalf("keys %q, want one .tar.zst.age", keys)
		}
		out, err := v.Client().GetObjectRetention(t.Context(), &awss3.GetObjectRetentionInput{Bucket: aws.String(locked), Key: &keys[0]})
		if err != nil || out.Retention.Mode != types.ObjectLockRetentionModeGovernance {
			t.Errorf("retention of %s: %+v, %v", keys[0], out, err)
		}
		dst := filepath.Join(t.TempDir(), "restored")
		expect(t, runJob(t, ee.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", key.identity), "restore"), 0)
		testenv.CompareTrees(t, big, dst, testenv.IsLock)
	})

	t.Run("NoLockOnBucket", func(t *testing.T) {
		r := runJob(t, e.with("SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7"))
		expect(t, r, 3, "does not have Object Lock enabled", "SNAPSHOT_AWS_OBJECT_LOCK_MODE")
		fx.nothingLeft(t, e["SNAPSHOT_AWS_BUCKET"])
	})

	t.Run("BadSettings", func(t *testing.T) {
		for _, kv := range [][]string{
			{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "GOVERNANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", ""},
			{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "3"},
			{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "LEGAL", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "3"},
			{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7d"},
			{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "40000"},
		} {
			expect(t, runJob(t, le.with(kv...)), 2, "SNAPSHOT_AWS_OBJECT_LOCK_")
		}
		fe, _ := fileEnv(t, src)
		expect(t, runJob(t, fe.with("SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "3")), 2,
			"not supported for this provider yet")
		if k := v.Keys(t, locked, "snapshots/"); len(k) != 2 {
			t.Errorf("keys %q: a refused run stored something", k)
		}
	})
}
