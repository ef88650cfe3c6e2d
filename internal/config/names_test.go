package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// fileBase is a valid configuration for the file store.
var fileBase = []string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store"}

// loadWith loads fileBase plus kv and returns the config and the error.
func loadWith(t *testing.T, kv ...string) (Config, error) {
	t.Helper()
	setenv(t, append(append([]string{}, fileBase...), kv...)...)
	c, _, err := Load()
	return c, err
}

// wantProblem fails unless err is setting.ErrInvalid mentioning every word.
func wantProblem(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if !errors.Is(err, setting.ErrInvalid) {
		t.Errorf("%s: err = %v, want setting.ErrInvalid", what, err)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not mention %q", what, err, w)
		}
	}
}

func TestSurroundingWhiteSpaceIsTrimmedEverywhere(t *testing.T) {
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "s3\n", "SNAPSHOT_AWS_BUCKET", "snaps\n", "SNAPSHOT_AWS_REGION", "eu-west-1\r\n",
		"SNAPSHOT_AWS_ACCESS_KEY", "\tAKIAEXAMPLE\n", "SNAPSHOT_AWS_SECRET_KEY", "secret \n", "SNAPSHOT_CLOUD_PREFIX", " team/snaps \n",
		"SNAPSHOT_NAME", "kubeshark\n", "SNAPSHOT_UPLOAD_CONCURRENCY", "8\n", "SNAPSHOT_RETENTION_DRY_RUN", "true\n",
		"SNAPSHOT_RETENTION_MAX_AGE", " 30d\n", "SNAPSHOT_RESTORE_KEY", "team/snaps/kubeshark-20261126T031500Z.tar.zst\n",
		"SNAPSHOT_RESTORE_IF_MISSING", "ok\n", "SNAPSHOT_SOURCE_DIR", "/data\n", "SNAPSHOT_ALLOW_UNKNOWN", "false\n")
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.Provider: "s3", c.S3.Bucket: "snaps", c.S3.Region: "eu-west-1", c.S3.AccessKey.Reveal(): "AKIAEXAMPLE",
		c.S3.SecretKey.Reveal(): "secret", c.Prefix: "team/snaps/", c.Name: "kubeshark",
		c.Restore.Key: "team/snaps/kubeshark-20261126T031500Z.tar.zst", c.Restore.IfMissing: "ok", c.SourceDir: "/data",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if c.UploadConcurrency != 8 || !c.Retention.DryRun || time.Duration(c.Retention.MaxAge) != 30*24*time.Hour {
		t.Errorf("numbers: %+v", c)
	}
}

func TestPrefixRules(t *testing.T) {
	long := strings.Repeat("p", MaxSegmentBytes)
	for prefix, want := range map[string]string{
		"snapshots":            "",
		"/snapshots/":          "",
		"team a/snaps/":        "",
		"kubeshark/prod/2026/": "",
		"ünïcode/":             "",
		long + "/":             "",
		"":                     "",
		"../":                  `".." segment`,
		"snaps/../other/":      `".." segment`,
		"./":                   `"." segment`,
		"a/./b":                `"." segment`,
		"a//b":                 "empty segment",
		"a//":                  "empty segment",
		`snaps\prod`:           "a backslash",
		"snaps\x01/":           "the character U+0001",
		"snaps\tprod/":         "a tab",
		"a/" + long + "p/":     "segment 2 of 256 bytes",
		"bad\xffutf8/":         "not valid UTF-8",
	} {
		c, err := loadWith(t, "SNAPSHOT_CLOUD_PREFIX", prefix)
		if want == "" {
			if err != nil {
				t.Errorf("prefix %q: %v", prefix, err)
			} else if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
				t.Errorf("prefix %q normalized to %q", prefix, c.Prefix)
			}
			continue
		}
		wantProblem(t, "prefix "+prefix, err, "SNAPSHOT_CLOUD_PREFIX", want)
	}
}

// The longest key is <prefix><name>-YYYYMMDDTHHMMSSZ.tar.zst.age: the
// bounds admit exactly the configurations whose keys fit.
func TestKeyLengthBounds(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	longestKeyOf := func(c Config) string { return snapname.Key(c.Prefix, c.Name, at) + encryptedExt }

	name := strings.Repeat("n", MaxNameBytes)
	c, err := loadWith(t, "SNAPSHOT_NAME", name, "SNAPSHOT_CLOUD_PREFIX", "")
	if err != nil {
		t.Fatalf("name of %d bytes: %v", len(name), err)
	}
	if n := len(longestKeyOf(c)) + partialBytes; n != MaxSegmentBytes {
		t.Errorf("the file store's temporary name of the longest object name is %d bytes, want exactly %d", n, MaxSegmentBytes)
	}
	_, err = loadWith(t, "SNAPSHOT_NAME", name+"n")
	wantProblem(t, "long name", err, "SNAPSHOT_NAME: is 201 characters; use at most 200")
	_, err = loadWith(t, "SNAPSHOT_NAME", strings.Repeat("a", 300))
	wantProblem(t, "300-character name", err, "SNAPSHOT_NAME: is 300 characters")

	// Segments of 200 bytes up to the last byte the key limit allows.
	prefixOf := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			seg := strings.Repeat("s", min(200, n-b.Len()-1))
			b.WriteString(seg + "/")
		}
		return b.String()
	}
	room := MaxKeyBytes - keySuffixBytes - len("kubeshark")
	c, err = loadWith(t, "SNAPSHOT_NAME", "kubeshark", "SNAPSHOT_CLOUD_PREFIX", prefixOf(room))
	if err != nil {
		t.Fatalf("prefix of %d bytes: %v", room, err)
	}
	if n := len(longestKeyOf(c)); n != MaxKeyBytes {
		t.Errorf("longest key is %d bytes, want exactly %d", n, MaxKeyBytes)
	}
	_, err = loadWith(t, "SNAPSHOT_NAME", "kubeshark", "SNAPSHOT_CLOUD_PREFIX", prefixOf(room+1))
	wantProblem(t, "long prefix", err, "SNAPSHOT_CLOUD_PREFIX", "would be 1025 bytes", "use at most 986 bytes")
	_, err = loadWith(t, "SNAPSHOT_CLOUD_PREFIX", strings.Repeat("p", 300))
	wantProblem(t, "300-character prefix", err, "SNAPSHOT_CLOUD_PREFIX", "segment of 300 bytes")
	if strings.Contains(err.Error(), strings.Repeat("p", 100)) {
		t.Errorf("the error echoes the whole prefix: %v", err)
	}
}

func TestRestoreKeyRules(t *testing.T) {
	for key, want := range map[string]string{
		"latest": "",
		"snapshots/kubeshark-20261126T031500Z.tar.zst":  "",
		"kubeshark-20261126T031500Z.tar.zst":            "",
		"copies/renamed by hand.tar.zst":                "",
		"/snapshots/kubeshark-20261126T031500Z.tar.zst": `use "snapshots/kubeshark-20261126T031500Z.tar.zst"`,
		"snapshots/":                    "ends with '/'",
		"../etc/passwd":                 `".." segment`,
		"snapshots//x.tar.zst":          "empty segment",
		"snapshots/x\n.tar.zst":         "a line break",
		strings.Repeat("k/", 600) + "x": "is 1201 bytes",
		strings.Repeat("k", 256):        "segment of 256 bytes",
	} {
		_, err := loadWith(t, "SNAPSHOT_RESTORE_KEY", key)
		if want == "" {
			if err != nil {
				t.Errorf("key %q: %v", key, err)
			}
			continue
		}
		wantProblem(t, "key "+key, err, "SNAPSHOT_RESTORE_KEY", want)
	}
}

func TestStoreNames(t *testing.T) {
	s3 := []string{"SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "snaps"}
	az := []string{"SNAPSHOT_CLOUD_PROVIDER", "azblob", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct", "SNAPSHOT_AZBLOB_CONTAINER", "snaps"}
	for _, tc := range []struct {
		base     []string
		variable string
		value    string
		want     string // "" when accepted
	}{
		{s3, "SNAPSHOT_AWS_BUCKET", "my-bucket.example", ""},
		{s3, "SNAPSHOT_AWS_BUCKET", "Legacy_Bucket", ""}, // Ceph's relaxed names, old us-east-1 buckets
		{s3, "SNAPSHOT_AWS_BUCKET", "arn:aws:s3:eu-west-1:123456789012:accesspoint/snaps", ""},
		{s3, "SNAPSHOT_AWS_BUCKET", "my bucket", "a space at byte 2"},
		{s3, "SNAPSHOT_AWS_BUCKET", "snaps/prod", `put "prod/" in SNAPSHOT_CLOUD_PREFIX and "snaps" in SNAPSHOT_AWS_BUCKET`},
		{s3, "SNAPSHOT_AWS_BUCKET", "snaps?x", `'?' at byte 5`},
		{s3, "SNAPSHOT_AWS_BUCKET", strings.Repeat("b", 256), "is 256 bytes long"},
		{s3, "SNAPSHOT_AWS_REGION", "eu-west-1", ""},
		{s3, "SNAPSHOT_AWS_REGION", "my_minio.region", ""},
		{s3, "SNAPSHOT_AWS_REGION", "eu west 1", "a space at byte 2"},
		{s3, "SNAPSHOT_AWS_REGION", "eu-west-1/", `'/' at byte 9`},
		{s3, "SNAPSHOT_AWS_SECRET_KEY", "two\nlines", "SNAPSHOT_AWS_SECRET_KEY: holds a line break at byte 3"},
		{s3, "SNAPSHOT_AWS_ENDPOINT", "http://minio:9000/ x", "SNAPSHOT_AWS_ENDPOINT: holds a space"},
		{az, "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "devstoreaccount1", ""},
		{az, "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct.blob.core.windows.net", `use the storage account's name alone ("acct")`},
		{az, "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "my acct", "a space at byte 2"},
		{az, "SNAPSHOT_AZBLOB_CONTAINER", "snaps/prod", `put "prod/" in SNAPSHOT_CLOUD_PREFIX and "snaps" in SNAPSHOT_AZBLOB_CONTAINER`},
		{az, "SNAPSHOT_AZBLOB_CONTAINER", "sn aps", "a space at byte 2"},
		{az, "SNAPSHOT_AZBLOB_STORAGE_KEY", "a2V5\r\nbW9yZQ==", "SNAPSHOT_AZBLOB_STORAGE_KEY: holds a carriage return at byte 4"},
	} {
		setenv(t, append(append([]string{}, tc.base...), tc.variable, tc.value)...)
		_, _, err := Load()
		what := tc.variable + "=" + tc.value
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			continue
		}
		wantProblem(t, what, err, tc.variable+": ", tc.want)
		if strings.Contains(tc.variable, "KEY") && strings.Contains(err.Error(), tc.value) {
			t.Errorf("%s: the secret is echoed: %v", what, err)
		}
	}
}

func TestEveryProblemIsListed(t *testing.T) {
	_, err := loadWith(t, "SNAPSHOT_CLOUD_PREFIX", "../", "SNAPSHOT_NAME", "Bad_Name", "SNAPSHOT_RESTORE_KEY", "/x")
	wantProblem(t, "three problems", err, "SNAPSHOT_CLOUD_PREFIX", "SNAPSHOT_NAME", "SNAPSHOT_RESTORE_KEY")
}
