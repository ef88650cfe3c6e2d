package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// gcsFixture is one fake-gcs-server shared by a test's subtests; each
// subtest gets its own bucket.
type gcsFixture struct {
	f *testenv.FakeGCS
	n int
}

func (fx *gcsFixture) setup(t *testing.T, src string) (env, string) {
	fx.n++
	b := fmt.Sprintf("snaps-%d", fx.n)
	fx.f.CreateBucket(t, b)
	return env{
		"SNAPSHOT_CLOUD_PROVIDER":    "gcs",
		"SNAPSHOT_GCS_BUCKET":        b,
		"SNAPSHOT_GCS_ENDPOINT":      fx.f.Endpoint(),
		"SNAPSHOT_SOURCE_DIR":        src,
		"SNAPSHOT_CLOUD_PREFIX":      "snapshots/",
		"SNAPSHOT_NAME":              "kubeshark",
		"SNAPSHOT_PART_SIZE":         "5MiB",
		"SNAPSHOT_PROGRESS_INTERVAL": "200ms",
		"SNAPSHOT_TERMINATION_LOG":   filepath.Join(t.TempDir(), "termination-log"),
	}, b
}

func (fx *gcsFixture) put(t *testing.T, b, key string, data []byte) {
	fx.f.PutObject(t, b, key, data)
}

// keys lists every object the server holds, temporary parts included.
func (fx *gcsFixture) keys(t *testing.T, b, prefix string) []string {
	return fx.f.Objects(t, b, prefix)
}

func (fx *gcsFixture) nothingLeft(t *testing.T, b string) {
	t.Helper()
	if o := fx.f.Objects(t, b, ""); len(o) != 0 {
		t.Errorf("objects left: %q", o)
	}
}

// gcsPart matches the upload of a temporary part (a single-request
// upload named ".<snapshot>.<token>.pNNNNN").
var gcsPartName = regexp.MustCompile(`\.p[0-9]{5}$`)

func isGCSPart(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/") && gcsPartName.MatchString(r.URL.Query().Get("name"))
}

// TestGCSBinary runs the built binary against fake-gcs-server (a Google
// Cloud Storage emulator), as a pod would.
func TestGCSBinary(t *testing.T) {
	fx := &gcsFixture{f: testenv.StartFakeGCS(t)}
	f, setup := fx.f, fx.setup
	cloudTests(t, fx)

	t.Run("SingleStream", func(t *testing.T) {
		src := t.TempDir()
		testenv.MakeTree(t, src)
		writeBig(t, filepath.Join(src, "node-1", "big.pcap"), 12<<20)
		e, b := setup(t, src)
		e = e.with("SNAPSHOT_UPLOAD_CONCURRENCY", "1")
		expect(t, runJob(t, e), 0)
		dst := filepath.Join(t.TempDir(), "restore")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
		if k := fx.keys(t, b, ""); len(k) != 1 {
			t.Errorf("bucket holds %q", k)
		}
	})

	t.Run("WrongBucket", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_GCS_BUCKET", "no-such-bucket")), 3, "no-such-bucket", "does not exist")
	})

	t.Run("DeadEndpoint", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		expect(t, runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", testenv.ClosedPort(t))), 5)
	})

	t.Run("NoCredentials", func(t *testing.T) {
		// No key and an https endpoint: Application Default Credentials,
		// of which there are none here (no GOOGLE_APPLICATION_CREDENTIALS,
		// no gcloud files in the empty HOME, no metadata server).
		e, _ := setup(t, t.TempDir())
		r := runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", "https"+strings.TrimPrefix(testenv.ClosedPort(t), "http")), "list")
		expect(t, r, 3, "no Google credentials", "iam.gke.io/gcp-service-account")
	})

	t.Run("NotAServiceAccountKey", func(t *testing.T) {
		e, _ := setup(t, t.TempDir())
		const user = `{"type":"authorized_user","client_id":"x.apps.googleusercontent.com","client_secret":"d-FL95Q19q7MQmFpd7hHD0Ty","refresh_token":"1//0gSECRETrefresh"}`
		r := runJob(t, e.with("SNAPSHOT_GCS_CREDENTIALS_JSON", user))
		expect(t, r, 2, "SNAPSHOT_GCS_CREDENTIALS_JSON", "not a service-account key")
		if strings.Contains(r.stderr, "SECRETrefresh") || strings.Contains(r.stderr, "d-FL95Q19q7MQmFpd7hHD0Ty") {
			t.Error("the credentials were logged")
		}
	})

	t.Run("PrivateKeyNeverShown", func(t *testing.T) {
		key, private := testenv.GCSServiceAccountKey(t)
		var body []string // the key's base64 lines
		for _, l := range strings.Split(strings.TrimSpace(private), "\n") {
			if !strings.HasPrefix(l, "-----") {
				body = append(body, l)
			}
		}
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
		e, _ := setup(t, src)
		e = e.with("SNAPSHOT_GCS_CREDENTIALS_JSON", string(key), "SNAPSHOT_LOG_LEVEL", "debug")
		broken := strings.Replace(string(key), `"type":"service_account"`, `"type":"service-account"`, 1)
		for _, c := range []struct {
			name string
			e    env
			code int
		}{
			{"backup", e, 0},
			{"missing bucket", e.with("SNAPSHOT_GCS_BUCKET", "no-such-bucket"), 3},
			{"wrong type", e.with("SNAPSHOT_GCS_CREDENTIALS_JSON", broken), 2},
			{"text log", e.with("SNAPSHOT_LOG_FORMAT", "text", "SNAPSHOT_GCS_BUCKET", "no-such-bucket"), 3},
		} {
			r := runJob(t, c.e)
			if r.code != c.code {
				t.Fatalf("%s: exit %d, want %d\n%s", c.name, r.code, c.code, r)
			}
			term, _ := os.ReadFile(c.e["SNAPSHOT_TERMINATION_LOG"])
			for _, l := range body {
				for what, out := range map[string]string{"log": r.stderr, "stdout": r.stdout, "termination message": string(term)} {
					if strings.Contains(out, l) || strings.Contains(out, strings.ReplaceAll(l, "/", `\/`)) {
						t.Fatalf("%s: the private key shows in the %s", c.name, what)
					}
				}
			}
			// Over plain HTTP the key is checked (by Google's own parser
			// too) but not sent.
			if c.code == 0 && !strings.Contains(r.stderr, `"credentials":"none (plain-http endpoint)"`) {
				t.Errorf("%s: the log does not say no credentials are sent", c.name)
			}
		}
	})

	t.Run("SigtermMidUpload", func(t *testing.T) {
		src := t.TempDir()
		writeBig(t, filepath.Join(src, "capture.pcap"), 48<<20)
		e, b := setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isGCSPart(r) {
				return testenv.Fault{Delay: 300 * time.Millisecond}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL))
		j.waitFor(t, "progress")
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		fx.nothingLeft(t, b)
	})

	t.Run("Faults", func(t *testing.T) { gcsFaults(t, fx) })
}

func gcsFaults(t *testing.T, fx *gcsFixture) {
	f := fx.f
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "capture.pcap"), 16<<20)

	t.Run("PartFailuresAreRetried", func(t *testing.T) {
		e, b := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isGCSPart(r) && a.next(r.URL.Query().Get("name")) <= 2 {
				return testenv.Fault{Status: 503, Body: `{"error":{"code":503,"message":"Backend Error"}}`}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL)), 0)
		if k := fx.keys(t, b, ""); len(k) != 1 || !strings.HasPrefix(k[0], "snapshots/kubeshark-") {
			t.Fatalf("objects %q, want the snapshot alone", k)
		}
		expect(t, runJob(t, e, "verify"), 0)
	})

	t.Run("OnePartKeepsFailing", func(t *testing.T) {
		e, b := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isGCSPart(r) && strings.HasSuffix(r.URL.Query().Get("name"), ".p00002") {
				return testenv.Fault{Status: 500, Body: `{"error":{"code":500,"message":"Internal Error"}}`}
			}
			return testenv.Fault{}
		})
		r := timed(t, func() jobResult { return runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL)) })
		expect(t, r, 5)
		fx.nothingLeft(t, b)
	})

	t.Run("ResetMidPartIsRetried", func(t *testing.T) {
		e, b := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if isGCSPart(r) && a.next(r.URL.Query().Get("name")) == 1 {
				return testenv.Fault{Reset: true}
			}
			return testenv.Fault{}
		})
		expect(t, runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL)), 0)
		if k := fx.keys(t, b, ""); len(k) != 1 {
			t.Fatalf("objects %q", k)
		}
	})

	t.Run("ServerStopsAnswering", func(t *testing.T) {
		e, b := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		proxy.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
		r := timed(t, func() jobResult {
			return runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL, "SNAPSHOT_IO_TIMEOUT", "1s"))
		})
		expect(t, r, 5)
		fx.nothingLeft(t, b)
	})

	t.Run("SigtermDuringCompose", func(t *testing.T) {
		e, b := fx.setup(t, src)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		var a attempts
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/compose") && a.next("compose") == 1 {
				// The server composes the snapshot; the job never hears.
				return testenv.Fault{HoldResponse: time.Minute}
			}
			return testenv.Fault{}
		})
		j := startJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL))
		waitRequest(t, proxy, func(r string) bool { return strings.HasPrefix(r, "POST /") && strings.Contains(r, "/compose") })
		time.Sleep(300 * time.Millisecond)
		if code := j.signal(t, syscall.SIGTERM); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
		}
		// The snapshot the compose made is this run's (its upload token):
		// deleted, with the parts.
		fx.nothingLeft(t, b)
		if !strings.Contains(j.stderr.String(), "deleted the object of an interrupted upload") {
			t.Errorf("the log does not say the composed snapshot was deleted:\n%s", j.stderr.String())
		}
	})

	t.Run("AlteredInTransit", func(t *testing.T) {
		e, _ := fx.setup(t, src)
		expect(t, runJob(t, e), 0)
		proxy := testenv.StartFaultProxy(t, f.Endpoint())
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
				return testenv.Fault{FlipAt: 100000, FlipSet: true}
			}
			return testenv.Fault{}
		})
		dst := t.TempDir()
		expect(t, runJob(t, e.with("SNAPSHOT_GCS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst), "restore"), 7)
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("restore left %v", entries)
		}
	})
}
