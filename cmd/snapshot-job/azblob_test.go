package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// azFixture is one Azurite shared by a test's subtests; each subtest gets
// its own container.
type azFixture struct {
	az *testenv.Azurite
	n  int
}

func (fx *azFixture) setup(t *testing.T, src string) (env, string) {
	fx.n++
	c := fmt.Sprintf("snaps-%d", fx.n)
	fx.az.CreateContainer(t, c)
	return env{
		"SNAPSHOT_CLOUD_PROVIDER":         "azblob",
		"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT": fx.az.Account(),
		"SNAPSHOT_AZBLOB_STORAGE_KEY":     fx.az.Key(),
		"SNAPSHOT_AZBLOB_CONTAINER":       c,
		"SNAPSHOT_AZBLOB_ENDPOINT":        fx.az.Endpoint(),
		"SNAPSHOT_SOURCE_DIR":             src,
		"SNAPSHOT_CLOUD_PREFIX":           "snapshots/",
		"SNAPSHOT_NAME":                   "kubeshark",
		"SNAPSHOT_PART_SIZE":              "5MiB",
		"SNAPSHOT_PROGRESS_INTERVAL":      "200ms",
		"SNAPSHOT_TERMINATION_LOG":        filepath.Join(t.TempDir(), "termination-log"),
	}, c
}

func (fx *azFixture) put(t *testing.T, c, key string, data []byte) {
	fx.az.PutBlob(t, c, key, data)
}

func (fx *azFixture) keys(t *testing.T, c, prefix string) []string {
	return fx.az.Blobs(t, c, prefix)
}

func (fx *azFixture) nothingLeft(t *testing.T, c string) {
	t.Helper()
	if b := fx.az.Blobs(t, c, ""); len(b) != 0 {
		t.Errorf("blobs left: %q", b)
	}
	if b := fx.az.UncommittedBlobs(t, c, ""); len(b) != 0 {
		t.Errorf("uncommitted blobs left: %q", b)
	}
}

// TestAzureBinary runs the built binary against Azurite, as a pod would.
func TestAzureBinary(t *testing.T) {
	fx := &azFixture{az: testenv.StartAzurite(t)}
	az, setup := fx.az, fx.setup
	cloudTests(t, fx)
	filesTests(t, fx)
	t.Run("Faults", func(t *testing.T) { azureFaults(t, fx) })

	t.Run("WrongKey", func(t *testing.T) {
		e, c := setup(t, t.TempDir())
		r := runJob(t, e.with("SNAPSHOT_AZBLOB_STORAGE_KEY", "d3Jvbmcga2V5IHdyb25nIGtleQ=="))
		expect(t, r, 3, c, az.Account(), "shared key")
		if strings.Contains(r.stderr, "d3Jvbmcga2V5") {
			t.Error("the key was logged")
		}
	})

	t.Run("MissingContainer", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_AZBLOB_CONTAINER", "no-such-container")), 3, "no-such-container")
	})

	t.Run("DeadEndpoint", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", testenv.ClosedPort(t)+"/"+az.Account())), 5)
	})

	t.Run("NoIdentity", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		// Without a key the job asks DefaultAzureCredential, whose
		// managed-identity probe goes to 169.254.169.254: a proxy on a
		// closed port makes it fail at once (Go never proxies loopback,
		// so Azurite stays reachable).
		r := runJob(t, e.with("SNAPSHOT_AZBLOB_STORAGE_KEY", "", "SNAPSHOT_AZBLOB_ENDPOINT", "https"+strings.TrimPrefix(testenv.ClosedPort(t), "http")+"/"+az.Account(),
			"HTTP_PROXY", testenv.ClosedPort(t), "HTTPS_PROXY", testenv.ClosedPort(t), "PATH", "/nonexistent"))
		expect(t, r, 3, "default azure credential")
	})

	t.Run("SigtermMidUpload", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 48<<20)
		e, c := setup(t, src)
		proxy := testenv.StartFaultProxy(t, az.Origin())
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "block" {
				return testenv.Fault{Delay: 300 * time.Millisecond}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_AZBLOB_ENDPOINT", proxy.URL+"/"+az.Account()))
		j.waitFor(t, "progress")
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		fx.nothingLeft(t, c)
	})
}
