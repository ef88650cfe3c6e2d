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
