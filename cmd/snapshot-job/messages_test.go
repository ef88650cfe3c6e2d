package main

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// hint is the final log line's hint.
func (r jobResult) hint() string {
	h, _ := r.last()["hint"].(string)
	return h
}

// termination reads the job's termination message.
func termination(t *testing.T, e env) map[string]any {
	t.Helper()
	b, err := os.ReadFile(e["SNAPSHOT_TERMINATION_LOG"])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("termination message %q: %v", b, err)
	}
	return m
}

func TestMissingSnapshotHints(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	dst := t.TempDir()
	const key = "snapshots/kubeshark-20200101T000000Z.tar.zst"

	// IF_MISSING=ok is set and does not apply to an exact key: the hint
	// must not suggest setting it.
	for _, verb := range []string{"restore", "verify"} {
		r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_MISSING", "ok", "SNAPSHOT_RESTORE_KEY", key), verb)
		expect(t, r, 8, key, "SNAPSHOT_RESTORE_KEY names no object", "applies only to latest")
		if strings.Contains(r.hint(), "set SNAPSHOT_RESTORE_IF_MISSING=ok") {
			t.Errorf("%s: hint suggests what is already set: %q", verb, r.hint())
		}
	}
	// latest on an empty prefix: a fresh install, where IF_MISSING=ok helps.
	r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore")
	expect(t, r, 8, "SNAPSHOT_CLOUD_PREFIX", "set SNAPSHOT_RESTORE_IF_MISSING=ok")
	// verify has no IF_MISSING.
	r = runJob(t, e, "verify")
	expect(t, r, 8, "no snapshot to verify", "SNAPSHOT_CLOUD_PREFIX")
	if strings.Contains(r.hint(), "IF_MISSING") {
		t.Errorf("verify hint mentions IF_MISSING: %q", r.hint())
	}
}

func TestVerifyFailureGivesVerifyAdvice(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	p := filepath.Join(store, storeFiles(t, store)[0])
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x10
	os.WriteFile(p, b, 0o644)

	r := runJob(t, e, "verify")
	expect(t, r, 7, "verify the older ones", "take a new backup")
	for _, w := range []string{"nothing was written", "restore an older one"} {
		if strings.Contains(r.hint(), w) {
			t.Errorf("verify hint gives restore advice %q: %q", w, r.hint())
		}
	}
	r = runJob(t, e.with("SNAPSHOT_RESTORE_DIR", t.TempDir()), "restore")
	expect(t, r, 7, "nothing was written", "restore an older one")
}

func TestTerminationMessageOutcome(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("capture"), 0o644)
	e, _ := fileEnv(t, src)
	for _, tc := range []struct {
		env     env
		args    []string
		code    int
		outcome string
	}{
		{e, nil, 0, "stored"},
		{e.with("SNAPSHOT_SOURCE_DIR", filepath.Join(src, "missing")), nil, 4, "failed"},
		{e.with("SNAPSHOT_NAME", "Bad_Name"), nil, 2, "failed"},
		{e.with("SNAPSHOT_RESTORE_DIR", t.TempDir(), "SNAPSHOT_RESTORE_KEY", "snapshots/none.tar.zst"), []string{"restore"}, 8, "failed"},
		{e, []string{"verify"}, 0, "verified"},
	} {
		r := runJob(t, tc.env, tc.args...)
		expect(t, r, tc.code)
		m := termination(t, tc.env)
		if m["outcome"] != tc.outcome || m["exit_code"] != float64(tc.code) {
			t.Errorf("%v: termination message %v, want outcome %q", tc.args, m, tc.outcome)
		}
	}

	big := t.TempDir()
	writeBig(t, filepath.Join(big, "capture.pcap"), 64<<20)
	se, _ := fileEnv(t, big)
	j := startJob(t, se.with("SNAPSHOT_COMPRESSION_LEVEL", "best"))
	j.waitFor(t, "progress")
	if code := j.signal(t, syscall.SIGTERM); code != 143 {
		t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
	}
	if m := termination(t, se); m["outcome"] != "stopped" || m["exit_code"] != float64(143) {
		t.Errorf("termination message after SIGTERM: %v", m)
	}
}

// Every number in every log line is rounded: durations and seconds to
// the millisecond, rates to one decimal.
func TestLogNumbersAreRounded(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	writeBig(t, filepath.Join(src, "capture.pcap"), 8<<20)
	dst := t.TempDir()
	long := regexp.MustCompile(`[0-9]\.[0-9]{4,}`)
	for _, format := range []string{"text", "json"} {
		e, _ := fileEnv(t, src) // a store each: two backups may fall in one second
		fe := e.with("SNAPSHOT_LOG_FORMAT", format, "SNAPSHOT_RESTORE_DIR", filepath.Join(dst, format))
		for _, verb := range []string{"backup", "verify", "restore"} {
			r := runJob(t, fe, verb)
			expect(t, r, 0)
			for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				line = regexp.MustCompile(`"?time"?[=:]"?[^ "]+"?`).ReplaceAllString(line, "")
				if m := long.FindString(line); m != "" {
					t.Errorf("%s %s: %s is not rounded in %s", format, verb, m, line)
				}
			}
			for _, l := range r.lines {
				for k, v := range l {
					if f, ok := v.(float64); ok && math.Round(f*1000)/1000 != f {
						t.Errorf("%s: %s=%v is not rounded", verb, k, f)
					}
				}
			}
		}
		if s, ok := map[string]any(termination(t, fe))["seconds"].(float64); !ok || math.Round(s*1000)/1000 != s {
			t.Errorf("termination seconds %v", s)
		}
	}
}

// S3's request and host ids are what AWS support asks for: they stay,
// in fields of their own, out of the one line that says what failed.
func TestS3RequestIDsAreFields(t *testing.T) {
	v := testenv.StartVersity(t)
	v.CreateBucket(t, "snaps")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("capture"), 0o644)
	proxy := testenv.StartFaultProxy(t, v.Endpoint)
	const reqID, hostID = "4442587FB7D0A2F9", "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="
	proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
		if r.Method == http.MethodPut {
			return testenv.Fault{Status: http.StatusForbidden,
				Header: http.Header{"X-Amz-Request-Id": {reqID}, "X-Amz-Id-2": {hostID}, "Content-Type": {"application/xml"}},
				Body:   "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>" + reqID + "</RequestId><HostId>" + hostID + "</HostId></Error>"}
		}
		return testenv.Fault{}
	})
	e := env{
		"SNAPSHOT_CLOUD_PROVIDER":       "s3",
		"SNAPSHOT_AWS_BUCKET":           "snaps",
		"SNAPSHOT_AWS_REGION":           v.Region,
		"SNAPSHOT_AWS_ACCESS_KEY":       v.AccessKey,
		"SNAPSHOT_AWS_SECRET_KEY":       v.SecretKey,
		"SNAPSHOT_AWS_ENDPOINT":         proxy.URL,
		"SNAPSHOT_AWS_FORCE_PATH_STYLE": "true",
		"SNAPSHOT_SOURCE_DIR":           src,
		"SNAPSHOT_TERMINATION_LOG":      filepath.Join(t.TempDir(), "termination-log"),
		"AWS_EC2_METADATA_DISABLED":     "true",
	}
	r := runJob(t, e)
	expect(t, r, 3, "AccessDenied")
	last := r.last()
	if msg := last["msg"].(string); strings.Contains(msg, "RequestID") || strings.Contains(msg, "HostID") || strings.Contains(msg, reqID) || strings.Contains(msg, hostID) {
		t.Errorf("the message carries the ids: %q", msg)
	}
	if last["request_id"] != reqID || last["host_id"] != hostID {
		t.Errorf("last line: request_id %v, host_id %v", last["request_id"], last["host_id"])
	}
	m := termination(t, e)
	if m["request_id"] != reqID || m["host_id"] != hostID || strings.Contains(m["error"].(string), "RequestID") {
		t.Errorf("termination message %v", m)
	}
}

func TestAzureRequestIDIsAField(t *testing.T) {
	az := testenv.StartAzurite(t)
	e, _ := fileEnv(t, t.TempDir())
	e = e.with("SNAPSHOT_CLOUD_PROVIDER", "azblob", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", az.Account(), "SNAPSHOT_AZBLOB_STORAGE_KEY", az.Key(),
		"SNAPSHOT_AZBLOB_CONTAINER", "no-such-container", "SNAPSHOT_AZBLOB_ENDPOINT", az.Endpoint())
	r := runJob(t, e)
	expect(t, r, 3, "no-such-container", "ContainerNotFound")
	id, _ := r.last()["request_id"].(string)
	if id == "" || strings.Contains(r.last()["msg"].(string), id) || strings.Contains(r.last()["msg"].(string), "(request ") {
		t.Errorf("last line %v: want the request id in its own field only", r.last())
	}
	if m := termination(t, e); m["request_id"] != id {
		t.Errorf("termination message %v", m)
	}
}

// An endpoint may hold credentials: only its scheme and host are shown.
func TestEndpointsAreNotEchoed(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	closed, _ := url.Parse(testenv.ClosedPort(t))
	s3 := e.with("SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "snaps", "SNAPSHOT_AWS_ACCESS_KEY", "AKIAEXAMPLE",
		"SNAPSHOT_AWS_SECRET_KEY", "secret", "AWS_EC2_METADATA_DISABLED", "true")
	for _, tc := range []struct {
		env   env
		words []string
	}{
		{s3.with("SNAPSHOT_AWS_ENDPOINT", "http://admin:s3cr3tpw@"+closed.Host), []string{"SNAPSHOT_AWS_ENDPOINT http://" + closed.Host, "must not carry credentials"}},
		{s3.with("SNAPSHOT_AWS_ENDPOINT", "http://"+closed.Host+"/?X-Amz-Signature=s3cr3tpw"), []string{"SNAPSHOT_AWS_ENDPOINT", "a query"}},
		{s3.with("SNAPSHOT_AWS_ENDPOINT", "http://admin:s3cr3tpw@[::1"), []string{"SNAPSHOT_AWS_ENDPOINT is not an http or https URL"}},
		{s3.with("SNAPSHOT_AWS_ENDPOINT", "ftp://admin:s3cr3tpw@minio.example"), []string{"SNAPSHOT_AWS_ENDPOINT (ftp://minio.example) is not an http or https URL"}},
		{s3.with("SNAPSHOT_AWS_ENDPOINT", "minio.example:9000"), []string{"SNAPSHOT_AWS_ENDPOINT is not an http or https URL", "https://minio.example:9000"}},
		{e.with("SNAPSHOT_CLOUD_PROVIDER", "azblob", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct", "SNAPSHOT_AZBLOB_CONTAINER", "snaps",
			"SNAPSHOT_AZBLOB_STORAGE_KEY", "a2V5", "SNAPSHOT_AZBLOB_ENDPOINT", "https://acct.blob.core.windows.net/s3cr3tpw?sig=s3cr3tpw"),
			[]string{"SNAPSHOT_AZBLOB_ENDPOINT https://acct.blob.core.windows.net must not carry"}},
	} {
		r := runJob(t, tc.env)
		expect(t, r, 2, tc.words...)
		if strings.Contains(r.stdout+r.stderr, "s3cr3tpw") || strings.Contains(r.stdout+r.stderr, "admin") {
			t.Errorf("the endpoint's secret is echoed:\n%s", r)
		}
	}
}
