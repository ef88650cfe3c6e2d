package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

const region = "us-east-1"

// server is versitygw on 127.0.0.1 with a posix backend under the run's
// scratch directory and random root keys.
type server struct {
	endpoint       string
	port           int
	access, secret string
	cmd            *exec.Cmd
	exited         chan struct{}
	log            string
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts versitygw and waits until it answers. The caller
// stops it (deferred); Pdeathsig stops it if this program dies first.
func startServer(ctx context.Context, bin, work string) (*server, error) {
	s := &server{access: "root" + randomHex(8), secret: randomHex(20), log: filepath.Join(work, "versitygw.log")}
	data := filepath.Join(work, "s3")
	iam := filepath.Join(work, "iam")
	for _, d := range []string{data, iam} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	backend := []string{"posix"}
	// The posix backend keeps object metadata in extended attributes; on
	// a filesystem without them it needs a sidecar directory instead.
	if !testenv.XattrSupported(data) {
		side := filepath.Join(work, "sidecar")
		if err := os.MkdirAll(side, 0o700); err != nil {
			return nil, err
		}
		backend = append(backend, "--sidecar", side)
	}
	backend = append(backend, data)
	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		s.endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
		args := []string{
			"--access", s.access, "--secret", s.secret, "--region", region,
			"--iam-dir", iam, "--health", "/healthz", "--quiet",
			// Without it versitygw closes every connection after one
			// answer, which no real S3 does.
			"--keep-alive",
			"--port", fmt.Sprintf("127.0.0.1:%d", port),
		}
		if lastErr = s.start(ctx, bin, append(args, backend...)); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("versitygw did not start: %w", lastErr)
}

func (s *server) start(ctx context.Context, bin string, args []string) error {
	log, err := os.Create(s.log)
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("exited early: %s", tailFile(s.log, 2000))
		case <-ctx.Done():
			s.stop()
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(s.endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("not ready after 20s (%v): %s", err, tailFile(s.log, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
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
		"AWS_ACCESS_KEY_ID="+b.srv.access,
		"AWS_SECRET_ACCESS_KEY="+b.srv.secret,
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
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+b.srv.access,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+b.srv.secret,
		"RCLONE_CONFIG_BENCH_ENDPOINT="+b.srv.endpoint,
		"RCLONE_CONFIG_BENCH_REGION="+region,
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true",
	)
}

// resticEnv points restic at a fresh repository under the restic bucket.
func (b *bench) resticEnv(repo, cacheDir string) []string {
	return append(baseEnv(),
		"AWS_ACCESS_KEY_ID="+b.srv.access,
		"AWS_SECRET_ACCESS_KEY="+b.srv.secret,
		"AWS_DEFAULT_REGION="+region,
		"RESTIC_REPOSITORY=s3:"+b.srv.endpoint+"/"+bucketRestic+"/"+repo,
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
		"SNAPSHOT_AWS_ENDPOINT="+b.srv.endpoint,
		"SNAPSHOT_AWS_FORCE_PATH_STYLE=true",
		"SNAPSHOT_AWS_REGION="+region,
		"SNAPSHOT_AWS_ACCESS_KEY="+b.srv.access,
		"SNAPSHOT_AWS_SECRET_KEY="+b.srv.secret,
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
		if _, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.endpoint, "s3api", "create-bucket", "--bucket", n); err != nil {
			return err
		}
	}
	return nil
}

// storedBytes is the total size of the objects under s3://bucket/prefix.
func (b *bench) storedBytes(ctx context.Context, bucket, prefix string) (int64, error) {
	out, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.endpoint, "s3", "ls", "--recursive", "--summarize",
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
	_, err := b.run(ctx, b.awsEnv(), b.tools.aws, "--endpoint-url", b.srv.endpoint, "s3", "rm", "--recursive", "--quiet",
		"s3://"+bucket+"/"+prefix)
	return err
}
