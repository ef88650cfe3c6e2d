package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

func TestKnownVariablesCoverContract(t *testing.T) {
	known := KnownVariables()
	for _, want := range []string{
		"SNAPSHOT_CLOUD_PROVIDER", "SNAPSHOT_CLOUD_PREFIX", "SNAPSHOT_SOURCE_DIR", "SNAPSHOT_NAME", "SNAPSHOT_MODE",
		"SNAPSHOT_COMPRESSION_LEVEL", "SNAPSHOT_UPLOAD_CONCURRENCY", "SNAPSHOT_PART_SIZE",
		"SNAPSHOT_RETENTION_KEEP_LAST", "SNAPSHOT_RETENTION_MAX_AGE", "SNAPSHOT_RETENTION_KEEP_DAILY",
		"SNAPSHOT_RETENTION_KEEP_WEEKLY", "SNAPSHOT_RETENTION_KEEP_MONTHLY", "SNAPSHOT_RETENTION_DRY_RUN",
		"SNAPSHOT_RESTORE_KEY", "SNAPSHOT_RESTORE_DIR", "SNAPSHOT_RESTORE_IF_MISSING", "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
		"SNAPSHOT_RESTORE_PATHS", "SNAPSHOT_LOG_FORMAT", "SNAPSHOT_LOG_LEVEL", "SNAPSHOT_TERMINATION_LOG", "SNAPSHOT_FILE_DIR",
		"SNAPSHOT_AWS_BUCKET", "SNAPSHOT_AWS_REGION", "SNAPSHOT_AWS_ACCESS_KEY", "SNAPSHOT_AWS_SECRET_KEY",
		"SNAPSHOT_AWS_ROLE_ARN", "SNAPSHOT_AWS_EXTERNAL_ID", "SNAPSHOT_AWS_ENDPOINT", "SNAPSHOT_AWS_FORCE_PATH_STYLE",
		"SNAPSHOT_AWS_SSE", "SNAPSHOT_AWS_SSE_KMS_KEY_ID", "SNAPSHOT_AWS_STORAGE_CLASS", "SNAPSHOT_AWS_ROLE_SESSION_NAME",
		"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "SNAPSHOT_AZBLOB_CONTAINER", "SNAPSHOT_AZBLOB_STORAGE_KEY",
		"SNAPSHOT_AZBLOB_ENDPOINT", "SNAPSHOT_AZBLOB_ACCESS_TIER",
		"SNAPSHOT_GCS_BUCKET", "SNAPSHOT_GCS_PROJECT", "SNAPSHOT_GCS_CREDENTIALS_JSON", "SNAPSHOT_GCS_ENDPOINT",
		"SNAPSHOT_PROGRESS_INTERVAL", "SNAPSHOT_IO_TIMEOUT", "SNAPSHOT_ALLOW_UNKNOWN",
		"SNAPSHOT_METRICS_PUSHGATEWAY_URL", "SNAPSHOT_METRICS_JOB", "SNAPSHOT_METRICS_CRONJOB",
	} {
		if !slices.Contains(known, want) {
			t.Errorf("%s is not a known variable", want)
		}
	}
}

// setenv sets a clean SNAPSHOT_* environment for one test.
func setenv(t *testing.T, kv ...string) {
	t.Helper()
	for _, name := range KnownVariables() {
		t.Setenv(name, "")
	}
	for i := 0; i < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

func TestLoadDefaults(t *testing.T) {
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store", "SNAPSHOT_CLOUD_PREFIX", "/snaps")
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.SourceDir != "/snapshots" || c.Restore.Dir != "/snapshots" || c.Name != "snapshot" || c.Mode != "backup" {
		t.Errorf("defaults: %+v", c)
	}
	if c.Prefix != "snaps/" {
		t.Errorf("prefix = %q, want snaps/", c.Prefix)
	}
	if c.Restore.IfMissing != "fail" || c.Restore.IfNotEmpty != "fail" || c.Restore.Key != "latest" {
		t.Errorf("restore defaults: %+v", c.Restore)
	}
	if c.Retention.Enabled() {
		t.Error("retention enabled by default")
	}
	if c.Metrics.Enabled() || c.Metrics.Job != "snapshot-job" || c.Metrics.CronJob != "" || c.Metrics.Namespace != "" {
		t.Errorf("metrics defaults: %+v", c.Metrics)
	}
}

func TestLoadMetrics(t *testing.T) {
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store",
		"SNAPSHOT_METRICS_PUSHGATEWAY_URL", " http://ops:pa55word@pushgateway.monitoring:9091/ \n",
		"SNAPSHOT_METRICS_JOB", "backups", "SNAPSHOT_METRICS_CRONJOB", "snap-backup", "POD_NAMESPACE", "kubeshark")
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	m := c.Metrics
	if !m.Enabled() || m.Job != "backups" || m.CronJob != "snap-backup" || m.Namespace != "kubeshark" {
		t.Errorf("metrics: %+v", m)
	}
	if got := m.Redacted(); got != "http://pushgateway.monitoring:9091" {
		t.Errorf("Redacted() = %q", got)
	}
	if s := fmt.Sprintf("%+v %#v", c, c); strings.Contains(s, "pa55word") {
		t.Errorf("the Pushgateway password printed: %s", s)
	}

	// A bad number after the metrics settings still leaves them read, so
	// that the run's exit code 2 is pushed.
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store",
		"SNAPSHOT_METRICS_PUSHGATEWAY_URL", "http://pushgateway:9091", "SNAPSHOT_UPLOAD_CONCURRENCY", "four")
	c, _, err = Load()
	if !errors.Is(err, setting.ErrInvalid) || !c.Metrics.Enabled() || c.Metrics.Job != "snapshot-job" {
		t.Errorf("err %v, metrics %+v", err, c.Metrics)
	}
}

func TestLoadParsesSizesAndDurations(t *testing.T) {
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store",
		"SNAPSHOT_PART_SIZE", "64M", "SNAPSHOT_RETENTION_MAX_AGE", "30d", "SNAPSHOT_RETENTION_KEEP_LAST", "3")
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.PartSize != 64<<20 {
		t.Errorf("PartSize = %d", c.PartSize)
	}
	if time.Duration(c.Retention.MaxAge) != 30*24*time.Hour {
		t.Errorf("MaxAge = %s", c.Retention.MaxAge)
	}
	if !c.Retention.Enabled() {
		t.Error("retention not enabled")
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{nil, []string{"SNAPSHOT_CLOUD_PROVIDER: is required", "s3, azblob, gcs, file"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "gcp"}, []string{`SNAPSHOT_CLOUD_PROVIDER: "gcp" is not accepted`}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "gcs"}, []string{"SNAPSHOT_GCS_BUCKET: is required with SNAPSHOT_CLOUD_PROVIDER=gcs"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "gcs", "SNAPSHOT_GCS_BUCKET", "gs://snaps"}, []string{"SNAPSHOT_GCS_BUCKET", `use the bucket's name alone ("snaps")`}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "gcs", "SNAPSHOT_GCS_BUCKET", "snaps", "SNAPSHOT_GCS_CREDENTIALS_JSON", `{"type":"authorized_user"}`}, []string{"SNAPSHOT_GCS_CREDENTIALS_JSON", "not a service-account key"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file"}, []string{"SNAPSHOT_FILE_DIR: is required"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_PART_SIZE", "lots"}, []string{"SNAPSHOT_PART_SIZE", `"lots" is not a size`, "16MiB"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_PART_SIZE", "1MiB"}, []string{"SNAPSHOT_PART_SIZE: 1MiB is out of range"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RETENTION_MAX_AGE", "a month"}, []string{"SNAPSHOT_RETENTION_MAX_AGE", "30d"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_UPLOAD_CONCURRENCY", "four"}, []string{"SNAPSHOT_UPLOAD_CONCURRENCY", "whole number"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_NAME", "My_Snap"}, []string{"SNAPSHOT_NAME"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "replace"}, []string{"SNAPSHOT_RESTORE_IF_NOT_EMPTY", "fail, skip, overwrite"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RESTORE_PATHS", "node-1,../etc"}, []string{"SNAPSHOT_RESTORE_PATHS: item 2 \"../etc\"", ".."}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RESTORE_PATHS", "/node-1"}, []string{"SNAPSHOT_RESTORE_PATHS: item 1", "absolute"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RESTORE_PATHS", "a,,b"}, []string{"SNAPSHOT_RESTORE_PATHS: item 2", "empty"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RESTORE_PATHS", "node-[1"}, []string{"SNAPSHOT_RESTORE_PATHS: item 1", "not a valid glob"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "s3"}, []string{"SNAPSHOT_AWS_BUCKET: is required"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "b", "SNAPSHOT_AWS_ACCESS_KEY", "AKIA"}, []string{"SNAPSHOT_AWS_SECRET_KEY"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "azblob"}, []string{"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT: is required", "SNAPSHOT_AZBLOB_CONTAINER: is required"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_RETENTION_DRY_RUN", "maybe"}, []string{"SNAPSHOT_RETENTION_DRY_RUN", "true or false"}},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/x", "SNAPSHOT_METRICS_PUSHGATEWAY_URL", "pushgateway:9091"}, []string{"SNAPSHOT_METRICS_PUSHGATEWAY_URL: must start with http:// or https://"}},
	} {
		setenv(t, tc.env...)
		_, _, err := Load()
		if !errors.Is(err, setting.ErrInvalid) {
			t.Errorf("%v: err = %v, want setting.ErrInvalid", tc.env, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %q", tc.env, err, w)
			}
		}
	}
}

func TestUnknownVariablesSuggestNearest(t *testing.T) {
	w, p := UnknownVariables([]string{"SNAPSHOT_RETENTION_KEEP_LASTT=3", "SNAPSHOT_CLOUD_PROVIDER=s3", "HOME=/root", "SNAPSHOT_AWS_BUKET=x", "SNAPSHOT_PORT=tcp://10.0.0.1:80"}, false)
	want := []string{
		"unknown variable SNAPSHOT_AWS_BUKET is ignored; did you mean SNAPSHOT_AWS_BUCKET?",
		"unknown variable SNAPSHOT_PORT is ignored; the nearest known name is SNAPSHOT_MODE",
	}
	if !slices.Equal(w, want) {
		t.Errorf("warnings = %q, want %q", w, want)
	}
	wantP := []string{"SNAPSHOT_RETENTION_KEEP_LASTT: unknown variable SNAPSHOT_RETENTION_KEEP_LASTT looks like the safety setting SNAPSHOT_RETENTION_KEEP_LAST; the run stops rather than ignore it: fix the name, or set SNAPSHOT_ALLOW_UNKNOWN=true to run anyway"}
	if !slices.Equal(p, wantP) {
		t.Errorf("problems = %q, want %q", p, wantP)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	setenv(t, "SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "b", "SNAPSHOT_AWS_ACCESS_KEY", "AKIAEXAMPLE", "SNAPSHOT_AWS_SECRET_KEY", "hunter2hunter2")
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c.S3.SecretKey),
	} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "AKIAEXAMPLE") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if c.S3.SecretKey.Reveal() != "hunter2hunter2" {
		t.Error("Reveal lost the secret")
	}
}

// Every variable of the contract is either read or known to be missing
// from this version: none may be taken for a typo.
func TestContractVariablesAreKnown(t *testing.T) {
	known := KnownVariables()
	for _, name := range []string{
		"SNAPSHOT_CLOUD_PROVIDER", "SNAPSHOT_CLOUD_PREFIX", "SNAPSHOT_SOURCE_DIR", "SNAPSHOT_NAME", "SNAPSHOT_MODE",
		"SNAPSHOT_COMPRESSION_LEVEL", "SNAPSHOT_UPLOAD_CONCURRENCY", "SNAPSHOT_PART_SIZE", "SNAPSHOT_RETENTION_KEEP_LAST",
		"SNAPSHOT_RETENTION_MAX_AGE", "SNAPSHOT_RETENTION_KEEP_DAILY", "SNAPSHOT_RETENTION_KEEP_WEEKLY",
		"SNAPSHOT_RETENTION_KEEP_MONTHLY", "SNAPSHOT_RETENTION_DRY_RUN", "SNAPSHOT_RESTORE_KEY", "SNAPSHOT_RESTORE_DIR",
		"SNAPSHOT_RESTORE_PATHS", "SNAPSHOT_ENCRYPTION_RECIPIENTS", "SNAPSHOT_ENCRYPTION_IDENTITY",
		"SNAPSHOT_METRICS_PUSHGATEWAY_URL", "SNAPSHOT_RESTORE_IF_MISSING", "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
		"SNAPSHOT_LOG_FORMAT", "SNAPSHOT_LOG_LEVEL", "SNAPSHOT_TERMINATION_LOG", "SNAPSHOT_FILE_DIR",
		"SNAPSHOT_GCS_BUCKET", "SNAPSHOT_GCS_PROJECT", "SNAPSHOT_GCS_CREDENTIALS_JSON", "SNAPSHOT_GCS_ENDPOINT",
		"SNAPSHOT_AWS_BUCKET", "SNAPSHOT_AWS_REGION", "SNAPSHOT_AWS_ACCESS_KEY", "SNAPSHOT_AWS_SECRET_KEY",
		"SNAPSHOT_AWS_ROLE_ARN", "SNAPSHOT_AWS_EXTERNAL_ID", "SNAPSHOT_AWS_ENDPOINT", "SNAPSHOT_AWS_FORCE_PATH_STYLE",
		"SNAPSHOT_AWS_SSE", "SNAPSHOT_AWS_SSE_KMS_KEY_ID", "SNAPSHOT_AWS_STORAGE_CLASS", "SNAPSHOT_AWS_ROLE_SESSION_NAME",
		"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT",
		"SNAPSHOT_AZBLOB_CONTAINER", "SNAPSHOT_AZBLOB_STORAGE_KEY", "SNAPSHOT_AZBLOB_ENDPOINT", "SNAPSHOT_AZBLOB_ACCESS_TIER",
		"SNAPSHOT_ALLOW_UNKNOWN",
	} {
		if !slices.Contains(known, name) {
			t.Errorf("%s is in the contract but not read", name)
		}
	}
}

func TestProviderDetection(t *testing.T) {
	for _, tc := range []struct {
		env      []string
		provider string
		detected bool
	}{
		{[]string{"SNAPSHOT_AWS_BUCKET", "snaps"}, "s3", true},
		{[]string{"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct", "SNAPSHOT_AZBLOB_CONTAINER", "snaps"}, "azblob", true},
		{[]string{"SNAPSHOT_FILE_DIR", "/store"}, "file", true},
		{[]string{"SNAPSHOT_GCS_BUCKET", "snaps"}, "gcs", true},
		{[]string{"SNAPSHOT_GCS_BUCKET", "snaps", "SNAPSHOT_AWS_BUCKET", "snaps"}, "", false},
		{[]string{"SNAPSHOT_CLOUD_PROVIDER", "file", "SNAPSHOT_FILE_DIR", "/store", "SNAPSHOT_AWS_BUCKET", "snaps"}, "file", false},
		{[]string{"SNAPSHOT_FILE_DIR", "/store", "SNAPSHOT_AWS_BUCKET", "snaps"}, "", false},
		{nil, "", false},
	} {
		setenv(t, tc.env...)
		c, _, err := Load()
		if c.Provider != tc.provider || c.ProviderDetected != tc.detected {
			t.Errorf("%q: provider %q (detected %v), want %q (%v)", tc.env, c.Provider, c.ProviderDetected, tc.provider, tc.detected)
		}
		if (tc.provider == "") != errors.Is(err, setting.ErrInvalid) {
			t.Errorf("%q: err = %v", tc.env, err)
		}
	}
}

func TestRestorePaths(t *testing.T) {
	setenv(t, append(append([]string{}, fileBase...), "SNAPSHOT_RESTORE_PATHS", " node-1/** , */pcapdump/*.pcap,./node-2/logs/ ")...)
	c, _, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Restore.Selection.Patterns(), []string{"node-1/**", "*/pcapdump/*.pcap", "node-2/logs"}; !slices.Equal(got, want) {
		t.Errorf("patterns = %q, want %q", got, want)
	}
	if !c.Restore.Selection.Match("node-3/pcapdump/a.pcap") || c.Restore.Selection.Match("node-3/logs/a.json") {
		t.Error("the selection does not match as parsed")
	}

	setenv(t, fileBase...)
	c, _, err = Load()
	if err != nil || c.Restore.Selection != nil {
		t.Errorf("unset: selection %v, err %v; want nil (everything)", c.Restore.Selection, err)
	}
}

func TestObjectLockSettings(t *testing.T) {
	s3Base := []string{"SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "snaps"}
	for _, tc := range []struct {
		what  string
		env   []string
		words []string // nil: valid
	}{
		{"governance", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "GOVERNANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "30"}, nil},
		{"compliance", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "36500"}, nil},
		{"mode without days", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "GOVERNANCE"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "is required"}},
		{"days without mode", []string{"SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "GOVERNANCE, COMPLIANCE"}},
		{"bad mode", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "governance", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", `"governance"`}},
		{"negative days", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "-1"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "out of range"}},
		{"too many days", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "36501"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "out of range"}},
		{"days not a number", []string{"SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7d"}, []string{"SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "not a whole number"}},
	} {
		setenv(t, append(append([]string{}, s3Base...), tc.env...)...)
		_, _, err := Load()
		if tc.words == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.what, err)
			}
			continue
		}
		wantProblem(t, tc.what, err, tc.words...)
	}
	// The same settings with another provider: refused, not ignored.
	for _, provider := range [][]string{fileBase, {"SNAPSHOT_CLOUD_PROVIDER", "azblob", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct", "SNAPSHOT_AZBLOB_CONTAINER", "snaps"}, {"SNAPSHOT_CLOUD_PROVIDER", "gcs", "SNAPSHOT_GCS_BUCKET", "snaps"}} {
		setenv(t, append(append([]string{}, provider...), "SNAPSHOT_AWS_OBJECT_LOCK_MODE", "COMPLIANCE", "SNAPSHOT_AWS_OBJECT_LOCK_DAYS", "7")...)
		_, _, err := Load()
		wantProblem(t, provider[1], err, "not supported for this provider yet", "SNAPSHOT_CLOUD_PROVIDER="+provider[1])
	}
}
