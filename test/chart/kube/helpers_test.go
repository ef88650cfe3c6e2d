package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Credentials of the test S3 server.
const (
	s3Access = "k8s-access-key"
	s3Secret = "k8s-secret-key-0123456789"
	s3Bucket = "snapshots"
)

// scenario is one test's namespace and what runs for it.
type scenario struct {
	t  *testing.T
	ns string
	// pods records every pod of the namespace as last seen, deleted ones
	// included.
	pods *podRecorder
}

// nsSeq numbers the scenarios' namespaces.
var nsSeq atomic.Int64

// newScenario creates a namespace that enforces the restricted Pod
// Security Standard, so every pod the chart makes must pass it.
func newScenario(t *testing.T) *scenario {
	t.Helper()
	n := nsSeq.Add(1)
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	name = strings.Trim(name, "-")
	if len(name) > 50 {
		name = name[:50]
	}
	name = fmt.Sprintf("%s-%d", strings.TrimSuffix(name, "-"), n)
	ctx := context.Background()
	_, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, ns: name, pods: recordPods(t, name)}
	t.Cleanup(func() {
		if t.Failed() {
			s.dump()
		}
		// Deleting the namespace deletes its Jobs and pods, which stops
		// their processes.
		_ = cluster.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return s
}

// ctx is a context for one API call or wait.
func (s *scenario) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s.t.Cleanup(cancel)
	return ctx
}

// dump logs the namespace's Jobs and pods, for a failed test.
func (s *scenario) dump() {
	out, _ := s.kubectl("get", "jobs,cronjobs,pods,pvc,configmaps,secrets", "-o", "wide")
	s.t.Logf("objects in %s:\n%s", s.ns, out)
	for _, p := range s.pods.all() {
		var cs []string
		for _, c := range p.Status.ContainerStatuses {
			b, _ := json.Marshal(c.State)
			cs = append(cs, string(b))
		}
		s.t.Logf("pod %s phase %s conditions %v containers %v", p.Name, p.Status.Phase, p.Status.Conditions, cs)
		if log, err := os.ReadFile(filepath.Join(scratch, "pods", string(p.UID), "container.log")); err == nil {
			s.t.Logf("pod %s log:\n%s", p.Name, log)
		}
	}
}

// kubectl runs the real kubectl in the scenario's namespace.
func (s *scenario) kubectl(args ...string) (string, error) {
	return s.kubectlStdin(nil, args...)
}

func (s *scenario) kubectlStdin(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.Kubectl, append([]string{"--namespace", s.ns}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustKubectl is kubectl that fails the test on error.
func (s *scenario) mustKubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectl(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// shell runs a command line as an operator would type it, with the real
// kubectl first on PATH and the scenario's namespace as the default.
func (s *scenario) shell(line string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kubeconfig := filepath.Join(s.t.TempDir(), "kubeconfig")
	raw, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		return "", err
	}
	if out, err := exec.Command(cluster.Kubectl, "--kubeconfig", kubeconfig, "config", "set-context", "--current", "--namespace", s.ns).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", line)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+filepath.Dir(cluster.Kubectl)+":"+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", line, err, stderr.String())
	}
	return stdout.String(), nil
}

// install runs `helm install <release> charts/snapshot-job -n <ns> -f ...`
// through Helm's own install action against the API server, hooks
// included. Each values argument is YAML or, when it names an existing
// file, that file.
func (s *scenario) install(name string, vals ...string) (*release.Release, error) {
	s.t.Helper()
	cfg, settings := s.helm()
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = name, s.ns
	in.Timeout = 3 * time.Minute
	return in.RunWithContext(s.ctx(), s.chart(), s.values(settings, vals))
}

func (s *scenario) mustInstall(name string, vals ...string) *release.Release {
	s.t.Helper()
	rel, err := s.install(name, vals...)
	if err != nil {
		s.t.Fatalf("helm install %s: %v", name, err)
	}
	return rel
}

// uninstall runs `helm uninstall <release>`.
func (s *scenario) uninstall(name string) {
	s.t.Helper()
	cfg, _ := s.helm()
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = true, 2*time.Minute
	if _, err := un.Run(name); err != nil {
		s.t.Fatalf("helm uninstall %s: %v", name, err)
	}
}

func (s *scenario) helm() (*action.Configuration, *cli.EnvSettings) {
	s.t.Helper()
	settings := cli.New()
	settings.KubeConfig = cluster.Kubeconfig
	settings.SetNamespace(s.ns)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), s.ns, "secret", func(format string, v ...any) {}); err != nil {
		s.t.Fatal(err)
	}
	return cfg, settings
}

func (s *scenario) chart() *chart.Chart {
	s.t.Helper()
	c, err := loader.Load(filepath.Join(repoRoot(), "charts", "snapshot-job"))
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *scenario) values(settings *cli.EnvSettings, vals []string) map[string]any {
	s.t.Helper()
	opts := values.Options{}
	for i, v := range vals {
		if _, err := os.Stat(v); err == nil {
			opts.ValueFiles = append(opts.ValueFiles, v)
			continue
		}
		p := filepath.Join(s.t.TempDir(), fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			s.t.Fatal(err)
		}
		opts.ValueFiles = append(opts.ValueFiles, p)
	}
	m, err := opts.MergeValues(getter.All(settings))
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// volume provisions a fresh local volume for a claim of this namespace.
func (s *scenario) volume(claim string) string {
	s.t.Helper()
	dir, err := node.ProvisionVolume(s.ctx(), s.ns+"-"+claim+"-"+strings.ToLower(rand.Text()[:6]), VolumeOptions{
		Namespace: s.ns, Claim: claim, Fresh: true,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return dir
}

// waitJob waits until the Job has finished (Complete or Failed) and
// returns it.
func (s *scenario) waitJob(name string) *batchv1.Job {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for {
		j, err := cluster.Client.BatchV1().Jobs(s.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			s.t.Fatal(err)
		}
		if err == nil && (jobCondition(j, batchv1.JobComplete) != nil || jobCondition(j, batchv1.JobFailed) != nil) {
			return j
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("Job %s has not finished: %v", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func jobCondition(j *batchv1.Job, typ batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if c := j.Status.Conditions[i]; c.Type == typ && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// wantComplete checks that the Job completed with exactly these pod exit
// codes, in creation order.
func (s *scenario) wantComplete(name string, codes ...int32) *batchv1.Job {
	s.t.Helper()
	j := s.waitJob(name)
	if jobCondition(j, batchv1.JobComplete) == nil {
		s.t.Fatalf("Job %s: conditions %+v, want Complete", name, j.Status.Conditions)
	}
	s.wantPodCodes(name, codes...)
	return j
}

// wantFailed checks that the Job failed for this reason with exactly these
// pod exit codes, in creation order.
func (s *scenario) wantFailed(name, reason string, codes ...int32) *batchv1.Job {
	s.t.Helper()
	j := s.waitJob(name)
	c := jobCondition(j, batchv1.JobFailed)
	if c == nil || c.Reason != reason {
		s.t.Fatalf("Job %s: conditions %+v, want Failed with reason %s", name, j.Status.Conditions, reason)
	}
	s.wantPodCodes(name, codes...)
	return j
}

func (s *scenario) wantPodCodes(job string, codes ...int32) {
	s.t.Helper()
	var got []int32
	// The Job controller counts a pod once it is terminal; the recorder
	// may see that last status a moment after the Job's condition.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = got[:0]
		done := true
		for _, p := range s.pods.ofJob(job) {
			code, ok := podExitCode(p)
			done = done && ok
			got = append(got, code)
		}
		if done && slices.Equal(got, codes) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Equal(got, codes) {
		s.t.Errorf("Job %s: pods exited %v, want %v", job, got, codes)
	}
}

func podExitCode(p *corev1.Pod) (int32, bool) {
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Terminated != nil {
			return c.State.Terminated.ExitCode, true
		}
	}
	return -1, false
}

// result parses a pod's termination message, the binary's one-line JSON.
func result(t *testing.T, p *corev1.Pod) map[string]any {
	t.Helper()
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Terminated == nil {
			continue
		}
		msg := strings.TrimSpace(c.State.Terminated.Message)
		var m map[string]any
		if strings.Contains(msg, "\n") || json.Unmarshal([]byte(msg), &m) != nil {
			t.Fatalf("pod %s: termination message %q is not one line of JSON", p.Name, msg)
		}
		return m
	}
	t.Fatalf("pod %s has not terminated", p.Name)
	return nil
}

// createJobFrom runs `kubectl create job --from=cronjob/<cronjob> <name>`.
func (s *scenario) createJobFrom(cronjob, name string) {
	s.t.Helper()
	s.mustKubectl("create", "job", "--from=cronjob/"+cronjob, name)
}

// podRecorder keeps the last state of every pod of a namespace.
type podRecorder struct {
	ns   string
	mu   sync.Mutex
	pods map[string]*corev1.Pod
}

func recordPods(t *testing.T, ns string) *podRecorder {
	r := &podRecorder{ns: ns, pods: map[string]*corev1.Pod{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cluster.Client, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	store := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok {
			r.mu.Lock()
			r.pods[p.Name] = p
			r.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: store, UpdateFunc: func(_, o any) { store(o) }, DeleteFunc: store,
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	return r
}

func (r *podRecorder) all() []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range r.pods {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// ofJob is the pods the Job of that name created, oldest first; when a
// Job of that name was replaced, only the current one's.
func (r *podRecorder) ofJob(job string) []*corev1.Pod {
	var uid string
	if j, err := cluster.Client.BatchV1().Jobs(r.ns).Get(context.Background(), job, metav1.GetOptions{}); err == nil {
		uid = string(j.UID)
	}
	var out []*corev1.Pod
	for _, p := range r.all() {
		if p.Labels[batchv1.JobNameLabel] == job && (uid == "" || p.Labels[batchv1.ControllerUidLabel] == uid) {
			out = append(out, p)
		}
	}
	return out
}

// waitRunning waits until a pod of the Job runs and returns it.
func (s *scenario) waitRunning(job string) *corev1.Pod {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, p := range s.pods.ofJob(job) {
			if p.Status.Phase == corev1.PodRunning {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("no pod of Job %s is running", job)
	return nil
}

// gateway is one test's S3 server.
type gateway struct {
	*fixture.VersityGW
	bucket string
}

func startS3(t *testing.T) *gateway {
	return &gateway{VersityGW: fixture.StartVersityGW(t, s3Access, s3Secret, s3Bucket), bucket: s3Bucket}
}

func (g *gateway) keys(t *testing.T) []string { return g.Keys(t, g.bucket) }

// s3Values are chart values for the test S3 server at endpoint (the
// server itself, or a fault proxy in front of it).
func s3Values(endpoint, prefix string) string {
	return fmt.Sprintf(`
cloud:
  provider: s3
  prefix: %s
  s3: {bucket: %s, region: us-east-1, endpoint: %q, forcePathStyle: true, accessKey: %s, secretKey: %s}
transfer: {partSize: 5MiB}
resources: {limits: {memory: 512Mi}}
`, prefix, s3Bucket, endpoint, s3Access, s3Secret)
}

// snapshotKey matches one snapshot object under prefix.
func snapshotKey(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `snapshot-\d{8}T\d{6}Z\.tar\.zst$`)
}

// nextSecond waits until the wall clock is in a new second, so that two
// backups get different object names (they have a second's resolution).
func nextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now) + 10*time.Millisecond)
}

// deployment is a release installed for a scenario, with its volume and
// its S3 server.
type deployment struct {
	s    *scenario
	rel  string
	full string
	// vol is the directory of the release's snapshot volume.
	vol    string
	gw     *gateway
	proxy  *faultProxy
	prefix string
	rel0   *release.Release
}

type setup struct {
	// proxy puts a fault proxy between the pods and versitygw.
	proxy  bool
	prefix string
	values []string
}

// deploy starts versitygw, provisions the release's volume and installs the
// chart; the post-install hook must complete (nothing to restore).
func (s *scenario) deploy(o setup) *deployment {
	s.t.Helper()
	d := &deployment{s: s, rel: "backups", full: "backups-snapshot-job", gw: startS3(s.t), prefix: o.prefix}
	endpoint := d.gw.Endpoint
	if o.proxy {
		d.proxy = startFaultProxy(s.t, d.gw.Endpoint)
		endpoint = d.proxy.Endpoint
	}
	d.vol = s.volume(d.full + "-snapshots")
	d.rel0 = s.mustInstall(d.rel, append([]string{s3Values(endpoint, o.prefix)}, o.values...)...)
	s.wantComplete(d.full+"-restore-on-install", 0)
	return d
}

// backup runs `kubectl create job --from=cronjob/<fullname>-backup <name>`.
func (d *deployment) backup(name string) { d.s.createJobFrom(d.full+"-backup", name) }

// restore runs `kubectl create job --from=cronjob/<fullname>-restore <name>`.
func (d *deployment) restore(name string) { d.s.createJobFrom(d.full+"-restore", name) }

// createJobWithEnv creates a Job from a CronJob with extra environment the
// way NOTES.txt shows: create --dry-run, set env --local, create.
func (s *scenario) createJobWithEnv(cronjob, name string, env ...string) {
	s.t.Helper()
	line := fmt.Sprintf("kubectl create job --from=cronjob/%s %s --dry-run=client -o yaml | kubectl set env --local -f - %s -o yaml | kubectl create -f -",
		cronjob, name, strings.Join(env, " "))
	if out, err := s.shell(line); err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
}

// keys lists the snapshots in the bucket; every object must be one.
func (d *deployment) keys() []string {
	d.s.t.Helper()
	keys := d.gw.keys(d.s.t)
	re := snapshotKey(d.prefix)
	for _, k := range keys {
		if !re.MatchString(k) {
			d.s.t.Errorf("bucket object %q is not a snapshot under %q", k, d.prefix)
		}
	}
	return keys
}

// noUploads checks that no multipart upload was left open.
func (d *deployment) noUploads() {
	d.s.t.Helper()
	if u := d.gw.Uploads(d.s.t, d.gw.bucket); len(u) != 0 {
		d.s.t.Errorf("multipart uploads left open: %q", u)
	}
}

// runBinary runs the snapshot-job binary on the host against the
// deployment's bucket (versitygw itself, not the proxy).
func (d *deployment) runBinary(env []string, args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{
		"SNAPSHOT_CLOUD_PROVIDER=s3",
		"SNAPSHOT_CLOUD_PREFIX=" + d.prefix,
		"SNAPSHOT_AWS_BUCKET=" + d.gw.bucket,
		"SNAPSHOT_AWS_REGION=us-east-1",
		"SNAPSHOT_AWS_ENDPOINT=" + d.gw.Endpoint,
		"SNAPSHOT_AWS_FORCE_PATH_STYLE=true",
		"SNAPSHOT_AWS_ACCESS_KEY=" + d.gw.Access,
		"SNAPSHOT_AWS_SECRET_KEY=" + d.gw.Secret,
		"SNAPSHOT_TERMINATION_LOG=",
		"HOME=" + d.s.t.TempDir(),
	}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// restoreLocally restores a snapshot into a new directory with the binary
// and returns it.
func (d *deployment) restoreLocally(key string) string {
	d.s.t.Helper()
	dir := d.s.t.TempDir()
	if out, err := d.runBinary([]string{"SNAPSHOT_RESTORE_KEY=" + key, "SNAPSHOT_RESTORE_DIR=" + dir, "SNAPSHOT_SOURCE_DIR=" + dir}, "restore"); err != nil {
		d.s.t.Fatalf("restore %s: %v\n%s", key, err, out)
	}
	return dir
}

// writeTree writes the fixture tree into the volume as another pod (the
// Kubeshark hub, which runs as root) would.
func (d *deployment) writeTree() map[string]fixture.Entry {
	d.s.t.Helper()
	fixture.MakeTree(d.s.t, d.vol)
	return fixture.Tree(d.s.t, d.vol, "lost+found")
}

// notesCommand returns the command NOTES.txt shows under a heading line:
// the indented lines up to the next blank line, continuations joined.
func notesCommand(t *testing.T, notes, heading string) string {
	t.Helper()
	lines := strings.Split(notes, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != heading {
			continue
		}
		var cmd []string
		for _, c := range lines[i+1:] {
			if strings.TrimSpace(c) == "" {
				break
			}
			cmd = append(cmd, strings.TrimSpace(c))
		}
		return strings.ReplaceAll(strings.Join(cmd, "\n"), "\\\n", " ")
	}
	t.Fatalf("NOTES.txt has no %q:\n%s", heading, notes)
	return ""
}

// runNotes runs a command from NOTES.txt with its placeholders replaced.
func (s *scenario) runNotes(cmd string, replace map[string]string) string {
	s.t.Helper()
	for k, v := range replace {
		if !strings.Contains(cmd, k) {
			s.t.Fatalf("NOTES command lacks %s: %s", k, cmd)
		}
		cmd = strings.ReplaceAll(cmd, k, v)
	}
	out, err := s.shell(cmd)
	if err != nil {
		s.t.Fatalf("NOTES command: %v\n%s", err, out)
	}
	return out
}

// chownTree gives the volume's tree (lost+found aside) to uid, as if that
// user had written it, and returns it.
func (d *deployment) chownTree(uid int) map[string]fixture.Entry {
	d.s.t.Helper()
	err := filepath.WalkDir(d.vol, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == d.vol {
			return err
		}
		if e.Name() == "lost+found" && filepath.Dir(p) == d.vol {
			return filepath.SkipDir
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		d.s.t.Fatal(err)
	}
	return fixture.Tree(d.s.t, d.vol, "lost+found")
}

// withoutSetgid drops the setgid bit of directories, which the kubelet's
// fsGroup handling adds and a tar archive does not carry.
func withoutSetgid(tree map[string]fixture.Entry) map[string]fixture.Entry {
	out := make(map[string]fixture.Entry, len(tree))
	for k, e := range tree {
		if e.Mode.IsDir() {
			e.Mode &^= fs.ModeSetgid
		}
		out[k] = e
	}
	return out
}

// firstPodExit waits until the Job's first pod has ended and returns its
// exit code.
func (s *scenario) firstPodExit(job string) int32 {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if pods := s.pods.ofJob(job); len(pods) > 0 {
			if code, done := podExitCode(pods[0]); done {
				return code
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("the first pod of Job %s has not ended", job)
	return -1
}
