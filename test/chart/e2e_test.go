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
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
	"github.com/snapshot-job/snapshot-job/test/chart/podcontract"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	vgwAccess = "e2e-access-key"
	vgwSecret = "e2e-secret-key-0123456789"
	vgwBucket = "snapshots-e2e"
)

// The development account's container for the azblob run.
const azuriteContainer = "snapshots-e2e"

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
`, prefix, fixture.DevStoreAccount.Name, azuriteContainer, fixture.DevStoreAccount.Key, endpoint) + common
	}
	panic("provider " + provider)
}

// backupThenRestore is the scenario both providers run.
func backupThenRestore(t *testing.T, provider, endpoint string, listObjects func() []string) {
	bin := fixture.BuildBinary(t, t.TempDir())
	r := render(t, e2eValues(provider, endpoint, "e2e/"))
	backupPod := r.CronJobs[fullname+"-backup"].Spec.JobTemplate.Spec.Template
	hookPod := r.Jobs[fullname+"-restore-on-install"].Spec.Template
	manualPod := r.CronJobs[fullname+"-restore"].Spec.JobTemplate.Spec.Template
	src := t.TempDir()
	fixture.MakeTree(t, src)
	// A first install with nothing in the bucket: the hook succeeds.
	empty := t.TempDir()
	if run := runPod(t, r, hookPod, bin, empty); run.ExitCode != 0 {
		t.Fatalf("hook on an empty bucket exited %d, want 0 (SNAPSHOT_RESTORE_IF_MISSING=ok)", run.ExitCode)
	}

	before := fixture.Tree(t, src)
	run := runPod(t, r, backupPod, bin, src)
	if run.ExitCode != 0 {
		t.Fatalf("backup exited %d, want 0", run.ExitCode)
	}
	terminationResult(t, run)
	if after := fixture.Tree(t, src); !maps.Equal(before, after) {
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
	fixture.CompareTrees(t, fixture.Tree(t, src), fixture.Tree(t, dst))

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
	gw := fixture.StartVersityGW(t, vgwAccess, vgwSecret, vgwBucket)
	backupThenRestore(t, "s3", gw.Endpoint, func() []string { return gw.Keys(t, vgwBucket) })
}

func TestEndToEndAzblob(t *testing.T) {
	az := fixture.StartAzurite(t)
	az.CreateContainer(t, fixture.DevStoreAccount, azuriteContainer)
	endpoint := az.Endpoint(fixture.DevStoreAccount)
	if blobs := az.Blobs(t, fixture.DevStoreAccount, azuriteContainer); len(blobs) != 0 {
		t.Fatalf("fresh container holds %q", blobs)
	}
	backupThenRestore(t, "azblob", endpoint, func() []string {
		return az.Blobs(t, fixture.DevStoreAccount, azuriteContainer)
	})
}
