package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityBin is where `make tools` installs the pinned versitygw.
const VersityBin = ".tools/bin/versitygw"

// Versity is a versitygw S3 server on 127.0.0.1 with a posix backend in a
// temporary directory, stopped when the test ends.
type Versity struct {
	*VersityProcess
	caFile string
	client *awss3.Client
}

// VersityOption changes how StartVersity runs the server.
type VersityOption func(*VersitySetup)

// WithTLS serves HTTPS with the given certificate; caFile is the CA that
// signed it (see WriteTestCA), which the helpers' own client trusts.
func WithTLS(certFile, keyFile, caFile string) VersityOption {
	return func(c *VersitySetup) { c.CertFile, c.KeyFile, c.CAFile = certFile, keyFile, caFile }
}

// WithVersioning lets buckets keep versions (versitygw's posix backend
// keeps them in a directory of their own), as S3 does; a bucket created
// with Object Lock then has versioning enabled, as on AWS.
func WithVersioning() VersityOption {
	return func(c *VersitySetup) { c.VersioningDir = "on" }
}

// StartVersity starts the pinned versitygw with random root keys on a free
// port, waits until it answers and stops it in Cleanup. It fails the test
// when the binary is missing (run make tools).
func StartVersity(t testing.TB, opts ...VersityOption) *Versity {
	t.Helper()
	setup := VersitySetup{Bin: Tool(t, VersityBin), Dir: t.TempDir(), IAMDir: t.TempDir(), SidecarDir: t.TempDir()}
	for _, o := range opts {
		o(&setup)
	}
	if setup.VersioningDir != "" {
		setup.VersioningDir = t.TempDir()
	}
	p, err := LaunchVersity(context.Background(), setup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", tail(p.Output(), 4000))
		}
	})
	v := &Versity{VersityProcess: p, caFile: setup.CAFile}
	v.client = v.newClient()
	return v
}

// VersitySetup says how LaunchVersity runs versitygw.
type VersitySetup struct {
	Bin string
	// Dir is the posix backend's root: one directory per bucket. IAMDir
	// holds the users; SidecarDir the objects' metadata when Dir's
	// filesystem has no extended attributes.
	Dir, IAMDir, SidecarDir string
	// CertFile and KeyFile make it serve HTTPS; CAFile signed them.
	CertFile, KeyFile, CAFile string
	// VersioningDir, when set, is where the posix backend keeps object
	// versions; without it buckets cannot be versioned.
	VersioningDir string
}

// VersityProcess is a running versitygw.
type VersityProcess struct {
	Endpoint  string // base URL, e.g. http://127.0.0.1:41234
	AccessKey string // root credentials
	SecretKey string
	Region    string
	Dir       string // posix backend root: one directory per bucket

	bin    string
	caFile string
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// LaunchVersity starts versitygw with random root keys on a free port of
// 127.0.0.1 and waits until it answers; the caller stops it (Stop). It
// runs in a process group of its own, so that a Ctrl-C meant for the
// caller does not stop it before the caller cleans up, and dies with the
// caller (Pdeathsig). For programs; tests use StartVersity.
func LaunchVersity(ctx context.Context, s VersitySetup) (*VersityProcess, error) {
	p := &VersityProcess{
		AccessKey: "root" + randomText(8),
		SecretKey: randomText(20),
		Region:    "us-east-1",
		Dir:       s.Dir,
		bin:       s.Bin,
		caFile:    s.CAFile,
	}
	args := []string{
		"--access", p.AccessKey, "--secret", p.SecretKey, "--region", p.Region,
		"--iam-dir", s.IAMDir, "--health", "/healthz", "--quiet",
		// Without it versitygw closes every connection after one answer,
		// which no real S3 does.
		"--keep-alive",
	}
	scheme := "http"
	if s.CertFile != "" {
		args = append(args, "--cert", s.CertFile, "--key", s.KeyFile)
		scheme = "https"
	}
	backend := []string{"posix"}
	// The posix backend keeps object metadata in extended attributes; on
	// a filesystem without them it needs a sidecar directory instead.
	if !XattrSupported(s.Dir) {
		backend = append(backend, "--sidecar", s.SidecarDir)
	}
	if s.VersioningDir != "" {
		backend = append(backend, "--versioning-dir", s.VersioningDir)
	}
	backend = append(backend, s.Dir)

	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		port, err := probePort()
		if err != nil {
			return nil, err
		}
		p.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		full := append(slices.Clone(args), "--port", fmt.Sprintf("127.0.0.1:%d", port))
		full = append(full, backend...)
		if lastErr = p.start(ctx, full); lastErr == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("versitygw did not start: %w", lastErr)
}

// Output is what the server printed (its first MiB).
func (p *VersityProcess) Output() string { return p.out.String() }

// syncBuffer collects the server's output for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (p *VersityProcess) start(ctx context.Context, args []string) error {
	p.out = &syncBuffer{}
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Never outlive the caller.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	hc := p.httpClient()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited early: %s", tail(p.out.String(), 2000))
		case <-ctx.Done():
			p.Stop()
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(p.Endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("not ready after 20s (%v): %s", err, tail(p.out.String(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server: SIGTERM, then SIGKILL after 5 s.
func (p *VersityProcess) Stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (p *VersityProcess) tlsConfig() *tls.Config {
	if p.caFile == "" {
		return nil
	}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(p.caFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &tls.Config{RootCAs: pool}
}

func (p *VersityProcess) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = p.tlsConfig()
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// newClient is the helpers' own root client: independent of the code under
// test, so that assertions do not share its bugs.
func (v *Versity) newClient() *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       v.Region,
		BaseEndpoint: aws.String(v.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(v.AccessKey, v.SecretKey, ""),
		HTTPClient:   awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.TLSClientConfig = v.tlsConfig() }),
		// versitygw accepts the SDK's default checksums, but the helpers
		// should not depend on that.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Client returns an S3 client signed with the root keys.
func (v *Versity) Client() *awss3.Client { return v.client }

// CreateBucket creates a bucket through the S3 API (not mkdir, so the
// server records its owner and ACL).
func (v *Versity) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := v.client.CreateBucket(opCtx(t), &awss3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("CreateBucket(%q): %v", name, err)
	}
}

// CreateLockedBucket creates a bucket with Object Lock enabled (and so,
// on a server started WithVersioning, versioning).
func (v *Versity) CreateLockedBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := v.client.CreateBucket(opCtx(t), &awss3.CreateBucketInput{Bucket: &name, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("CreateBucket(%q, object lock): %v", name, err)
	}
}

// PutObject stores data under key with a plain PutObject.
func (v *Versity) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := v.client.PutObject(opCtx(t), &awss3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("PutObject(%s/%s): %v", bucket, key, err)
	}
}

// Keys lists the object keys under prefix, sorted.
func (v *Versity) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := awss3.NewListObjectsV2Paginator(v.client, &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(opCtx(t))
		if err != nil {
			t.Fatalf("ListObjectsV2(%s/%s): %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys
}

// MultipartUploads lists the keys of the open multipart uploads under
// prefix, sorted (a key appears once per open upload).
func (v *Versity) MultipartUploads(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := awss3.NewListMultipartUploadsPaginator(v.client, &awss3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(opCtx(t))
		if err != nil {
			t.Fatalf("ListMultipartUploads(%s/%s): %v", bucket, prefix, err)
		}
		for _, u := range page.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
	}
	slices.Sort(keys)
	return keys
}

// CreateUser adds an IAM user with the given keys; role is "user",
// "userplus" or "admin" (versitygw's roles).
func (v *Versity) CreateUser(t testing.TB, access, secret, role string) {
	t.Helper()
	v.admin(t, "create-user", "--access", access, "--secret", secret, "--role", role)
}

// ChangeBucketOwner gives bucket to the user with access key owner.
func (v *Versity) ChangeBucketOwner(t testing.TB, bucket, owner string) {
	t.Helper()
	v.admin(t, "change-bucket-owner", "--bucket", bucket, "--owner", owner)
}

func (v *Versity) admin(t testing.TB, args ...string) {
	t.Helper()
	full := append([]string{"admin", "--access", v.AccessKey, "--secret", v.SecretKey, "--region", v.Region,
		"--endpoint-url", v.Endpoint}, args...)
	if v.caFile != "" {
		full = slices.Insert(full, 1, "--allow-insecure")
	}
	cmd := exec.CommandContext(opCtx(t), v.bin, full...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("versitygw admin %s: %v: %s", args[0], err, out)
	}
}

func opCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := probePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func probePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomText is n random bytes in hex (crypto/rand never fails).
func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClosedPort returns a base URL on 127.0.0.1 where nothing listens.
func ClosedPort(t testing.TB) string {
	return "http://" + ClosedAddr(t)
}

// ClosedAddr returns a 127.0.0.1 host:port where nothing listens.
func ClosedAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// XattrSupported tells whether versitygw's posix backend can keep its
// object metadata in extended attributes under dir; where it cannot,
// the backend needs a sidecar directory.
func XattrSupported(dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return false
	}
	defer os.Remove(p)
	err := syscall.Setxattr(p, "user.probe", []byte("1"), 0)
	return err == nil || !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EOPNOTSUPP)
}
