package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// region is the one testenv.LaunchVersity serves.
const region = "us-east-1"

// startServer starts versitygw (testenv.LaunchVersity) with its objects
// and users under the run's scratch directory work. The caller stops it
// (deferred); it dies with this program.
func startServer(ctx context.Context, bin, work string) (*testenv.VersityProcess, error) {
	setup := testenv.VersitySetup{
		Bin:        bin,
		Dir:        filepath.Join(work, "s3"),
		IAMDir:     filepath.Join(work, "iam"),
		SidecarDir: filepath.Join(work, "sidecar"),
	}
	for _, d := range []string{setup.Dir, setup.IAMDir, setup.SidecarDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return testenv.LaunchVersity(ctx, setup)
}

// randomHex is n random bytes in hex (crypto/rand never fails).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// baseEnv is this process's environment without anything that would
// change how the measured tools reach the server or behave: other AWS
// credentials and profiles, rclone and restic settings, and SNAPSHOT_*
// variables. AWS_CA_BUNDLE, SSL_CERT_FILE and the like stay: the tools
// must work with them set, and for plain-HTTP endpoints they are unused.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "AWS_CA_BUNDLE":
		case strings.HasPrefix(name, "AWS_"), strings.HasPrefix(name, "RCLONE_"),
			strings.HasPrefix(name, "RESTIC_"), strings.HasPrefix(name, "SNAPSHOT_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// awsEnv configures the aws cli (and restic, which reads the same key
// variables) for the local server. The config file sets only path-style
// addressing; transfer settings stay at the cli's defaults.
func (b *bench) awsEnv() []string {
	return append(baseEnv(),
		"AWS_ACCESS_KEY_ID="+b.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+b.srv.SecretKey,
		"AWS_DEFAULT_REGION="+region,
		"AWS_CONFIG_FILE="+b.awsConfig,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(b.work, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	)
}

func writeAWSConfig(path string) error {
	return os.WriteFile(path, []byte("[default]\nregion = "+region+"\ns3 =\n    addressing_style = path\n"), 0o600)
}

// rcloneEnv defines the remote "bench" through RCLONE_CONFIG_* variables,
// with rclone's defaults otherwise.
//
// rclone 1.60's S3 backend (aws-sdk-go v1) refuses to start when
// AWS_CA_BUNDLE is set: "LoadCustomCABundleError: unable to load custom
// CA bundle, HTTPClient's transport unsupported type". A bundle means
// nothing for the plain-HTTP local server, so rclone runs without it.
func (b *bench) rcloneEnv() []string {
	var env []string
	for _, kv := range baseEnv() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	return append(env,
		"RCLONE_CONFIG="+filepath.Join(b.work, "no-rclone.conf"),
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ENV_AUTH=false",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+b.srv.AccessKey,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+b.srv.SecretKey,
		"RCLONE_CONFIG_BENCH_ENDPOINT="+b.srv.Endpoint,
		"RCLONE_CONFIG_BENCH_REGION="+region,
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true",
	)
}

// resticEnv points restic at a fresh repository under the restic bucket.
func (b *bench) resticEnv(repo, cacheDir string) []string {
	return append(baseEnv(),
		"AWS_ACCESS_KEY_ID="+b.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+b.srv.SecretKey,
		"AWS_DEFAULT_REGION="+region,
		"RESTIC_REPOSITORY=s3:"+b.srv.Endpoint+"/"+bucketRestic+"/"+repo,
		"RESTIC_PASSWORD="+b.resticPassword,
		"RESTIC_CACHE_DIR="+cacheDir,
	)
}

// snapshotEnv configures snapshot-job for the local server: only what
// reaching it needs, so every tuning variable is at its default unless
// BENCH_ENV (or the matrix) sets it.
func (b *bench) snapshotEnv(prefix, termLog string, extra ...string) []string {
	env := append(baseEnv(),
		"SNAPSHOT_CLOUD_PROVIDER=s3",
		"SNAPSHOT_AWS_BUCKET="+bucketSnapshot,
		"SNAPSHOT_AWS_ENDPOINT="+b.srv.Endpoint,
		"SNAPSHOT_AWS_FORCE_PATH_STYLE=true",
		"SNAPSHOT_AWS_REGION="+region,
		"SNAPSHOT_AWS_ACCESS_KEY="+b.srv.AccessKey,
		"SNAPSHOT_AWS_SECRET_KEY="+b.srv.SecretKey,
		"SNAPSHOT_CLOUD_PREFIX="+prefix,
		"SNAPSHOT_NAME=bench",
		"SNAPSHOT_LOG_FORMAT=json",
		"SNAPSHOT_TERMINATION_LOG="+termLog,
	)
	env = append(env, b.extraEnv...)
	return append(env, extra...)
}

const (
	bucketSnapshot = "bench-snapshot-job"
	bucketAWS      = "bench-awscli"
	bucketRclone   = "bench-rclone"
	bucketRestic   = "bench-restic"
)

// createBuckets creates the buckets through the S3 API (aws s3api), so
// the server records them as a client would see them.
func (b *bench) createBuckets(ctx context.Context, names ...string) error {
	for _, n := range names {
		if _, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.Endpoint, "s3api", "create-bucket", "--bucket", n); err != nil {
			return err
		}
	}
	return nil
}

// storedBytes is the total size of the objects under s3://bucket/prefix.
func (b *bench) storedBytes(ctx context.Context, bucket, prefix string) (int64, error) {
	out, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.Endpoint, "s3", "ls", "--recursive", "--summarize",
		"s3://"+bucket+"/"+prefix)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Total Size:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("aws s3 ls --summarize printed no total: %s", tail(out, 500))
}

// removePrefix deletes what a run stored, so that the disk holds one
// run's objects at a time.
func (b *bench) removePrefix(ctx context.Context, bucket, prefix string) error {
	_, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.Endpoint, "s3", "rm", "--recursive", "--quiet",
		"s3://"+bucket+"/"+prefix)
	return err
}
