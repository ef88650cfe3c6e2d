// Package podcontract turns a rendered pod spec into the process a
// container would run, without a cluster: the argv and the environment the
// kubelet would give the container, with its volume mounts mapped to host
// directories. It lets a test run the real binary exactly as a Job's pod
// would, so the chart and the binary are tested against each other.
//
// The environment follows the kubelet's rules, as documented in
//   - https://kubernetes.io/docs/tasks/configure-pod-container/configure-pod-configmap/#configure-all-key-value-pairs-in-a-configmap-as-container-environment-variables
//     (envFrom: every key of the source; "When a key exists in multiple
//     sources, the value associated with the last source will take
//     precedence"; "Values defined by an Env with a duplicate key will take
//     precedence" — the EnvFromSource and Container.EnvFrom API docs)
//   - https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/
//     and the EnvVar.Value API doc ($(VAR) expands to a previously defined
//     variable, an unresolved reference is left unchanged, $$ escapes)
//   - https://kubernetes.io/docs/tasks/inject-data-application/environment-variable-expose-pod-information/
//     (fieldRef, resourceFieldRef; the value is rounded up to a whole
//     multiple of the divisor, default divisor 1; without a limit the node's
//     allocatable is used)
//   - https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/
//     (command replaces the image ENTRYPOINT, args the image CMD; $(VAR) in
//     command and args expands with the container's environment)
//   - https://kubernetes.io/docs/concepts/configuration/secret/#restriction-names-data
//     (stringData is merged into data on write; the container sees decoded
//     bytes)
//
// and the order of kubelet_pods.go's makeEnvironmentVariables: envFrom
// sources in order into one map (later keys win), then each env entry in
// declaration order, expanding against that map as it grows.
package podcontract

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNotFound marks a reference to a ConfigMap, Secret or key that does not
// exist and is not optional: the kubelet refuses to start such a container
// (CreateContainerConfigError).
var ErrNotFound = errors.New("not found")

// Image is what the container image contributes: its ENTRYPOINT, CMD and
// ENV, as the container runtime would take them from the image config.
type Image struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	WorkingDir string
}

// Pod is the pod's identity and placement, for fieldRef and for limits
// that are not set.
type Pod struct {
	Meta            metav1.ObjectMeta
	Spec            corev1.PodSpec
	NodeName        string
	PodIP, HostIP   string
	NodeAllocatable corev1.ResourceList
}

// Input is everything Build needs.
type Input struct {
	Pod       Pod
	Container string // name of the container to run
	Image     Image
	// ConfigMaps and Secrets in the pod's namespace, by name.
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
	// Volumes maps a pod volume name to the host directory that stands in
	// for it. Every volume the container mounts must be mapped.
	Volumes map[string]string
	// TerminationLog is the host file that stands in for the container's
	// terminationMessagePath. Empty: the path is left as it is.
	TerminationLog string
	// ImagePaths maps paths of the image's own filesystem (its home or
	// working directory, say) to host directories, rewritten like mounts;
	// a volume mounted over such a path wins.
	ImagePaths map[string]string
}

// Mount is one container mount mapped to the host.
type Mount struct {
	ContainerPath string
	HostPath      string
	ReadOnly      bool
}

// Process is what the container would run.
type Process struct {
	Argv   []string
	Env    map[string]string // as the kubelet computed it, before host mapping
	Mounts []Mount
	// HostEnv is Env with mount paths rewritten to host paths, in
	// KEY=VALUE form sorted by key, ready for exec.Cmd.Env.
	HostEnv []string
	// HostArgv is Argv with mount paths rewritten.
	HostArgv []string
	Dir      string
}

// PodSpecOf returns the pod template of a Job or of a CronJob's Job.
func PodSpecOf(obj any) (corev1.PodTemplateSpec, error) {
	switch o := obj.(type) {
	case *batchv1.Job:
		return o.Spec.Template, nil
	case *batchv1.CronJob:
		return o.Spec.JobTemplate.Spec.Template, nil
	}
	return corev1.PodTemplateSpec{}, fmt.Errorf("no pod template in %T", obj)
}

// Build computes the container's process.
func Build(in Input) (*Process, error) {
	var c *corev1.Container
	for i := range in.Pod.Spec.Containers {
		if in.Pod.Spec.Containers[i].Name == in.Container {
			c = &in.Pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return nil, fmt.Errorf("container %q: %w in the pod spec", in.Container, ErrNotFound)
	}
	env, err := Environment(in, c)
	if err != nil {
		return nil, err
	}

	argv := commandLine(in.Image, c, env)
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %q has no command and the image no entrypoint", c.Name)
	}
	mounts, err := mapMounts(in, c)
	if err != nil {
		return nil, err
	}

	p := &Process{Argv: argv, Env: env, Mounts: mounts}
	merged := map[string]string{}
	// The runtime starts from the image's ENV and lets the container's
	// variables override it.
	for _, kv := range in.Image.Env {
		k, v, _ := strings.Cut(kv, "=")
		merged[k] = v
	}
	for k, v := range env {
		merged[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		p.HostEnv = append(p.HostEnv, k+"="+toHost(merged[k], mounts))
	}
	for _, a := range argv {
		p.HostArgv = append(p.HostArgv, toHost(a, mounts))
	}
	dir := c.WorkingDir
	if dir == "" {
		dir = in.Image.WorkingDir
	}
	if dir != "" {
		p.Dir = toHost(dir, mounts)
	}
	return p, nil
}

// Cmd returns an exec.Cmd for the process. Its environment is exactly the
// container's: nothing leaks in from the test process.
func (p *Process) Cmd(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.HostArgv[0], p.HostArgv[1:]...)
	cmd.Env = slices.Clone(p.HostEnv)
	cmd.Dir = p.Dir
	return cmd
}

// Environment computes the container's environment as the kubelet does
// (service links aside: the chart turns them off).
func Environment(in Input, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for i, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := in.ConfigMaps[from.ConfigMapRef.Name]
			if !ok {
				if isOptional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom[%d]: ConfigMap %q: %w", i, from.ConfigMapRef.Name, ErrNotFound)
			}
			// binaryData is not exposed as environment.
			data = cm.Data
		case from.SecretRef != nil:
			s, ok := in.Secrets[from.SecretRef.Name]
			if !ok {
				if isOptional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom[%d]: Secret %q: %w", i, from.SecretRef.Name, ErrNotFound)
			}
			data = secretData(s)
		default:
			return nil, fmt.Errorf("envFrom[%d]: neither configMapRef nor secretRef", i)
		}
		for k, v := range data {
			env[from.Prefix+k] = v
		}
	}

	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	for _, e := range c.Env {
		if e.Value != "" || e.ValueFrom == nil {
			env[e.Name] = Expand(e.Value, lookup)
			continue
		}
		v, skip, err := valueFrom(in, c, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if skip {
			continue
		}
		env[e.Name] = v
	}
	return env, nil
}

// valueFrom resolves env[].valueFrom. skip is true for a missing optional
// key, which leaves the variable unset.
func valueFrom(in Input, c *corev1.Container, e corev1.EnvVar) (v string, skip bool, err error) {
	src := e.ValueFrom
	switch {
	case src.FieldRef != nil:
		v, err := fieldValue(in.Pod, src.FieldRef.FieldPath)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := resourceValue(in.Pod, c, src.ResourceFieldRef)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, ok := in.ConfigMaps[ref.Name]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("ConfigMap %q: %w", ref.Name, ErrNotFound)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("key %q in ConfigMap %q: %w", ref.Key, ref.Name, ErrNotFound)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, ok := in.Secrets[ref.Name]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("Secret %q: %w", ref.Name, ErrNotFound)
		}
		v, ok := secretData(s)[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("key %q in Secret %q: %w", ref.Key, ref.Name, ErrNotFound)
		}
		return v, false, nil
	}
	return "", false, errors.New("valueFrom names no source this harness supports")
}

// secretData is what a container sees of a Secret: data decoded (the Go
// type already holds decoded bytes), with stringData merged over it as the
// API server does on write.
func secretData(s *corev1.Secret) map[string]string {
	out := make(map[string]string, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

func fieldValue(p Pod, path string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return p.Meta.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return p.Meta.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return p.Meta.Name, nil
	case "metadata.namespace":
		return p.Meta.Namespace, nil
	case "metadata.uid":
		return string(p.Meta.UID), nil
	case "spec.nodeName":
		return p.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return p.PodIP, nil
	case "status.hostIP", "status.hostIPs":
		return p.HostIP, nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

// resourceValue is the downward API's resourceFieldRef: the quantity
// divided by the divisor, rounded up; CPU is compared in millicores. A
// limit that is not set reads as the node's allocatable.
func resourceValue(p Pod, self *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	c := self
	if ref.ContainerName != "" && ref.ContainerName != self.Name {
		c = nil
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == ref.ContainerName {
				c = &p.Spec.Containers[i]
			}
		}
		if c == nil {
			return "", fmt.Errorf("resourceFieldRef container %q: %w", ref.ContainerName, ErrNotFound)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, set := list[rn]
	if !set && kind == "limits" {
		q, set = p.NodeAllocatable[rn]
		if !set {
			return "", fmt.Errorf("resourceFieldRef %s: no limit and no node allocatable %s given", ref.Resource, name)
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func commandLine(img Image, c *corev1.Container, env map[string]string) []string {
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	var argv []string
	switch {
	case len(c.Command) > 0:
		// command replaces ENTRYPOINT and drops CMD; args (if any) follow.
		argv = append(argv, c.Command...)
		argv = append(argv, c.Args...)
	case len(c.Args) > 0:
		argv = append(argv, img.Entrypoint...)
		argv = append(argv, c.Args...)
	default:
		argv = append(argv, img.Entrypoint...)
		argv = append(argv, img.Cmd...)
	}
	// Only the container's command and args are expanded; the image's
	// ENTRYPOINT and CMD are taken literally.
	expandFrom := 0
	if len(c.Command) == 0 {
		if len(c.Args) > 0 {
			expandFrom = len(img.Entrypoint)
		} else {
			expandFrom = len(argv)
		}
	}
	for i := expandFrom; i < len(argv); i++ {
		argv[i] = Expand(argv[i], lookup)
	}
	return argv
}

func mapMounts(in Input, c *corev1.Container) ([]Mount, error) {
	var mounts []Mount
	for _, vm := range c.VolumeMounts {
		if !slices.ContainsFunc(in.Pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
			return nil, fmt.Errorf("volumeMount %q: volume %w in the pod spec", vm.Name, ErrNotFound)
		}
		host, ok := in.Volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q at %s: no host directory given for it", vm.Name, vm.MountPath)
		}
		if vm.SubPathExpr != "" {
			return nil, fmt.Errorf("volumeMount %q: subPathExpr is not supported", vm.Name)
		}
		if vm.SubPath != "" {
			if filepath.IsAbs(vm.SubPath) || slices.Contains(strings.Split(vm.SubPath, "/"), "..") {
				return nil, fmt.Errorf("volumeMount %q: subPath %q must be relative without ..", vm.Name, vm.SubPath)
			}
			host = filepath.Join(host, vm.SubPath)
		}
		mounts = append(mounts, Mount{ContainerPath: filepath.Clean(vm.MountPath), HostPath: host, ReadOnly: vm.ReadOnly})
	}
	if in.TerminationLog != "" {
		path := c.TerminationMessagePath
		if path == "" {
			path = corev1.TerminationMessagePathDefault
		}
		mounts = append(mounts, Mount{ContainerPath: path, HostPath: in.TerminationLog})
	}
	for _, p := range slices.Sorted(maps.Keys(in.ImagePaths)) {
		p = filepath.Clean(p)
		if !slices.ContainsFunc(mounts, func(m Mount) bool { return m.ContainerPath == p }) {
			mounts = append(mounts, Mount{ContainerPath: p, HostPath: in.ImagePaths[p]})
		}
	}
	// Longest container path first, so /data/x wins over /data.
	slices.SortStableFunc(mounts, func(a, b Mount) int { return len(b.ContainerPath) - len(a.ContainerPath) })
	return mounts, nil
}

// toHost rewrites a value that is a container path inside a mount (the
// mount point itself or below it) to the host path. Other values, including
// paths that merely share a prefix (/snapshots2), are left alone.
func toHost(v string, mounts []Mount) string {
	if !strings.HasPrefix(v, "/") {
		return v
	}
	for _, m := range mounts {
		if v == m.ContainerPath {
			return m.HostPath
		}
		if rest, ok := strings.CutPrefix(v, m.ContainerPath+"/"); ok {
			return filepath.Join(m.HostPath, rest)
		}
	}
	return v
}

// Expand replaces $(NAME) references with lookup's value, as the kubelet
// does for env values, command and args: a name lookup does not know stays
// "$(NAME)", "$$" is a literal "$" (so "$$(NAME)" is the literal
// "$(NAME)"), and a "$" that starts neither form is kept as it is.
func Expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Not closed: kept literally, scanning goes on after "$(".
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}

func isOptional(b *bool) bool { return b != nil && *b }
