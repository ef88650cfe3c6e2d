package kube

import (
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestInstallOnEmptyBucket: a first `helm install` with nothing in the
// bucket. The post-install hook Job restores nothing, completes with one
// pod, and the install succeeds; the volume and the bucket are left as
// they were.
func TestInstallOnEmptyBucket(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := startS3(t)
	const rel, full = "backups", "backups-snapshot-job"
	vol := s.volume(full + "-snapshots")
	// lost+found aside: the kubelet gives it to fsGroup on the first mount.
	before := fixture.Tree(t, vol, "lost+found")

	r := s.mustInstall(rel, s3Values(gw.Endpoint, "cluster-a/"))
	if r.Info.Status != release.StatusDeployed {
		t.Fatalf("release status %s, want deployed", r.Info.Status)
	}
	hook := full + "-restore-on-install"
	s.wantComplete(hook, 0)
	pods := s.pods.ofJob(hook)
	if res := result(t, pods[0]); res["verb"] != "restore" || res["outcome"] != "nothing to restore" || res["exit_code"] != 0.0 {
		t.Errorf("hook result %v, want restore / nothing to restore / 0", res)
	}
	// What an operator reads: the pod's log, through the API server.
	logs := s.mustKubectl("logs", "job/"+hook)
	if !strings.Contains(logs, "nothing to restore (SNAPSHOT_RESTORE_IF_MISSING=ok)") {
		t.Errorf("kubectl logs job/%s lacks the nothing-to-restore line:\n%s", hook, logs)
	}
	if keys := gw.keys(t); len(keys) != 0 {
		t.Errorf("bucket holds %q after a restore, want nothing", keys)
	}
	fixture.CompareTrees(t, before, fixture.Tree(t, vol, "lost+found"))

	// The release's objects, as the API server stored them.
	ctx := s.ctx()
	for _, name := range []string{full + "-backup", full + "-restore"} {
		if _, err := cluster.Client.BatchV1().CronJobs(s.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("CronJob %s: %v", name, err)
		}
	}
	if _, err := cluster.Client.CoreV1().ConfigMaps(s.ns).Get(ctx, full+"-cloud-config", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap: %v", err)
	}
	if _, err := cluster.Client.CoreV1().Secrets(s.ns).Get(ctx, full+"-cloud-secret", metav1.GetOptions{}); err != nil {
		t.Errorf("Secret: %v", err)
	}
}

// backupAndUninstall backs the tree up, then uninstalls the release; the
// chart keeps the claim (helm.sh/resource-policy: keep).
func backupAndUninstall(t *testing.T, s *scenario, d *deployment) map[string]fixture.Entry {
	t.Helper()
	tree := d.writeTree()
	d.backup("before-uninstall")
	s.wantComplete("before-uninstall", 0)
	if keys := d.keys(); len(keys) != 1 {
		t.Fatalf("bucket %q, want one snapshot", keys)
	}
	s.uninstall(d.rel)
	if _, err := cluster.Client.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx(), d.full+"-snapshots", metav1.GetOptions{}); err != nil {
		t.Fatalf("the claim did not survive helm uninstall: %v", err)
	}
	return tree
}

// TestReinstallSkipsVolumeWithData: installing again over the kept claim,
// which has data, the hook (SNAPSHOT_RESTORE_IF_NOT_EMPTY=skip) completes
// without touching the volume. The old hook Job is replaced
// (before-hook-creation), so the install does not fail on its name.
func TestReinstallSkipsVolumeWithData(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "re/"})
	tree := backupAndUninstall(t, s, d)

	s.mustInstall(d.rel, s3Values(d.gw.Endpoint, d.prefix))
	hook := d.full + "-restore-on-install"
	s.wantComplete(hook, 0)
	pods := s.pods.ofJob(hook)
	if res := result(t, pods[len(pods)-1]); res["outcome"] != "skipped: target not empty" {
		t.Errorf("hook result %v, want skipped: target not empty", res)
	}
	fixture.CompareTrees(t, tree, fixture.Tree(t, d.vol, "lost+found"))
	if keys := d.keys(); len(keys) != 1 {
		t.Errorf("bucket %q, want the one snapshot", keys)
	}
}

// TestReinstallRestoresIntoEmptyVolume: the volume is lost (the claim and
// its volume deleted, a fresh one provisioned); installing again, the
// hook restores the latest snapshot into it and the trees are equal.
func TestReinstallRestoresIntoEmptyVolume(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "re/"})
	tree := backupAndUninstall(t, s, d)

	ctx := s.ctx()
	pvc, err := cluster.Client.CoreV1().PersistentVolumeClaims(s.ns).Get(ctx, d.full+"-snapshots", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The finished Jobs' pods still name the claim, and the claim stays
	// Terminating until they are gone: Helm leaves the hook Job and the
	// manual Jobs behind on uninstall.
	s.mustKubectl("delete", "jobs", "-l", "app.kubernetes.io/instance="+d.rel, "--cascade=foreground", "--wait=true")
	s.mustKubectl("delete", "pvc", pvc.Name, "--wait=true")
	s.mustKubectl("delete", "pv", pvc.Spec.VolumeName, "--wait=true")
	fresh := s.volume(d.full + "-snapshots")

	s.mustInstall(d.rel, s3Values(d.gw.Endpoint, d.prefix))
	hook := d.full + "-restore-on-install"
	s.wantComplete(hook, 0)
	pods := s.pods.ofJob(hook)
	res := result(t, pods[len(pods)-1])
	if keys := d.keys(); len(keys) != 1 || res["key"] != keys[0] || res["outcome"] != "restored" {
		t.Errorf("hook result %v, bucket %q: want the snapshot restored", res, keys)
	}
	fixture.CompareTrees(t, withoutSetgid(tree), withoutSetgid(fixture.Tree(t, fresh, "lost+found")))
}

// TestInstallFailsAtOnceOnMissingClaim: snapshots.existingClaim names a
// claim that does not exist (the old docs' kubeshark-snapshots; Kubeshark's
// is kubeshark-snapshots-pvc): helm install fails at once and says what
// the claim is called, instead of waiting its whole timeout on a Pending
// hook pod.
func TestInstallFailsAtOnceOnMissingClaim(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := startS3(t)
	_, err := s.install("kubeshark", s3Values(gw.Endpoint, ""), "snapshots: {existingClaim: kubeshark-snapshots}")
	if err == nil || !strings.Contains(err.Error(), `PersistentVolumeClaim "kubeshark-snapshots" does not exist in namespace `+s.ns) ||
		!strings.Contains(err.Error(), "kubeshark-snapshots-pvc") || !strings.Contains(err.Error(), "tap.snapshots.local.storageClass") {
		t.Fatalf("helm install: %v; want the missing-claim error", err)
	}
	jobs, err := cluster.Client.BatchV1().Jobs(s.ns).List(s.ctx(), metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("Jobs %v (%v), want none", jobs, err)
	}
}

// TestInstallFailsAtOnceOnWrongCredentials: the hook's storage access is
// refused (exit 3), so podFailurePolicy fails the hook Job with its one pod
// and helm install reports the failure at once.
func TestInstallFailsAtOnceOnWrongCredentials(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := startS3(t)
	const full = "backups-snapshot-job"
	s.volume(full + "-snapshots")
	_, err := s.install("backups", s3Values(gw.Endpoint, ""), "cloud: {s3: {secretKey: not-the-secret}}")
	if err == nil || !strings.Contains(err.Error(), "job "+full+"-restore-on-install failed: PodFailurePolicy") {
		t.Fatalf("helm install: %v; want the hook's PodFailurePolicy failure", err)
	}
	s.wantFailed(full+"-restore-on-install", "PodFailurePolicy", 3)
	res := result(t, s.pods.ofJob(full + "-restore-on-install")[0])
	if msg, _ := res["error"].(string); strings.Contains(msg, "not-the-secret") {
		t.Errorf("the termination message shows the secret key: %s", msg)
	}
}
