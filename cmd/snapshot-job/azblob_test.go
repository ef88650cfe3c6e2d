package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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

// nothingLeft fails unless the container holds no blob, committed or not.
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
	t.Run("Faults", func(t *testing.T) { azureFaults(t, fx) })

	t.Run("RoundTrip", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "node-1", "big.pcap"), 12<<20) // several blocks
		e, c := setup(t, src)
		az.PutBlob(t, c, "snapshots2/kubeshark-20200101T000000Z.tar.zst", []byte("neighbour"))
		expect(t, runJob(t, e), 0)
		blobs := az.Blobs(t, c, "snapshots/")
		if len(blobs) != 1 || !strings.HasPrefix(blobs[0], "snapshots/kubeshark-") {
			t.Fatalf("blobs %q", blobs)
		}
		r := runJob(t, e, "list")
		expect(t, r, 0)
		if !strings.Contains(r.stdout, blobs[0]) || strings.Contains(r.stdout, "snapshots2") {
			t.Errorf("list: %s", r.stdout)
		}
		expect(t, runJob(t, e, "verify"), 0)
		dst := filepath.Join(t.TempDir(), "restore")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
	})

	t.Run("RetentionLeavesDecoys", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, c := setup(t, src)
		old := []string{"snapshots/kubeshark-20200101T000000Z.tar.zst", "snapshots/kubeshark-20200102T000000Z.tar.zst"}
		for _, k := range append(slices.Clone(old), decoys...) {
			az.PutBlob(t, c, k, []byte(k))
		}
		expect(t, runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1", "SNAPSHOT_RETENTION_DRY_RUN", "true")), 0)
		if got := az.Blobs(t, c, ""); len(got) != len(old)+len(decoys)+1 {
			t.Fatalf("dry run changed the container: %q", got)
		}
		time.Sleep(1100 * time.Millisecond)
		expect(t, runJob(t, e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1")), 0)
		got := az.Blobs(t, c, "")
		var ours []string
		for _, k := range got {
			if !slices.Contains(decoys, k) {
				ours = append(ours, k)
			}
		}
		for _, d := range decoys {
			if !slices.Contains(got, d) {
				t.Errorf("decoy %s deleted", d)
			}
		}
		if len(ours) != 1 || slices.Contains(old, ours[0]) {
			t.Errorf("left %q, want only the newest snapshot", ours)
		}
	})

	t.Run("RetentionRules", func(t *testing.T) {
		checkRetention(t, func(t *testing.T, keys []string) (env, func() []string) {
			e, c := setup(t, t.TempDir())
			for _, k := range keys {
				az.PutBlob(t, c, k, []byte(k))
			}
			return e, func() []string { return az.Blobs(t, c, "") }
		})
	})

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
