package config

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// FuzzLoad sets arbitrary values for a few variables: Load must either
// accept them or return setting.ErrInvalid naming a variable, never panic, and
// whatever it accepts gives object keys every store can hold.
func FuzzLoad(f *testing.F) {
	f.Add("file", "/x", "16MiB", "30d", "3", "snap", "fail", "snaps/", "latest", "b")
	f.Add("s3", "", "0", "-1d", "-1", "My_Snap", "replace", "../", "/k", "my bucket")
	f.Add("s3", "/x", "16MiB", "1h", "0", "kubeshark", "skip", "a//b", "a/./b.tar.zst", "snaps/prod")
	f.Add("", "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, provider, dir, part, age, keep, name, ifEmpty, prefix, key, bucket string) {
		for _, v := range []string{provider, dir, part, age, keep, name, ifEmpty, prefix, key, bucket} {
			if strings.ContainsRune(v, 0) {
				return // the environment cannot hold NUL
			}
		}
		setenv(t, "SNAPSHOT_CLOUD_PROVIDER", provider, "SNAPSHOT_FILE_DIR", dir, "SNAPSHOT_PART_SIZE", part,
			"SNAPSHOT_RETENTION_MAX_AGE", age, "SNAPSHOT_RETENTION_KEEP_LAST", keep, "SNAPSHOT_NAME", name,
			"SNAPSHOT_RESTORE_IF_NOT_EMPTY", ifEmpty, "SNAPSHOT_CLOUD_PREFIX", prefix, "SNAPSHOT_RESTORE_KEY", key,
			"SNAPSHOT_AWS_BUCKET", bucket, "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "a", "SNAPSHOT_AZBLOB_CONTAINER", "c")
		c, _, err := Load()
		if err != nil {
			if !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), "SNAPSHOT_") {
				t.Fatalf("error %v: not setting.ErrInvalid naming a variable", err)
			}
			return
		}
		if c.PartSize < MinPartSize || c.Retention.KeepLast < 0 || !nameRE.MatchString(c.Name) {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		keys := []string{snapname.Key(c.Prefix, c.Name, time.Now()) + encryptedExt}
		if c.Restore.Key != "latest" {
			keys = append(keys, c.Restore.Key)
		}
		for _, k := range keys {
			if len(k) > MaxKeyBytes || !utf8.ValidString(k) || strings.ContainsAny(k, "\\\r\n") || strings.HasPrefix(k, "/") {
				t.Fatalf("accepted key %q (%d bytes)", k, len(k))
			}
			for _, seg := range strings.Split(k, "/") {
				if seg == "" || seg == "." || seg == ".." || len(seg) > MaxSegmentBytes {
					t.Fatalf("accepted key %q with segment %q", k, seg)
				}
			}
		}
		if c.Provider == "s3" && (strings.ContainsAny(c.S3.Bucket, "/ \t\r\n") || c.S3.Bucket == "") {
			t.Fatalf("accepted bucket %q", c.S3.Bucket)
		}
	})
}
