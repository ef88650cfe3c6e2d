package chart

// End-to-end test of the pod contract, without a cluster: render the chart,
// take the backup CronJob's and the post-install hook's pod specs, build
// each container's process as the kubelet would (podcontract), and run the
// real snapshot-job binary that way against a real S3 server (versitygw) and
// a real Azure Blob server (Azurite): the CronJob backs up a tree, the hook
// restores it into an empty volume, and the trees must match.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/test/chart/podcontract"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	vgwAccess = "e2e-access-key"
	vgwSecret = "e2e-secret-key-0123456789"
	vgwBucket = "snapshots-e2e"

	// Azurite's well-known development account.
	azuriteAccount   = "devstoreaccount1"
	azuriteKey       = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	azuriteContainer = "snapshots-e2e"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// repoTool returns a pinned tool, failing (never skipping) when it is
// missing: `make chart-test` installs it.
func repoTool(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make tools` (make chart-test does it)", rel)
	}
	return p
}

// snapshotJobBinary builds ./cmd/snapshot-job as the Dockerfile does, or
// returns "" when the package is not there yet.
func snapshotJobBinary(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "snapshot-job")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=e2e -X main.commit=e2e", "-o", bin, "./cmd/snapshot-job")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/snapshot-job: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startServer runs a test server until the test ends and waits until addr
// accepts connections.
func startServer(t testing.TB, addr string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", filepath.Base(name), err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("%s exited early:\n%s", filepath.Base(name), out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 30s:\n%s", filepath.Base(name), addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startVersityGW serves a posix directory over S3; a bucket is a directory
// under it. It returns the endpoint and the bucket's directory.
func startVersityGW(t testing.TB) (endpoint, bucketDir string) {
	t.Helper()
	vgw := repoTool(t, filepath.Join(".tools", "bin", "versitygw"))
	root := t.TempDir()
	bucketDir = filepath.Join(root, vgwBucket)
	if err := os.Mkdir(bucketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startServer(t, addr, vgw, "--access", vgwAccess, "--secret", vgwSecret, "--port", addr, "--quiet", "posix", root)
	return "http://" + addr, bucketDir
}

// startAzurite serves Blob storage in memory and creates the container.
func startAzurite(t testing.TB) (endpoint string) {
	t.Helper()
	azurite := repoTool(t, filepath.Join("tools", "azurite", "node_modules", ".bin", "azurite-blob"))
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	startServer(t, addr, azurite, "--blobHost", host, "--blobPort", port, "--inMemoryPersistence",
		"--silent", "--skipApiVersionCheck")
	endpoint = "http://" + addr + "/" + azuriteAccount
	createAzureContainer(t, endpoint, azuriteContainer)
	return endpoint
}

// azureRequest sends one Shared Key signed request to Azurite
// (learn.microsoft.com: "Authorize with Shared Key"); an SDK for the two
// calls the test needs would weigh more than this.
func azureRequest(t testing.TB, method, endpoint, path string, query url.Values) (int, []byte) {
	t.Helper()
	u := endpoint + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	const version = "2021-12-02"
	date := time.Now().UTC().Format(http.TimeFormat)
	req.Header.Set("x-ms-date", date)
	req.Header.Set("x-ms-version", version)
	// VERB, 11 standard headers (all empty; a zero Content-Length is
	// empty), the x-ms- headers, then the resource with its query
	// parameters sorted, one per line.
	toSign := method + "\n" + strings.Repeat("\n", 11) +
		"x-ms-date:" + date + "\nx-ms-version:" + version + "\n" +
		"/" + azuriteAccount + req.URL.Path
	names := make([]string, 0, len(query))
	for k := range query {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		toSign += "\n" + strings.ToLower(k) + ":" + strings.Join(query[k], ",")
	}
	key, err := base64.StdEncoding.DecodeString(azuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(toSign))
	req.Header.Set("Authorization", "SharedKey "+azuriteAccount+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

func createAzureContainer(t testing.TB, endpoint, container string) {
	t.Helper()
	if code, body := azureRequest(t, http.MethodPut, endpoint, "/"+container, url.Values{"restype": {"container"}}); code != http.StatusCreated {
		t.Fatalf("create container %s: HTTP %d\n%s", container, code, body)
	}
}

func listAzureBlobs(t testing.TB, endpoint, container string) []string {
	t.Helper()
	code, body := azureRequest(t, http.MethodGet, endpoint, "/"+container, url.Values{"restype": {"container"}, "comp": {"list"}})
	if code != http.StatusOK {
		t.Fatalf("list blobs: HTTP %d\n%s", code, body)
	}
	var res struct {
		Blobs []string `xml:"Blobs>Blob>Name"`
	}
	if err := xml.Unmarshal(body, &res); err != nil {
		t.Fatalf("list blobs: %v\n%s", err, body)
	}
	return res.Blobs
}

// podRun is one run of a rendered pod's container.
type podRun struct {
	ExitCode int
	Output   string
	// Termination is what the container wrote to its terminationMessagePath.
	Termination string
}

// runPod runs the container of a rendered pod template as the kubelet would
// start it, with the snapshots volume at snapshotsDir. bin stands in for the
// image's ENTRYPOINT.
func runPod(t *testing.T, r *Rendered, pt corev1.PodTemplateSpec, bin, snapshotsDir string) podRun {
	t.Helper()
	p := buildProcess(t, r, pt, bin, snapshotsDir)
	termLog := p.terminationLog
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := p.Cmd(ctx)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	run := podRun{Output: out.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		run.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("run %q: %v", p.HostArgv, err)
	}
	if b, err := os.ReadFile(termLog); err == nil {
		run.Termination = string(b)
	}
	t.Logf("%s exited %d\ntermination message: %s\noutput:\n%s", strings.Join(p.Argv, " "), run.ExitCode, run.Termination, run.Output)
	return run
}

type process struct {
	*podcontract.Process
	terminationLog string
}

// imageEntrypoint is the Dockerfile's ENTRYPOINT.
const imageEntrypoint = "/usr/local/bin/snapshot-job"

func buildProcess(t *testing.T, r *Rendered, pt corev1.PodTemplateSpec, bin, snapshotsDir string) process {
	t.Helper()
	c := theContainer(t, pt)
	scratch := t.TempDir()
	home := filepath.Join(scratch, "home")
	tmp := filepath.Join(scratch, "tmp")
	termLog := filepath.Join(scratch, "termination-log")
	for _, d := range []string{home, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := podcontract.Build(podcontract.Input{
		Pod: podcontract.Pod{
			Meta: pt.ObjectMeta, Spec: pt.Spec, NodeName: "node-1",
			// What GOMEMLIMIT reads when no memory limit is set.
			NodeAllocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")},
		},
		Container: c.Name,
		Image: podcontract.Image{
			Entrypoint: []string{imageEntrypoint},
			// distroless/static's config sets PATH and SSL_CERT_FILE; the
			// runtime sets HOME from /etc/passwd (/home/nonroot), here an
			// empty directory so no host credentials are found.
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
				"HOME=" + home,
			},
			// distroless nonroot's WorkingDir is /home/nonroot: a scratch
			// directory, never the test's working directory in the repo.
			WorkingDir: home,
		},
		ConfigMaps:     r.ConfigMaps,
		Secrets:        r.Secrets,
		Volumes:        map[string]string{"snapshots": snapshotsDir, "tmp": tmp},
		TerminationLog: termLog,
	})
	if err != nil {
		t.Fatalf("pod contract: %v", err)
	}
	// The binary is the image ENTRYPOINT and takes the verb as its only
	// argument.
	if len(p.Argv) != 2 || p.Argv[0] != imageEntrypoint {
		t.Fatalf("argv %q: want [entrypoint verb]", p.Argv)
	}
	// The entrypoint and working directory are the image's own files, not
	// in any volume: the runtime finds them in the image's root
	// filesystem, here the test's build and scratch directories (which,
	// living under /tmp, must not be mistaken for the pod's /tmp mount).
	p.HostArgv[0] = bin
	p.Dir = home
	return process{Process: p, terminationLog: termLog}
}

// makeTree writes a tree with the shapes a snapshot volume has: nested
// per-node folders, a multi-part-sized pcap-like file, JSON logs, an empty
// file and directory, a symlink, unusual names and modes.
func makeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Incompressible and larger than two 5 MiB parts (transfer.partSize in
	// e2eValues), so the upload has several parts.
	big := make([]byte, 12<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"node-a/capture-0001.pcap":   big,
		"node-a/logs/app.json":       []byte(`{"level":"info","msg":"hello"}` + "\n"),
		"node-b/logs/app.json":       bytes.Repeat([]byte(`{"n":1}`+"\n"), 10000),
		"node-b/empty.log":           nil,
		"weird names/ä ö ü (1).json": []byte("{}"),
		"top.txt":                    []byte("top"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "top.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "node-c", "empty-dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("node-a/logs/app.json", filepath.Join(dir, "latest.json")); err != nil {
		t.Fatal(err)
	}
	// Times in the past, on whole seconds, so a restore that sets them can
	// be told from one that does not.
	past := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			_ = os.Chtimes(p, past, past)
		}
		return err
	})
	return dir
}

// treeEntry describes one path for comparison.
type treeEntry struct {
	Mode   fs.FileMode
	Data   string // content hash or link target
	MTime  int64
	IsLink bool
}

func tree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := treeEntry{Mode: info.Mode()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Data, e.IsLink = target, true
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.Data = fmt.Sprintf("%x", sum)
			e.MTime = info.ModTime().Unix()
		default:
			e.MTime = info.ModTime().Unix()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := tree(t, want), tree(t, got)
	for _, p := range slices.Sorted(maps.Keys(w)) {
		ge, ok := g[p]
		if !ok {
			t.Errorf("restore lacks %s", p)
			continue
		}
		// Directory mtimes change as entries are created; files' must not.
		we := w[p]
		if we.Mode.IsDir() {
			we.MTime, ge.MTime = 0, 0
		}
		if ge != we {
			t.Errorf("%s: restored %+v, want %+v", p, ge, we)
		}
	}
	for p := range g {
		// The restore's volume lock stays in its target, by design.
		if _, ok := w[p]; !ok && p != ".snapshot-job-lock" {
			t.Errorf("restore has extra %s", p)
		}
	}
}

// terminationResult checks the one-line JSON result and returns it.
func terminationResult(t *testing.T, run podRun) map[string]any {
	t.Helper()
	msg := strings.TrimSpace(run.Termination)
	if msg == "" || strings.Contains(msg, "\n") {
		t.Fatalf("termination message %q: want one line of JSON", run.Termination)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		t.Fatalf("termination message is not JSON: %v: %q", err, msg)
	}
	return m
}

// e2eValues returns the chart values for a provider served on 127.0.0.1.
func e2eValues(provider, endpoint, prefix string) string {
	common := "\nresources: {limits: {memory: 512Mi}}\ntransfer: {partSize: 5MiB}\nlog: {format: json, level: debug}\n"
	switch provider {
	case "s3":
		return fmt.Sprintf(`
cloud:
  provider: s3
  prefix: %s
  s3: {bucket: %s, region: us-east-1, endpoint: %q, forcePathStyle: true, accessKey: %s, secretKey: %s}
`, prefix, vgwBucket, endpoint, vgwAccess, vgwSecret) + common
	case "azblob":
		return fmt.Sprintf(`
cloud:
  provider: azblob
  prefix: %s
  azblob: {storageAccount: %s, container: %s, storageKey: %q, endpoint: %q}
`, prefix, azuriteAccount, azuriteContainer, azuriteKey, endpoint) + common
	}
	panic("provider " + provider)
}

// backupThenRestore is the scenario both providers run.
func backupThenRestore(t *testing.T, provider, endpoint string, listObjects func() []string) {
	bin := snapshotJobBinary(t)
	r := render(t, e2eValues(provider, endpoint, "e2e/"))
	backupPod := r.CronJobs[releaseName+"-backup"].Spec.JobTemplate.Spec.Template
	hookPod := r.Jobs[releaseName+"-restore-on-install"].Spec.Template
	manualPod := r.CronJobs[releaseName+"-restore"].Spec.JobTemplate.Spec.Template
	src := makeTree(t)
	// A first install with nothing in the bucket: the hook succeeds.
	empty := t.TempDir()
	if run := runPod(t, r, hookPod, bin, empty); run.ExitCode != 0 {
		t.Fatalf("hook on an empty bucket exited %d, want 0 (SNAPSHOT_RESTORE_IF_MISSING=ok)", run.ExitCode)
	}

	before := tree(t, src)
	run := runPod(t, r, backupPod, bin, src)
	if run.ExitCode != 0 {
		t.Fatalf("backup exited %d, want 0", run.ExitCode)
	}
	terminationResult(t, run)
	if after := tree(t, src); !maps.Equal(before, after) {
		t.Errorf("backup changed its source volume")
	}
	keys := listObjects()
	if len(keys) != 1 || !regexp.MustCompile(`^e2e/snapshot-\d{8}T\d{6}Z\.tar\.zst$`).MatchString(keys[0]) {
		t.Fatalf("objects after backup: %q, want one e2e/snapshot-<UTC time>.tar.zst", keys)
	}

	// The hook restores into an empty volume.
	dst := t.TempDir()
	run = runPod(t, r, hookPod, bin, dst)
	if run.ExitCode != 0 {
		t.Fatalf("hook restore exited %d, want 0", run.ExitCode)
	}
	terminationResult(t, run)
	compareTrees(t, src, dst)

	// Run again on the volume that now has data: the hook skips it, a
	// manual restore refuses (SNAPSHOT_RESTORE_IF_NOT_EMPTY=fail, exit 8).
	marker := filepath.Join(dst, "written-after-restore")
	if err := os.WriteFile(marker, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if run := runPod(t, r, hookPod, bin, dst); run.ExitCode != 0 {
		t.Errorf("hook on a volume with data exited %d, want 0 (skip)", run.ExitCode)
	}
	if run := runPod(t, r, manualPod, bin, dst); run.ExitCode != 8 {
		t.Errorf("manual restore on a volume with data exited %d, want 8", run.ExitCode)
	} else {
		terminationResult(t, run)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "keep me" {
		t.Errorf("a refused or skipped restore touched the volume: %q, %v", b, err)
	}
}

func TestEndToEndS3(t *testing.T) {
	endpoint, bucketDir := startVersityGW(t)
	backupThenRestore(t, "s3", endpoint, func() []string {
		// The posix backend keeps objects as files under the bucket's
		// directory; its own metadata lives in dot-directories.
		var keys []string
		_ = filepath.WalkDir(bucketDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				rel, _ := filepath.Rel(bucketDir, p)
				keys = append(keys, filepath.ToSlash(rel))
			}
			return nil
		})
		return keys
	})
}

func TestEndToEndAzblob(t *testing.T) {
	endpoint := startAzurite(t)
	if blobs := listAzureBlobs(t, endpoint, azuriteContainer); len(blobs) != 0 {
		t.Fatalf("fresh container holds %q", blobs)
	}
	backupThenRestore(t, "azblob", endpoint, func() []string {
		return listAzureBlobs(t, endpoint, azuriteContainer)
	})
}
