package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the snapshot-job built once for the package's tests: they run
// it as a pod would, with only environment variables.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snapshot-job-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "snapshot-job")
	// The tags of make build: the tests run the binary that ships.
	build := exec.Command("go", "build", "-tags", "disable_grpc_modules", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building snapshot-job: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a job's environment. Only what a test sets is visible: nothing
// SNAPSHOT_* leaks in from the machine running the tests.
type env map[string]string

func (e env) with(kv ...string) env {
	out := env{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func (e env) list(t *testing.T) []string {
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + os.TempDir()}
	for _, k := range []string{"AWS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			base = append(base, k+"="+v)
		}
	}
	for k, v := range e {
		base = append(base, k+"="+v)
	}
	return base
}

// fileEnv is a working configuration for the file store.
func fileEnv(t *testing.T, source string) (env, string) {
	t.Helper()
	store := t.TempDir()
	return env{
		"SNAPSHOT_CLOUD_PROVIDER":    "file",
		"SNAPSHOT_FILE_DIR":          store,
		"SNAPSHOT_SOURCE_DIR":        source,
		"SNAPSHOT_CLOUD_PREFIX":      "snapshots/",
		"SNAPSHOT_NAME":              "kubeshark",
		"SNAPSHOT_TERMINATION_LOG":   filepath.Join(t.TempDir(), "termination-log"),
		"SNAPSHOT_PROGRESS_INTERVAL": "200ms",
	}, store
}

type jobResult struct {
	code   int
	stdout string
	stderr string
	lines  []map[string]any // stderr's JSON log lines
}

func (r jobResult) last() map[string]any {
	if len(r.lines) == 0 {
		return nil
	}
	return r.lines[len(r.lines)-1]
}

// lastMsg is the final log line's message and hint.
func (r jobResult) lastMsg() string {
	l := r.last()
	return fmt.Sprint(l["msg"], " ", l["hint"])
}

func (r jobResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func runJob(t *testing.T, e env, args ...string) jobResult {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = e.list(t)
	return runCmd(t, cmd)
}

// runCmd runs a prepared job command to its end.
func runCmd(t *testing.T, cmd *exec.Cmd) jobResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := jobResult{stdout: stdout.String(), stderr: stderr.String(), lines: parseLines(stderr.String())}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running snapshot-job: %v", err)
	}
	return res
}

func parseLines(s string) []map[string]any {
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			continue // SNAPSHOT_LOG_FORMAT=text; expect() needs a JSON last line
		}
		lines = append(lines, m)
	}
	return lines
}

// expect fails unless the job exited with code and its last log line
// mentions every one of words.
func expect(t *testing.T, r jobResult, code int, words ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\n%s", r.code, code, r)
	}
	if code == 0 {
		return
	}
	last := r.last()
	if last == nil || last["level"] != "ERROR" {
		t.Fatalf("last log line is not an error: %v\n%s", last, r)
	}
	for _, w := range words {
		if !strings.Contains(r.lastMsg(), w) {
			t.Errorf("last log line %q does not mention %q", r.lastMsg(), w)
		}
	}
}

// running is a job started in the background, for signal tests.
type running struct {
	cmd    *exec.Cmd
	lines  chan map[string]any
	stderr bytes.Buffer
	done   chan struct{}
}

func startJob(t *testing.T, e env, args ...string) *running {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = e.list(t)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, lines: make(chan map[string]any, 1000), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer close(r.lines)
		sc := bufio.NewScanner(io.TeeReader(pipe, &r.stderr))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case r.lines <- m:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return r
}

// waitFor returns once a log line with this message appears.
func (r *running) waitFor(t *testing.T, msg string) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				t.Fatalf("job ended before logging %q:\n%s", msg, r.stderr.String())
			}
			if l["msg"] == msg {
				return
			}
		case <-timeout:
			t.Fatalf("no %q log line in 2 minutes", msg)
		}
	}
}

// signal sends sig and waits for the exit code.
func (r *running) signal(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	sent := time.Now()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	for range r.lines {
	}
	<-r.done
	err := r.cmd.Wait()
	t.Logf("exited %s after %s", sig, time.Since(sent).Round(time.Millisecond))
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// wait waits for the job to end by itself and returns its exit code (-1
// when a signal killed it).
func (r *running) wait(t *testing.T) int {
	t.Helper()
	for range r.lines {
	}
	<-r.done
	err := r.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// storeFiles lists every file under a file store, hidden ones included.
func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// writeBig writes n bytes of poorly compressible data, so that archiving
// at level best takes long enough to be interrupted.
func writeBig(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// podUID is the user the container image runs as (distroless nonroot).
const podUID = 65532

// runJobAs runs the job as podUID when the tests run as root, as it runs
// in a pod. The binary's and the test's directories are made reachable.
func runJobAs(t *testing.T, e env, args ...string) jobResult {
	t.Helper()
	if os.Geteuid() != 0 {
		return runJob(t, e, args...)
	}
	os.Chmod(filepath.Dir(binary), 0o755)
	cmd := exec.Command(binary, args...)
	cmd.Env = e.list(t)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: podUID, Gid: podUID}}
	return runCmd(t, cmd)
}

// reachable opens dir and its parents for other users to traverse, and
// hands dir itself to podUID when writable is set.
func reachable(t *testing.T, dir string, writable bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if writable {
		os.Chown(dir, podUID, podUID)
	}
}
