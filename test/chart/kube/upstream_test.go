package kube

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kubeshark's own values files (test/chart/testdata/upstream), installed as
// they are. The tests add only what their local servers need: the
// endpoint, which a real AWS or Azure account does not.
func upstreamValues(name string) string {
	return filepath.Join(repoRoot(), "test", "chart", "testdata", "upstream", name)
}

// installUpstream installs a Kubeshark values file, checks that the hook
// finds nothing to restore, runs a backup and returns the Job's result.
func installUpstream(t *testing.T, s *scenario, vals ...string) map[string]any {
	t.Helper()
	const full = "snapshots-snapshot-job"
	vol := s.volume(full + "-snapshots")
	s.mustInstall("snapshots", vals...)
	s.wantComplete(full+"-restore-on-install", 0)
	fixture.MakeTree(t, vol)
	s.createJobFrom(full+"-backup", "first")
	s.wantComplete("first", 0)
	return result(t, s.pods.ofJob("first")[0])
}

// TestUpstreamValuesS3: Kubeshark's values-s3.yaml (bucket, region, static
// keys under tap.snapshots.cloud) backs up to that bucket under its prefix.
func TestUpstreamValuesS3(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := fixture.StartVersityGW(t, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "kubeshark-snapshots")
	res := installUpstream(t, s, upstreamValues("values-s3.yaml"),
		fmt.Sprintf("cloud: {s3: {endpoint: %q, forcePathStyle: true}}", gw.Endpoint))
	keys := gw.Keys(t, "kubeshark-snapshots")
	if len(keys) != 1 || keys[0] != res["key"] || !snapshotKey("snapshots/").MatchString(keys[0]) {
		t.Errorf("bucket %q, result %v: want one snapshot under snapshots/", keys, res)
	}
}

// TestUpstreamValuesAzblob: Kubeshark's values-azblob.yaml (account,
// container, shared key) backs up to that container under its prefix.
func TestUpstreamValuesAzblob(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	account := fixture.AzuriteAccount{Name: "kubesharkstore", Key: "c29tZWtleWhlcmU="}
	az := fixture.StartAzurite(t, account)
	az.CreateContainer(t, account, "snapshots")
	res := installUpstream(t, s, upstreamValues("values-azblob.yaml"),
		fmt.Sprintf("cloud: {azblob: {endpoint: %q}}", az.Endpoint(account)))
	blobs := az.Blobs(t, account, "snapshots")
	if len(blobs) != 1 || blobs[0] != res["key"] || !snapshotKey("snapshots/").MatchString(blobs[0]) {
		t.Errorf("container %q, result %v: want one snapshot under snapshots/", blobs, res)
	}
}

// TestUpstreamValuesCloudRefs: Kubeshark's values-cloud-refs.yaml names a
// ConfigMap and a Secret the operator created; the file needs nothing
// else.
func TestUpstreamValuesCloudRefs(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := startS3(t)
	s.mustKubectl("create", "configmap", "my-cloud-config",
		"--from-literal=SNAPSHOT_AWS_BUCKET="+s3Bucket, "--from-literal=SNAPSHOT_AWS_REGION=us-east-1",
		"--from-literal=SNAPSHOT_AWS_ENDPOINT="+gw.Endpoint, "--from-literal=SNAPSHOT_AWS_FORCE_PATH_STYLE=true")
	s.mustKubectl("create", "secret", "generic", "my-cloud-secret",
		"--from-literal=SNAPSHOT_AWS_ACCESS_KEY="+s3Access, "--from-literal=SNAPSHOT_AWS_SECRET_KEY="+s3Secret)
	res := installUpstream(t, s, upstreamValues("values-cloud-refs.yaml"))
	if keys := gw.keys(t); len(keys) != 1 || keys[0] != res["key"] || !snapshotKey("").MatchString(keys[0]) {
		t.Errorf("bucket %q, result %v: want one snapshot", keys, res)
	}
}

// TestMigrationFromKubeshark: next to a Kubeshark install, a release named
// kubeshark references Kubeshark's generated kubeshark-cloud-config and
// kubeshark-cloud-secret and its hub's claim kubeshark-snapshots-pvc. The
// install leaves Kubeshark's objects alone (its own objects are named
// kubeshark-snapshot-job-*), the hook leaves the hub's data alone, and a
// backup stores that data where Kubeshark's settings say.
func TestMigrationFromKubeshark(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	gw := startS3(t)
	ctx := s.ctx()

	// What Kubeshark's chart (release kubeshark) renders for
	// tap.snapshots.cloud with inline values, and its hub's claim
	// (tap.snapshots.local.storageClass set).
	owned := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name, Namespace: s.ns,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "kubeshark", "app.kubernetes.io/name": "kubeshark"},
			Annotations: map[string]string{"meta.helm.sh/release-name": "kubeshark", "meta.helm.sh/release-namespace": s.ns},
		}
	}
	cm, err := cluster.Client.CoreV1().ConfigMaps(s.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: owned("kubeshark-cloud-config"),
		Data:       map[string]string{"SNAPSHOT_CLOUD_PREFIX": "snapshots/", "SNAPSHOT_AWS_BUCKET": s3Bucket, "SNAPSHOT_AWS_REGION": "us-east-1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cluster.Client.CoreV1().Secrets(s.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: owned("kubeshark-cloud-secret"),
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"SNAPSHOT_AWS_ACCESS_KEY": s3Access, "SNAPSHOT_AWS_SECRET_KEY": s3Secret},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := node.ProvisionVolume(ctx, s.ns+"-hub", VolumeOptions{Namespace: s.ns, Claim: "kubeshark-snapshots-pvc", StorageClass: "standard", Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	storageClass := "standard"
	pvcMeta := owned("kubeshark-snapshots-pvc")
	if _, err := cluster.Client.CoreV1().PersistentVolumeClaims(s.ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: pvcMeta,
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &storageClass,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("20Gi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The hub (root) has written snapshots.
	fixture.MakeTree(t, dir)
	hub := fixture.Tree(t, dir, "lost+found")

	// The docs' migration values, plus the local endpoint.
	r := s.mustInstall("kubeshark", fmt.Sprintf(`
cloud:
  provider: s3
  configMaps: [kubeshark-cloud-config]
  secrets: [kubeshark-cloud-secret]
  s3: {endpoint: %q, forcePathStyle: true}
snapshots: {existingClaim: kubeshark-snapshots-pvc}
`, gw.Endpoint))
	const full = "kubeshark-snapshot-job"
	s.wantComplete(full+"-restore-on-install", 0)
	if res := result(t, s.pods.ofJob(full + "-restore-on-install")[0]); res["outcome"] != "skipped: target not empty" {
		t.Errorf("hook result %v, want skipped: the hub's volume has data", res)
	}
	// The kubelet gave the volume to fsGroup on the first mount (group
	// read and write); names, contents and times are the hub's.
	mounted := fixture.Tree(t, dir, "lost+found")
	fixture.CompareTrees(t, modesAside(hub), modesAside(mounted))

	// Kubeshark's objects are untouched; this release's are its own.
	if got, _ := cluster.Client.CoreV1().ConfigMaps(s.ns).Get(ctx, cm.Name, metav1.GetOptions{}); got.ResourceVersion != cm.ResourceVersion || !maps.Equal(got.Data, cm.Data) {
		t.Errorf("helm install changed Kubeshark's %s: %v", cm.Name, got.Data)
	}
	if got, _ := cluster.Client.CoreV1().Secrets(s.ns).Get(ctx, secret.Name, metav1.GetOptions{}); got.ResourceVersion != secret.ResourceVersion {
		t.Errorf("helm install changed Kubeshark's %s", secret.Name)
	}
	for _, m := range regexp.MustCompile(`(?m)^kind: \w+\nmetadata:\n  name: (\S+)`).FindAllStringSubmatch(r.Manifest, -1) {
		if name := m[1]; name != full && !regexp.MustCompile(`^`+full+`-`).MatchString(name) {
			t.Errorf("the release renders %s, not named after %s", name, full)
		}
	}

	s.createJobFrom(full+"-backup", "first")
	s.wantComplete("first", 0)
	res := result(t, s.pods.ofJob("first")[0])
	keys := gw.keys(t)
	if len(keys) != 1 || keys[0] != res["key"] || !snapshotKey("snapshots/").MatchString(keys[0]) {
		t.Fatalf("bucket %q, result %v: want one snapshot under Kubeshark's prefix snapshots/", keys, res)
	}
	d := &deployment{s: s, gw: gw, prefix: "snapshots/"}
	fixture.CompareTrees(t, withoutSetgid(mounted), withoutSetgid(fixture.Tree(t, d.restoreLocally(keys[0]), "lost+found")))
}

// modesAside keeps only the type of each entry's mode.
func modesAside(tree map[string]fixture.Entry) map[string]fixture.Entry {
	out := make(map[string]fixture.Entry, len(tree))
	for k, e := range tree {
		e.Mode = e.Mode.Type()
		out[k] = e
	}
	return out
}
