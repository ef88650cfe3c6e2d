package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// FakeGCSBin is where `make tools` installs the pinned fake-gcs-server.
const FakeGCSBin = ".tools/bin/fake-gcs-server"

// FakeGCS is a fake-gcs-server (the Google Cloud Storage JSON and XML
// APIs, in memory) on a free 127.0.0.1 port over plain HTTP, stopped
// when the test ends.
//
// What it does not do as GCS does, checked against its source
// (v1.56.1): it ignores the preconditions of compose (ifGenerationMatch,
// so DoesNotExist does not stop a compose from replacing an object) and
// of delete (ifGenerationMatch; a delete of a given generation is
// honoured), and it ignores authentication.
type FakeGCS struct {
	endpoint string
	pid      int
	out      *syncBuffer
	client   *storage.Client
}

// StartFakeGCS starts the pinned fake-gcs-server in memory mode. It fails
// the test (never skips) when the binary is missing (run make tools).
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	bin := Tool(t, FakeGCSBin)
	f := &FakeGCS{}
	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		port := freePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		f.endpoint = "http://" + addr
		f.out = &syncBuffer{}
		cmd := exec.Command(bin, "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
			"-port", fmt.Sprint(port), "-public-host", addr, "-external-url", f.endpoint, "-log-level", "warn")
		cmd.Stdout, cmd.Stderr = f.out, f.out
		cmd.Dir = t.TempDir()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting fake-gcs-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if lastErr = waitFakeGCS(f.endpoint, exited); lastErr != nil {
			_ = cmd.Process.Kill()
			<-exited
			continue
		}
		f.pid = cmd.Process.Pid
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(3 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("fake-gcs-server output:\n%s", tail(f.out.String(), 4000))
			}
		})
		c, err := storage.NewClient(context.Background(),
			option.WithEndpoint(f.endpoint+"/storage/v1/"), option.WithoutAuthentication(),
			option.WithHTTPClient(&http.Client{Transport: &http.Transport{Proxy: nil}}),
			storage.WithDisabledClientMetrics())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		f.client = c
		return f
	}
	t.Fatalf("fake-gcs-server did not start: %v\n%s", lastErr, tail(f.out.String(), 2000))
	return nil
}

func waitFakeGCS(endpoint string, exited <-chan struct{}) error {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited early")
		default:
		}
		resp, err := hc.Get(endpoint + "/storage/v1/b")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Endpoint is the server's base URL, e.g. http://127.0.0.1:41234: what
// SNAPSHOT_GCS_ENDPOINT takes.
func (f *FakeGCS) Endpoint() string { return f.endpoint }

// Client is a client of the server independent of the code under test,
// for setup and inspection.
func (f *FakeGCS) Client() *storage.Client { return f.client }

// Output is what the server printed so far.
func (f *FakeGCS) Output() string { return f.out.String() }

// CPUTime is the processor time the server used so far.
func (f *FakeGCS) CPUTime(t testing.TB) time.Duration { return processCPU(t, f.pid) }

// String names the emulator in test logs.
func (f *FakeGCS) String() string { return "fake-gcs-server " + f.endpoint }

// CreateBucket creates a bucket through the API.
func (f *FakeGCS) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := f.client.Bucket(name).Create(opCtx(t), "test-project", nil); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
}

// Objects lists every object name under prefix, temporary parts
// included, sorted.
func (f *FakeGCS) Objects(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var names []string
	it := f.client.Bucket(bucket).Objects(opCtx(t), &storage.Query{Prefix: prefix})
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("listing %s/%s: %v", bucket, prefix, err)
		}
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return names
}

// PutObject writes an object directly (replacing any), e.g. a decoy.
func (f *FakeGCS) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	w := f.client.Bucket(bucket).Object(key).NewWriter(opCtx(t))
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatalf("writing %s/%s: %v", bucket, key, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writing %s/%s: %v", bucket, key, err)
	}
}

// ObjectData reads a whole object directly.
func (f *FakeGCS) ObjectData(t testing.TB, bucket, key string) []byte {
	t.Helper()
	r, err := f.client.Bucket(bucket).Object(key).NewReader(opCtx(t))
	if err != nil {
		t.Fatalf("reading %s/%s: %v", bucket, key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s/%s: %v", bucket, key, err)
	}
	return b
}

// Attrs returns an object's attributes as the server stores them.
func (f *FakeGCS) Attrs(t testing.TB, bucket, key string) *storage.ObjectAttrs {
	t.Helper()
	a, err := f.client.Bucket(bucket).Object(key).Attrs(opCtx(t))
	if err != nil {
		t.Fatalf("attributes of %s/%s: %v", bucket, key, err)
	}
	return a
}

// processCPU is the processor time (user + system) process pid used so
// far, so benchmarks can tell whether the server or the client was the
// limit.
func processCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("CPU time of %d: %v", pid, err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// GCSServiceAccountKey is a service-account key file made for the test
// (a fresh RSA key, a made-up account), and its private key's PEM text,
// which must never appear in any output.
func GCSServiceAccountKey(t testing.TB) (keyJSON []byte, privatePEM string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	privatePEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	keyJSON, err = json.Marshal(map[string]string{
		"type":                        "service_account",
		"project_id":                  "test-project",
		"private_key_id":              randomText(20),
		"private_key":                 privatePEM,
		"client_email":                "snapshots@test-project.iam.gserviceaccount.com",
		"client_id":                   "100000000000000000000",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   "https://oauth2.googleapis.com/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	})
	if err != nil {
		t.Fatal(err)
	}
	return keyJSON, privatePEM
}
