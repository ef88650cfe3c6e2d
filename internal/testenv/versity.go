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
	Endpoint  string // base URL, e.g. http://127.0.0.1:41234
	AccessKey string // root credentials
	SecretKey string
	Region    string
	Dir       string // posix backend root: one directory per bucket

	bin    string
	caFile string
	client *awss3.Client
}

// VersityOption changes how StartVersity runs the server.
type VersityOption func(*versityConfig)

type versityConfig struct {
	certFile, keyFile, caFile string
}

// WithTLS serves HTTPS with the given certificate; caFile is the CA that
// signed it (see WriteTestCA), which the helpers' own client trusts.
func WithTLS(certFile, keyFile, caFile string) VersityOption {
	return func(c *versityConfig) { c.certFile, c.keyFile, c.caFile = certFile, keyFile, caFile }
}

// StartVersity starts the pinned versitygw with random root keys on a free
// port, waits until it answers and stops it in Cleanup. It fails the test
// when the binary is missing (run make tools).
func StartVersity(t testing.TB, opts ...VersityOption) *Versity {
	t.Helper()
	var vc versityConfig
	for _, o := range opts {
		o(&vc)
	}
	v := &Versity{
		AccessKey: "root" + randomHex(t, 8),
		SecretKey: randomHex(t, 20),
		Region:    "us-east-1",
		Dir:       t.TempDir(),
		bin:       Tool(t, VersityBin),
		caFile:    vc.caFile,
	}
	args := []string{
		"--access", v.AccessKey, "--secret", v.SecretKey, "--region", v.Region,
		"--iam-dir", t.TempDir(), "--health", "/healthz", "--quiet",
		// Without it versitygw closes every connection after one answer,
		// which no real S3 does.
		"--keep-alive",
	}
	scheme := "http"
	if vc.certFile != "" {
		args = append(args, "--cert", vc.certFile, "--key", vc.keyFile)
		scheme = "https"
	}
	backend := []string{"posix"}
	// The posix backend keeps object metadata in extended attributes; on
	// a filesystem without them it needs a sidecar directory instead.
	if !XattrSupported(v.Dir) {
		backend = append(backend, "--sidecar", t.TempDir())
	}
	backend = append(backend, v.Dir)

	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		port := freePort(t)
		v.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		full := append(slices.Clone(args), "--port", fmt.Sprintf("127.0.0.1:%d", port))
		full = append(full, backend...)
		if lastErr = v.start(t, full); lastErr == nil {
			v.client = v.newClient()
			return v
		}
	}
	t.Fatalf("versitygw did not start: %v", lastErr)
	return nil
}

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

func (v *Versity) start(t testing.TB, args []string) error {
	out := &syncBuffer{}
	cmd := exec.Command(v.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	hc := v.httpClient()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited early: %s", out.String())
		default:
		}
		resp, err := hc.Get(v.Endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("not ready after 20s (%v): %s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", tail(out.String(), 4000))
		}
	})
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (v *Versity) tlsConfig() *tls.Config {
	if v.caFile == "" {
		return nil
	}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(v.caFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &tls.Config{RootCAs: pool}
}

func (v *Versity) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = v.tlsConfig()
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

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
