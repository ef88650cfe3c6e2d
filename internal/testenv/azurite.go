package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// AzuriteBin is where `make tools` installs the pinned Azurite.
const AzuriteBin = "tools/azurite/node_modules/.bin/azurite-blob"

// The emulator's well-known development account (documented by Microsoft;
// not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteOptions select how Azurite is started.
type AzuriteOptions struct {
	// OAuth serves HTTPS with a certificate made for the test and accepts
	// bearer tokens (`--oauth basic`: issuer, audience and lifetime are
	// checked, the signature is not).
	OAuth bool
}

// Azurite is a running Azurite blob service, stopped when the test ends.
type Azurite struct {
	endpoint string
	cert     *AzuriteCert // nil over plain HTTP
	client   *http.Client
	pid      int

	mu     sync.Mutex
	output bytes.Buffer
}

// StartAzurite starts the pinned Azurite in memory on a free 127.0.0.1
// port over plain HTTP.
func StartAzurite(t testing.TB) *Azurite {
	return StartAzuriteWith(t, AzuriteOptions{})
}

var azuriteListening = regexp.MustCompile(`successfully listens on (https?://127\.0\.0\.1:\d+)`)

// StartAzuriteWith starts Azurite as o asks. It fails the test (never skips)
// when Azurite is not installed.
func StartAzuriteWith(t testing.TB, o AzuriteOptions) *Azurite {
	t.Helper()
	bin := Tool(t, AzuriteBin)
	dir := t.TempDir() // Azurite writes nothing in memory mode; this keeps it so
	args := []string{
		"--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
		"--blobHost", "127.0.0.1", "--blobPort", "0", // Azurite prints the port it got
	}
	a := &Azurite{}
	if o.OAuth {
		a.cert = NewAzuriteCert(t, "127.0.0.1", "localhost")
		args = append(args, "--cert", a.cert.CertFile, "--key", a.cert.KeyFile, "--oauth", "basic")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS=") // only the well-known account
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{a: a}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Azurite: %v", err)
	}
	a.pid = cmd.Process.Pid
	exited := make(chan struct{})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.output.WriteString(line + "\n")
			a.mu.Unlock()
			if m := azuriteListening.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// The whole process group: npm shims may leave a child behind.
		// Azurite's graceful close waits out idle keep-alive connections
		// (5 s); in memory there is nothing to flush, so do not wait long.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	select {
	case a.endpoint = <-found:
	case <-exited:
		t.Fatalf("Azurite exited before listening:\n%s", a.Output())
	case <-time.After(60 * time.Second):
		t.Fatalf("Azurite did not start within 60s:\n%s", a.Output())
	}
	a.endpoint += "/" + AzuriteAccount
	a.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the emulator is local whatever the environment says
		TLSClientConfig:     a.TLSConfig(),
		MaxIdleConnsPerHost: 16,
	}}
	return a
}

type lockedWriter struct{ a *Azurite }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	return w.a.output.Write(p)
}

// CPUTime is the processor time Azurite used so far (user + system), so
// benchmarks can tell whether the emulator or the client was the limit.
func (a *Azurite) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.pid))
	if err != nil {
		t.Fatalf("Azurite CPU time: %v", err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// Output returns what Azurite printed so far, for failure messages.
func (a *Azurite) Output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.output.String()
}

// Endpoint is the service URL in path style, e.g.
// http://127.0.0.1:41234/devstoreaccount1: what SNAPSHOT_AZBLOB_ENDPOINT
// takes.
func (a *Azurite) Endpoint() string { return a.endpoint }

// Origin is the server's base URL without the account path: the target
// for a FaultProxy, whose URL plus "/"+Account() is then the endpoint.
func (a *Azurite) Origin() string { return strings.TrimSuffix(a.endpoint, "/"+AzuriteAccount) }

// Account is the storage account name.
func (a *Azurite) Account() string { return AzuriteAccount }

// Key is the account's shared key.
func (a *Azurite) Key() string { return AzuriteKey }

// Cert is the TLS certificate Azurite serves with OAuth, nil otherwise.
// Its CertFile can be given to a child process as SSL_CERT_FILE.
func (a *Azurite) Cert() *AzuriteCert { return a.cert }

// TLSConfig trusts Azurite's certificate (nil over plain HTTP).
func (a *Azurite) TLSConfig() *tls.Config {
	if a.cert == nil {
		return nil
	}
	return &tls.Config{RootCAs: a.cert.Pool, MinVersion: tls.VersionTLS12}
}

// ContainerClient is an SDK client with the account key, for test setup
// and inspection that must not go through the code under test.
func (a *Azurite) ContainerClient(t testing.TB, name string) *container.Client {
	t.Helper()
	cred, err := container.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := container.NewClientWithSharedKeyCredential(a.endpoint+"/"+name, cred, &container.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: a.client,
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func azuriteCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// CreateContainer creates a container through the API.
func (a *Azurite) CreateContainer(t testing.TB, name string) {
	t.Helper()
	if _, err := a.ContainerClient(t, name).Create(azuriteCtx(t), nil); err != nil {
		t.Fatalf("creating container %s: %v", name, err)
	}
}

// Blobs lists the committed blobs under prefix, sorted.
func (a *Azurite) Blobs(t testing.TB, containerName, prefix string) []string {
	t.Helper()
	return a.listBlobs(t, containerName, prefix, false)
}

// UncommittedBlobs lists blob names under prefix that hold staged but
// never committed blocks and no committed data: what a failed block
// upload leaves behind (Azure bills them until it discards them after a
// week).
func (a *Azurite) UncommittedBlobs(t testing.TB, containerName, prefix string) []string {
	t.Helper()
	all := a.listBlobs(t, containerName, prefix, true)
	committed := a.listBlobs(t, containerName, prefix, false)
	var out []string
	for _, n := range all {
		if !slices.Contains(committed, n) {
			out = append(out, n)
		}
	}
	return out
}

func (a *Azurite) listBlobs(t testing.TB, containerName, prefix string, uncommitted bool) []string {
	t.Helper()
	pager := a.ContainerClient(t, containerName).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:  &prefix,
		Include: container.ListBlobsInclude{UncommittedBlobs: uncommitted},
	})
	var names []string
	for pager.More() {
		page, err := pager.NextPage(azuriteCtx(t))
		if err != nil {
			t.Fatalf("listing %s/%s: %v", containerName, prefix, err)
		}
		for _, b := range page.Segment.BlobItems {
			names = append(names, *b.Name)
		}
	}
	slices.Sort(names)
	return names
}

// PutBlob writes a blob directly (replacing any), e.g. a decoy for
// retention tests.
func (a *Azurite) PutBlob(t testing.TB, containerName, key string, data []byte) {
	t.Helper()
	_, err := a.ContainerClient(t, containerName).NewBlockBlobClient(key).UploadBuffer(azuriteCtx(t), data, nil)
	if err != nil {
		t.Fatalf("writing %s/%s: %v", containerName, key, err)
	}
}

// BlobData reads a whole blob directly.
func (a *Azurite) BlobData(t testing.TB, containerName, key string) []byte {
	t.Helper()
	resp, err := a.ContainerClient(t, containerName).NewBlobClient(key).DownloadStream(azuriteCtx(t), nil)
	if err != nil {
		t.Fatalf("reading %s/%s: %v", containerName, key, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s/%s: %v", containerName, key, err)
	}
	return b
}

// BlockSizes returns the sizes of a blob's committed blocks, in order.
func (a *Azurite) BlockSizes(t testing.TB, containerName, key string) []int64 {
	t.Helper()
	resp, err := a.ContainerClient(t, containerName).NewBlockBlobClient(key).GetBlockList(azuriteCtx(t), blockblob.BlockListTypeCommitted, nil)
	if err != nil {
		t.Fatalf("block list of %s/%s: %v", containerName, key, err)
	}
	var sizes []int64
	for _, b := range resp.CommittedBlocks {
		sizes = append(sizes, *b.Size)
	}
	return sizes
}

// BlobMetadata returns a blob's metadata as Azure stores it (keys are
// C# identifiers; Go's header handling capitalises their first letter).
func (a *Azurite) BlobMetadata(t testing.TB, containerName, key string) (map[string]string, string) {
	t.Helper()
	p, err := a.ContainerClient(t, containerName).NewBlobClient(key).GetProperties(azuriteCtx(t), nil)
	if err != nil {
		t.Fatalf("properties of %s/%s: %v", containerName, key, err)
	}
	md := map[string]string{}
	for k, v := range p.Metadata {
		md[k] = *v
	}
	tier := ""
	if p.AccessTier != nil {
		tier = *p.AccessTier
	}
	return md, tier
}

// AzuriteCert is a self-signed certificate for test TLS servers.
type AzuriteCert struct {
	CertFile, KeyFile string // PEM files in a test temp dir
	Pool              *x509.CertPool
	TLS               tls.Certificate
}

// NewAzuriteCert makes a self-signed certificate valid for hosts (names or
// IP addresses) for the length of the test.
func NewAzuriteCert(t testing.TB, hosts ...string) *AzuriteCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	c := &AzuriteCert{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		Pool:     x509.NewCertPool(),
	}
	if err := errors.Join(os.WriteFile(c.CertFile, certPEM, 0o600), os.WriteFile(c.KeyFile, keyPEM, 0o600)); err != nil {
		t.Fatal(err)
	}
	c.Pool.AppendCertsFromPEM(certPEM)
	if c.TLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// String names the emulator in test logs.
func (a *Azurite) String() string {
	return "azurite " + a.Origin()
}
