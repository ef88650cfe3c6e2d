package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// s3Fixture is one versitygw shared by a test's subtests; each subtest
// gets its own bucket.
type s3Fixture struct {
	v *testenv.Versity
	n int
}

func (fx *s3Fixture) setup(t *testing.T, src string) (env, string) {
	fx.n++
	bucket := fmt.Sprintf("snaps-%d", fx.n)
	fx.v.CreateBucket(t, bucket)
	return env{
		"SNAPSHOT_CLOUD_PROVIDER":       "s3",
		"SNAPSHOT_AWS_BUCKET":           bucket,
		"SNAPSHOT_AWS_REGION":           fx.v.Region,
		"SNAPSHOT_AWS_ACCESS_KEY":       fx.v.AccessKey,
		"SNAPSHOT_AWS_SECRET_KEY":       fx.v.SecretKey,
		"SNAPSHOT_AWS_ENDPOINT":         fx.v.Endpoint,
		"SNAPSHOT_AWS_FORCE_PATH_STYLE": "true",
		"SNAPSHOT_SOURCE_DIR":           src,
		"SNAPSHOT_CLOUD_PREFIX":         "snapshots/",
		"SNAPSHOT_NAME":                 "kubeshark",
		"SNAPSHOT_PART_SIZE":            "5MiB",
		"SNAPSHOT_PROGRESS_INTERVAL":    "200ms",
		"SNAPSHOT_TERMINATION_LOG":      filepath.Join(t.TempDir(), "termination-log"),
		"AWS_EC2_METADATA_DISABLED":     "true",
	}, bucket
}

func (fx *s3Fixture) put(t *testing.T, bucket, key string, data []byte) {
	fx.v.PutObject(t, bucket, key, data)
}

func (fx *s3Fixture) keys(t *testing.T, bucket, prefix string) []string {
	return fx.v.Keys(t, bucket, prefix)
}

func (fx *s3Fixture) nothingLeft(t *testing.T, bucket string) {
	t.Helper()
	if k := fx.v.Keys(t, bucket, ""); len(k) != 0 {
		t.Errorf("objects left: %q", k)
	}
	if u := fx.v.MultipartUploads(t, bucket, ""); len(u) != 0 {
		t.Errorf("open multipart uploads left: %q", u)
	}
}

// TestS3Binary runs the built binary against versitygw, as a pod would.
// The environment's AWS_CA_BUNDLE (set on the CI machines for the
// registry proxy) is passed through to every run.
func TestS3Binary(t *testing.T) {
	fx := &s3Fixture{v: testenv.StartVersity(t)}
	v, setup, nothingLeft := fx.v, fx.setup, fx.nothingLeft
	if os.Getenv("AWS_CA_BUNDLE") == "" {
		t.Log("AWS_CA_BUNDLE is not set here; CI sets it")
	}
	cloudTests(t, fx)
	filesTests(t, fx)
	t.Run("FilesFetchesOnlyTheTail", func(t *testing.T) { s3FilesFetchesTail(t, fx) })
	t.Run("PartialRestore", func(t *testing.T) { s3PartialRestore(t, fx) })
	t.Run("Faults", func(t *testing.T) { s3Faults(t, fx) })

	t.Run("PruneFailureAfterBackup", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, bucket := setup(t, src)
		v.PutObject(t, bucket, "snapshots/kubeshark-20200101T000000Z.tar.zst", []byte("old"))
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPost && r.URL.Query().Has("delete") {
				return testenv.Fault{Status: 403, Body: "<Error><Code>AccessDenied</Code><Message>no delete for you</Message></Error>"}
			}
			return testenv.Fault{}
		})
		r := runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RETENTION_KEEP_LAST", "1"))
		expect(t, r, 6, "stored and safe")
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 2 {
			t.Errorf("keys %q: want the old one (not deleted) and the new one", k)
		}
	})

	t.Run("WrongSecret", func(t *testing.T) {
		e, bucket := setup(t, t.TempDir())
		r := runJob(t, e.with("SNAPSHOT_AWS_SECRET_KEY", "not-the-secret"))
		expect(t, r, 3, bucket, "static keys")
		if strings.Contains(r.stderr, "not-the-secret") {
			t.Error("the secret was logged")
		}
	})

	t.Run("MissingBucket", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_BUCKET", "no-such-bucket")), 3, "no-such-bucket")
	})

	t.Run("DeadEndpoint", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", testenv.ClosedPort(t))), 5)
	})

	t.Run("Part3Fails", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 24<<20)
		e, bucket := setup(t, src)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "3" {
				return testenv.Fault{Status: 500, Body: "<Error><Code>InternalError</Code></Error>"}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL)), 5)
		nothingLeft(t, bucket)
	})

	t.Run("SigtermMidUpload", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 48<<20)
		e, bucket := setup(t, src)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
				return testenv.Fault{Delay: 300 * time.Millisecond}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL))
		j.waitFor(t, "progress")
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		nothingLeft(t, bucket)
	})

	t.Run("AlteredInTransit", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 3<<20)
		e, _ := setup(t, src)
		expect(t, runJob(t, e), 0)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
				return testenv.Fault{FlipAt: 1 << 20, FlipSet: true}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL), "verify"), 7)
		dst := t.TempDir()
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst), "restore"), 7)
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("restore left %v", entries)
		}
	})

	t.Run("CutDownloadsAreRetried", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 12<<20)
		e, _ := setup(t, src)
		expect(t, runJob(t, e), 0)
		proxy := testenv.StartFaultProxy(t, v.Endpoint)
		var mu sync.Mutex
		cut := map[string]bool{}
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			mu.Lock()
			defer mu.Unlock()
			rg := r.Header.Get("Range")
			if r.Method == http.MethodGet && rg != "" && !cut[rg] {
				cut[rg] = true // each range cut once
				return testenv.Fault{CutAfter: 1000}
			}
			return testenv.Fault{}
		})
		dst := filepath.Join(t.TempDir(), "r")
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
		if len(cut) < 3 {
			t.Errorf("only %d ranges were cut", len(cut))
		}
	})

	t.Run("AssumeRoleWithExternalID", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, bucket := setup(t, src)
		v.CreateUser(t, "roleuser", "roleuser-secret-0123456789", "user")
		v.ChangeBucketOwner(t, bucket, "roleuser")
		const arn = "arn:aws:iam::123456789012:role/snapshots"
		sts := testenv.StartSTS(t, testenv.STSRole{ARN: arn, ExternalID: "ext-42",
			Callers:   map[string]string{"AKIABASE": "base-secret"},
			AccessKey: "roleuser", SecretKey: "roleuser-secret-0123456789"})
		e = e.with("SNAPSHOT_AWS_ACCESS_KEY", "AKIABASE", "SNAPSHOT_AWS_SECRET_KEY", "base-secret",
			"SNAPSHOT_AWS_ROLE_ARN", arn, "SNAPSHOT_AWS_EXTERNAL_ID", "ext-42", "AWS_ENDPOINT_URL_STS", sts.URL)
		r := runJob(t, e)
		expect(t, r, 0)
		if !strings.Contains(r.stderr, "assume-role (static keys)") {
			t.Errorf("credential method not logged:\n%s", r.stderr)
		}
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 1 {
			t.Errorf("keys %q", k)
		}
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_EXTERNAL_ID", "ext-41")), 3, "assume-role")
	})

	t.Run("IRSA", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, bucket := setup(t, src)
		v.CreateUser(t, "irsauser", "irsauser-secret-0123456789", "user")
		v.ChangeBucketOwner(t, bucket, "irsauser")
		const arn = "arn:aws:iam::123456789012:role/irsa"
		sts := testenv.StartSTS(t, testenv.STSRole{ARN: arn, WebIdentityToken: "projected-sa-token",
			AccessKey: "irsauser", SecretKey: "irsauser-secret-0123456789"})
		token := filepath.Join(t.TempDir(), "token")
		os.WriteFile(token, []byte("projected-sa-token"), 0o600)
		e = e.with("SNAPSHOT_AWS_ACCESS_KEY", "", "SNAPSHOT_AWS_SECRET_KEY", "",
			"AWS_ROLE_ARN", arn, "AWS_WEB_IDENTITY_TOKEN_FILE", token, "AWS_ENDPOINT_URL_STS", sts.URL)
		r := runJob(t, e)
		expect(t, r, 0)
		if !strings.Contains(r.stderr, "default chain") {
			t.Errorf("credential method not logged:\n%s", r.stderr)
		}
		if k := v.Keys(t, bucket, "snapshots/"); len(k) != 1 {
			t.Errorf("keys %q", k)
		}
		os.WriteFile(token, []byte("stolen-token"), 0o600)
		expect(t, runJob(t, e), 3)
	})
}

func getObject(t *testing.T, v *testenv.Versity, bucket, key string) []byte {
	t.Helper()
	out, err := v.Client().GetObject(t.Context(), &awss3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
