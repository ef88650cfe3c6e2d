package kube

// The node stand-in: what a kubelet and a container runtime would do for
// the chart's pods, with each container run as a local process of the
// image's binary.
//
// What it does as the kubelet does:
//   - registers a Node (Ready, addresses, allocatable, the kubelet port) and
//     binds pending pods to itself when their claims are bound and their
//     nodeSelector matches (there is no scheduler); otherwise it marks them
//     Unschedulable as the scheduler would and leaves them Pending;
//   - builds the container's environment from the ConfigMaps and Secrets
//     read from the API (envFrom in order, then env, $(VAR) expansion, the
//     downward API's fieldRef and resourceFieldRef: podcontract); a missing
//     reference keeps the container Waiting in CreateContainerConfigError
//     and is retried, as the kubelet does;
//   - maps each volume to a directory: a PersistentVolumeClaim to its bound
//     PersistentVolume's local or hostPath path, an emptyDir to a fresh
//     directory per pod; applies fsGroup (and fsGroupChangePolicy) to
//     PersistentVolume (local) and emptyDir volumes as the kubelet's
//     SetVolumeOwnership does, and not to hostPath ones;
//   - runs the process as the security context's user, group, fsGroup and
//     supplemental groups (the image's user when none is set) and refuses a
//     root user under runAsNonRoot;
//   - creates the termination message file (mode 0666) and reports the
//     container's exit code, reason (Completed, Error, StartError) and
//     message (the file, at most 4096 bytes; with FallbackToLogsOnError and
//     an empty file after a failure, the last 80 lines and 2048 bytes of the
//     log) and the pod's phase;
//   - on deletion sends SIGTERM, SIGKILL after the grace period, reports the
//     result and then deletes the pod for good;
//   - serves the container logs on the kubelet port, so `kubectl logs` works.
//
// What it cannot do (the process runs on the host): enforce a read-only
// root filesystem or read-only mounts, drop capabilities beyond what a
// non-root user lacks anyway, set no_new_privs, seccomp or AppArmor
// profiles, namespaces, cgroups and resource limits (memory limits reach
// the process only through GOMEMLIMIT's resourceFieldRef), pull images
// (each image repository maps to a local binary), run init or several
// containers, restart containers (restartPolicy Never only), or mount
// volume types other than PersistentVolumeClaim and emptyDir. Affinity
// rules and tolerations are not evaluated.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snapshot-job/snapshot-job/test/chart/podcontract"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// imageHome is the home and working directory of the image's user (the
// distroless nonroot user's); each pod gets its own empty one.
const imageHome = "/home/nonroot"

// Image is how the stand-in runs an image: its config as a runtime would
// read it, with Binary standing in for the file Entrypoint[0] names.
type Image struct {
	Binary     string
	Entrypoint []string
	Cmd        []string
	// Env is the image's ENV (KEY=VALUE); HOME and the working directory
	// are given a fresh directory per pod, standing in for the image's own.
	Env []string
	// User and Group are the image's USER.
	User, Group int64
}

// NodeOptions configures a node stand-in.
type NodeOptions struct {
	Name string
	// Dir holds the pods' directories. The processes run as other users,
	// so it must be traversable by everyone (it is made 0755).
	Dir string
	// Images maps an image repository (the reference without tag or
	// digest) to how it runs.
	Images map[string]Image
	// Allocatable is what the node offers; resourceFieldRef reads it for
	// limits a container does not set.
	Allocatable corev1.ResourceList
	Labels      map[string]string
}

// Node is a running stand-in.
type Node struct {
	client kubernetes.Interface
	opts   NodeOptions
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   cache.Indexer
	cancel context.CancelFunc
	wg     sync.WaitGroup
	logs   *http.Server

	mu   sync.Mutex
	runs map[types.UID]*podRun
	// logFiles maps namespace/pod/container to the container's log.
	logFiles map[string]*podRun
}

// Termination message limits, as the kubelet has them.
const (
	maxTerminationMessage    = 4096
	maxFallbackLogBytes      = 2048
	maxFallbackLogLines      = 80
	configErrorRetryInterval = time.Second
)

// StartNode registers the node and starts running the pods bound to it.
func StartNode(ctx context.Context, client kubernetes.Interface, opts NodeOptions) (*Node, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{
		client:   client,
		opts:     opts,
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		runs:     map[types.UID]*podRun{},
		logFiles: map[string]*podRun{},
	}
	port, err := n.serveLogs()
	if err != nil {
		return nil, err
	}
	if err := n.register(ctx, port); err != nil {
		_ = n.logs.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Core().V1().Pods().Informer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			n.queue.Add(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		cancel()
		return nil, err
	}
	n.pods = informer.GetIndexer()
	factory.Start(runCtx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("node stand-in: %v informer did not sync", typ)
		}
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for n.processNext(runCtx) {
		}
	}()
	go func() { <-runCtx.Done(); n.queue.ShutDown() }()
	return n, nil
}

// Stop kills every process still running and stops watching.
func (n *Node) Stop() {
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	runs := make([]*podRun, 0, len(n.runs))
	for _, r := range n.runs {
		runs = append(runs, r)
	}
	n.mu.Unlock()
	for _, r := range runs {
		r.kill()
		<-r.done
	}
	_ = n.logs.Close()
}

func (n *Node) register(ctx context.Context, kubeletPort int) error {
	labels := map[string]string{
		"kubernetes.io/hostname": n.opts.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	for k, v := range n.opts.Labels {
		labels[k] = v
	}
	node, err := n.client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.opts.Name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	capacity := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")}
	for k, v := range n.opts.Allocatable {
		capacity[k] = v
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "node stand-in is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: n.opts.Name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "standin://1", KubeletVersion: "v0.0.0-standin",
		},
	}
	if node, err = n.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	// The TaintNodesByCondition admission plugin taints a new node
	// not-ready; the node lifecycle controller (not run) would lift it once
	// the node reports Ready.
	node.Spec.Taints = nil
	if _, err = n.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node taints: %w", err)
	}
	return nil
}

func (n *Node) processNext(ctx context.Context) bool {
	key, quit := n.queue.Get()
	if quit {
		return false
	}
	defer n.queue.Done(key)
	retryAfter, err := n.sync(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		n.queue.AddRateLimited(key)
	case retryAfter > 0:
		n.queue.Forget(key)
		n.queue.AddAfter(key, retryAfter)
	default:
		n.queue.Forget(key)
	}
	return true
}

// sync moves one pod on: bind it, start it, or stop it.
func (n *Node) sync(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := n.pods.GetByKey(key)
	if err != nil {
		return 0, err
	}
	if !exists {
		// Gone from the API (force-deleted, or deleted by us after it
		// ended): nothing may keep running for it.
		n.mu.Lock()
		var gone []*podRun
		for uid, r := range n.runs {
			if r.key == key {
				gone = append(gone, r)
				delete(n.runs, uid)
			}
		}
		n.mu.Unlock()
		for _, r := range gone {
			r.kill()
		}
		return 0, nil
	}
	pod := obj.(*corev1.Pod)
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp != nil {
			return 0, nil
		}
		return n.schedule(ctx, pod)
	}
	if pod.Spec.NodeName != n.opts.Name {
		return 0, nil
	}

	n.mu.Lock()
	r := n.runs[pod.UID]
	if r == nil && pod.DeletionTimestamp == nil && !terminal(pod) {
		r = newPodRun(n, pod)
		n.runs[pod.UID] = r
		n.wg.Add(1)
		go func() { defer n.wg.Done(); r.run(ctx) }()
	}
	n.mu.Unlock()

	if pod.DeletionTimestamp == nil {
		return 0, nil
	}
	if r != nil {
		r.terminate(pod.DeletionGracePeriodSeconds)
		select {
		case <-r.done:
		default:
			// run() enqueues the pod again once it has ended.
			return 0, nil
		}
	}
	// Terminal (or never started) and being deleted: the kubelet removes
	// it from the API once its containers have stopped.
	err = n.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		err = nil
	}
	return 0, err
}

func terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// schedule binds a pod to this node when it fits, as the scheduler would;
// otherwise it records why not and tries again later.
func (n *Node) schedule(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	reason := n.unschedulable(ctx, pod)
	if reason != "" {
		err := n.setPodCondition(ctx, pod, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/1 nodes are available: " + reason + ".",
		})
		return time.Second, err
	}
	err := n.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: n.opts.Name},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return 0, nil
	}
	return 0, err
}

func (n *Node) unschedulable(ctx context.Context, pod *corev1.Pod) string {
	for k, v := range pod.Spec.NodeSelector {
		if n.nodeLabel(k) != v {
			return "1 node(s) didn't match Pod's node affinity/selector"
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := n.client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("persistentvolumeclaim %q not found", v.PersistentVolumeClaim.ClaimName)
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			return "pod has unbound immediate PersistentVolumeClaims"
		}
	}
	return ""
}

func (n *Node) nodeLabel(k string) string {
	switch k {
	case "kubernetes.io/hostname":
		return n.opts.Name
	case "kubernetes.io/os":
		return "linux"
	case "kubernetes.io/arch":
		return "amd64"
	}
	return n.opts.Labels[k]
}

func (n *Node) setPodCondition(ctx context.Context, pod *corev1.Pod, c corev1.PodCondition) error {
	for _, old := range pod.Status.Conditions {
		if old.Type == c.Type && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return nil
		}
	}
	return n.updateStatus(ctx, pod, func(s *corev1.PodStatus) { setCondition(s, c) })
}

func setCondition(s *corev1.PodStatus, c corev1.PodCondition) {
	c.LastTransitionTime = metav1.Now()
	for i := range s.Conditions {
		if s.Conditions[i].Type == c.Type {
			if s.Conditions[i].Status == c.Status {
				c.LastTransitionTime = s.Conditions[i].LastTransitionTime
			}
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

var errPodReplaced = errors.New("pod was replaced")

// updateStatus applies mutate to the pod's current status, retrying on
// conflicts (the Job controller edits the pod's finalizers meanwhile).
func (n *Node) updateStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.PodStatus)) error {
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := n.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return errPodReplaced
		}
		mutate(&cur.Status)
		_, err = n.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) || errors.Is(err, errPodReplaced) {
		return nil
	}
	return err
}

// podRun is one pod's container, from preparation to its end.
type podRun struct {
	n    *Node
	key  string
	pod  *corev1.Pod
	dir  string
	log  string
	done chan struct{}

	mu        sync.Mutex
	cmd       *exec.Cmd
	stopping  bool
	killed    bool
	stopCh    chan struct{}
	graceTill time.Time
}

func newPodRun(n *Node, pod *corev1.Pod) *podRun {
	dir := filepath.Join(n.opts.Dir, "pods", string(pod.UID))
	return &podRun{
		n: n, key: pod.Namespace + "/" + pod.Name, pod: pod.DeepCopy(), dir: dir,
		log:    filepath.Join(dir, "container.log"),
		done:   make(chan struct{}),
		stopCh: make(chan struct{}),
	}
}

// terminate asks the container to stop, as a pod deletion does.
func (r *podRun) terminate(grace *int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return
	}
	r.stopping = true
	g := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if grace != nil {
		g = *grace
	}
	r.graceTill = time.Now().Add(time.Duration(g) * time.Second)
	close(r.stopCh)
}

// kill stops the container at once (its pod is gone, or the node stops).
func (r *podRun) kill() {
	r.terminate(new(int64))
	r.mu.Lock()
	r.killed = true
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
	}
	r.mu.Unlock()
}

func (r *podRun) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

func (r *podRun) run(ctx context.Context) {
	defer func() {
		close(r.done)
		r.n.queue.Add(r.key)
	}()
	c := r.pod.Spec.Containers[0]
	var started *process
	for {
		p, waiting, err := r.prepare(ctx)
		if err != nil && ctx.Err() != nil {
			return
		}
		if err == nil && waiting == nil {
			started = p
			break
		}
		if waiting != nil {
			// A reference not there yet: the kubelet keeps the container
			// waiting and tries again.
			_ = r.n.updateStatus(ctx, r.pod, func(s *corev1.PodStatus) {
				r.baseStatus(s)
				s.Phase = corev1.PodPending
				s.ContainerStatuses = []corev1.ContainerStatus{{
					Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: waiting},
				}}
			})
		}
		select {
		case <-r.stopCh:
			return
		case <-ctx.Done():
			return
		case <-time.After(configErrorRetryInterval):
		}
	}
	if started.startError != "" {
		r.finish(ctx, started, nil, 128, "StartError", started.startError)
		return
	}
	r.start(ctx, started)
}

// process is a prepared container.
type process struct {
	argv       []string
	env        []string
	dir        string
	cred       *syscall.Credential
	termLog    string
	emptyDirs  []string
	startError string
}

// prepare resolves everything the container needs. A non-nil waiting
// state means the container cannot be created yet.
func (r *podRun) prepare(ctx context.Context) (*process, *corev1.ContainerStateWaiting, error) {
	pod := r.pod
	if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 0 {
		return nil, &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: "the node stand-in runs pods with exactly one container"}, nil
	}
	c := pod.Spec.Containers[0]
	img, ok := r.n.opts.Images[imageRepository(c.Image)]
	if !ok {
		return nil, &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: fmt.Sprintf("image %q is not known to the node stand-in", c.Image)}, nil
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, nil, err
	}

	cms, secrets, err := r.references(ctx, &c)
	if err != nil {
		return nil, nil, err
	}
	cred, msg := credential(pod, &c, img)
	if msg != "" {
		return nil, &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: msg}, nil
	}

	p := &process{cred: cred}
	volumes := map[string]string{}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = true
	}
	for _, v := range pod.Spec.Volumes {
		if !mounted[v.Name] {
			continue
		}
		dir, fsGroupApplies, waiting, err := r.volume(ctx, v)
		if err != nil || waiting != nil {
			return nil, waiting, err
		}
		if v.EmptyDir != nil {
			p.emptyDirs = append(p.emptyDirs, dir)
		}
		if fsGroupApplies && pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.FSGroup != nil {
			readOnly := v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly
			if err := SetVolumeOwnership(dir, *pod.Spec.SecurityContext.FSGroup, readOnly, pod.Spec.SecurityContext.FSGroupChangePolicy); err != nil {
				return nil, nil, fmt.Errorf("fsGroup on volume %s: %w", v.Name, err)
			}
		}
		volumes[v.Name] = dir
	}

	home := filepath.Join(r.dir, "home")
	if err := mkdirOwned(home, cred); err != nil {
		return nil, nil, err
	}
	// The kubelet creates the file world-writable so that any user in the
	// container can write its message.
	p.termLog = filepath.Join(r.dir, "termination-log")
	if err := os.WriteFile(p.termLog, nil, 0o666); err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(p.termLog, 0o666); err != nil {
		return nil, nil, err
	}

	env := slices.Clone(img.Env)
	env = append(env, "HOME="+imageHome)
	node, err := r.n.client.CoreV1().Nodes().Get(ctx, r.n.opts.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	built, err := podcontract.Build(podcontract.Input{
		Pod: podcontract.Pod{
			Meta: pod.ObjectMeta, Spec: pod.Spec, NodeName: pod.Spec.NodeName,
			PodIP: "127.0.0.1", HostIP: "127.0.0.1",
			NodeAllocatable: node.Status.Allocatable,
		},
		Container:      c.Name,
		Image:          podcontract.Image{Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: env, WorkingDir: imageHome},
		ConfigMaps:     cms,
		Secrets:        secrets,
		Volumes:        volumes,
		TerminationLog: p.termLog,
		ImagePaths:     map[string]string{imageHome: home},
	})
	if errors.Is(err, podcontract.ErrNotFound) {
		return nil, &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	p.argv, p.env, p.dir = built.HostArgv, built.HostEnv, built.Dir
	// Only the image's own entrypoint exists in this "image".
	if len(img.Entrypoint) == 0 || p.argv[0] != img.Entrypoint[0] {
		p.startError = fmt.Sprintf("exec: %q: stat %s: no such file or directory", p.argv[0], p.argv[0])
	} else {
		p.argv[0] = img.Binary
	}
	return p, nil, nil
}

// references reads the ConfigMaps and Secrets the container refers to; a
// missing one is left out for podcontract to report.
func (r *podRun) references(ctx context.Context, c *corev1.Container) (map[string]*corev1.ConfigMap, map[string]*corev1.Secret, error) {
	cms, secrets := map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}
	var cmNames, secretNames []string
	for _, f := range c.EnvFrom {
		if f.ConfigMapRef != nil {
			cmNames = append(cmNames, f.ConfigMapRef.Name)
		}
		if f.SecretRef != nil {
			secretNames = append(secretNames, f.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if e.ValueFrom.ConfigMapKeyRef != nil {
			cmNames = append(cmNames, e.ValueFrom.ConfigMapKeyRef.Name)
		}
		if e.ValueFrom.SecretKeyRef != nil {
			secretNames = append(secretNames, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	ns := r.pod.Namespace
	for _, name := range cmNames {
		cm, err := r.n.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, nil, err
		default:
			cms[name] = cm
		}
	}
	for _, name := range secretNames {
		s, err := r.n.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, nil, err
		default:
			secrets[name] = s
		}
	}
	return cms, secrets, nil
}

// volume returns the directory that stands in for a pod volume and whether
// the kubelet would apply fsGroup to it.
func (r *podRun) volume(ctx context.Context, v corev1.Volume) (string, bool, *corev1.ContainerStateWaiting, error) {
	switch {
	case v.EmptyDir != nil:
		dir := filepath.Join(r.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", false, nil, err
		}
		// The kubelet creates emptyDirs 0777.
		return dir, true, nil, os.Chmod(dir, 0o777)
	case v.PersistentVolumeClaim != nil:
		ns := r.pod.Namespace
		pvc, err := r.n.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return "", false, nil, err
		}
		pv, err := r.n.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return "", false, nil, err
		}
		switch {
		case pv.Spec.Local != nil:
			return pv.Spec.Local.Path, true, nil, nil
		case pv.Spec.HostPath != nil:
			return pv.Spec.HostPath.Path, false, nil, nil
		}
		return "", false, &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: fmt.Sprintf("PersistentVolume %s: only local and hostPath volumes can be mounted by the node stand-in", pv.Name)}, nil
	}
	return "", false, &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: fmt.Sprintf("volume %s: only persistentVolumeClaim and emptyDir volumes can be mounted by the node stand-in", v.Name)}, nil
}

// credential is the user the container runs as: the container's security
// context over the pod's over the image's USER; fsGroup and the
// supplemental groups are added as the runtime does.
func credential(pod *corev1.Pod, c *corev1.Container, img Image) (*syscall.Credential, string) {
	uid, gid := img.User, img.Group
	var nonRoot *bool
	if ps := pod.Spec.SecurityContext; ps != nil {
		if ps.RunAsUser != nil {
			uid = *ps.RunAsUser
		}
		if ps.RunAsGroup != nil {
			gid = *ps.RunAsGroup
		}
		nonRoot = ps.RunAsNonRoot
	}
	if cs := c.SecurityContext; cs != nil {
		if cs.RunAsUser != nil {
			uid = *cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			gid = *cs.RunAsGroup
		}
		if cs.RunAsNonRoot != nil {
			nonRoot = cs.RunAsNonRoot
		}
	}
	if nonRoot != nil && *nonRoot && uid == 0 {
		return nil, "container has runAsNonRoot and image will run as root"
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ps := pod.Spec.SecurityContext; ps != nil {
		if ps.FSGroup != nil {
			cred.Groups = append(cred.Groups, uint32(*ps.FSGroup))
		}
		for _, g := range ps.SupplementalGroups {
			cred.Groups = append(cred.Groups, uint32(g))
		}
	}
	return cred, ""
}

func mkdirOwned(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	// A tag follows the last colon after the last slash (a registry may
	// have a port).
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func (r *podRun) start(ctx context.Context, p *process) {
	c := r.pod.Spec.Containers[0]
	logFile, err := os.Create(r.log)
	if err != nil {
		r.finish(ctx, p, nil, 128, "StartError", err.Error())
		return
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env, cmd.Dir = p.env, p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}

	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		logFile.Close()
		return
	}
	err = cmd.Start()
	r.cmd = cmd
	r.mu.Unlock()
	if err != nil {
		logFile.Close()
		r.finish(ctx, p, nil, 128, "StartError", err.Error())
		return
	}
	r.n.mu.Lock()
	r.n.logFiles[r.key+"/"+c.Name] = r
	r.n.mu.Unlock()
	startedAt := metav1.Now()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()

	_ = r.n.updateStatus(ctx, r.pod, func(s *corev1.PodStatus) {
		r.baseStatus(s)
		s.Phase = corev1.PodRunning
		setCondition(s, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		setCondition(s, corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue})
		s.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: r.containerID(),
			Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}},
		}}
	})

	select {
	case <-exited:
	case <-r.stopCh:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		r.mu.Lock()
		wait := time.Until(r.graceTill)
		r.mu.Unlock()
		select {
		case <-exited:
		case <-time.After(wait):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	code := exitCode(cmd.ProcessState)
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	r.finish(ctx, p, &startedAt, code, reason, "")
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		// What a runtime reports for a process killed by a signal.
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// finish reports the container's end and the pod's phase.
func (r *podRun) finish(ctx context.Context, p *process, startedAt *metav1.Time, code int, reason, message string) {
	c := r.pod.Spec.Containers[0]
	if message == "" {
		message = r.terminationMessage(p, &c, code)
	}
	for _, d := range p.emptyDirs {
		_ = os.RemoveAll(d)
	}
	r.mu.Lock()
	killed := r.killed
	r.mu.Unlock()
	if killed && ctx.Err() != nil {
		return
	}
	finished := metav1.Now()
	if startedAt == nil {
		startedAt = &finished
	}
	phase := corev1.PodSucceeded
	if code != 0 {
		phase = corev1.PodFailed
	}
	err := r.n.updateStatus(ctx, r.pod, func(s *corev1.PodStatus) {
		r.baseStatus(s)
		s.Phase = phase
		for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
			setCondition(s, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted"})
		}
		setCondition(s, corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse})
		s.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: r.containerID(),
			Started: new(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reason, Message: message,
				StartedAt: *startedAt, FinishedAt: finished, ContainerID: r.containerID(),
			}},
		}}
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "node stand-in: status of %s: %v\n", r.key, err)
	}
}

// baseStatus sets what the kubelet reports for every started pod.
func (r *podRun) baseStatus(s *corev1.PodStatus) {
	if s.StartTime == nil {
		now := metav1.Now()
		s.StartTime = &now
	}
	s.HostIP, s.PodIP = "127.0.0.1", "127.0.0.1"
	s.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	s.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	setCondition(s, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue})
	setCondition(s, corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue})
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		found := false
		for _, c := range s.Conditions {
			found = found || c.Type == t
		}
		if !found {
			setCondition(s, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"})
		}
	}
}

func (r *podRun) containerID() string { return "standin://" + string(r.pod.UID) }

func imageID(ref string) string { return "standin://" + imageRepository(ref) }

// terminationMessage reads the message as the kubelet does.
func (r *podRun) terminationMessage(p *process, c *corev1.Container, code int) string {
	if p.termLog != "" {
		if f, err := os.Open(p.termLog); err == nil {
			b, _ := io.ReadAll(io.LimitReader(f, maxTerminationMessage))
			f.Close()
			if len(b) > 0 {
				return string(b)
			}
		}
	}
	if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError || code == 0 {
		return ""
	}
	b, err := os.ReadFile(r.log)
	if err != nil {
		return ""
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > maxFallbackLogLines {
		lines = lines[len(lines)-maxFallbackLogLines:]
	}
	msg := strings.Join(lines, "")
	if len(msg) > maxFallbackLogBytes {
		msg = msg[len(msg)-maxFallbackLogBytes:]
	}
	return msg
}

// serveLogs serves /containerLogs/<namespace>/<pod>/<container> over TLS,
// the kubelet endpoint the API server proxies `kubectl logs` to. The API
// server does not check a kubelet's certificate unless it is given
// --kubelet-certificate-authority, so a throwaway one does.
func (n *Node) serveLogs() (int, error) {
	cert, err := selfSigned()
	if err != nil {
		return 0, err
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", n.serveContainerLog)
	n.logs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = n.logs.Serve(l) }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (n *Node) serveContainerLog(w http.ResponseWriter, req *http.Request) {
	key := req.PathValue("ns") + "/" + req.PathValue("pod") + "/" + req.PathValue("container")
	n.mu.Lock()
	r := n.logFiles[key]
	n.mu.Unlock()
	if r == nil {
		http.Error(w, "container "+key+" has not started on this node", http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(r.log)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s := req.URL.Query().Get("tailLines"); s != "" {
		if k, err := strconv.Atoi(s); err == nil && k >= 0 {
			lines := strings.SplitAfter(string(b), "\n")
			if lines[len(lines)-1] == "" {
				lines = lines[:len(lines)-1]
			}
			if len(lines) > k {
				lines = lines[len(lines)-k:]
			}
			b = []byte(strings.Join(lines, ""))
		}
	}
	if s := req.URL.Query().Get("limitBytes"); s != "" {
		if k, err := strconv.Atoi(s); err == nil && k >= 0 && k < len(b) {
			b = b[:k]
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(b)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "node stand-in"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
