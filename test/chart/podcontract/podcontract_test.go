package podcontract

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// The cases follow the EnvVar.Value API documentation and the examples of
// "Define Dependent Environment Variables" (kubernetes.io).
func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "EMPTY": "", "B": "$(A)"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"":                 "",
		"plain":            "plain",
		"$(A)":             "alpha",
		"x-$(A)-y":         "x-alpha-y",
		"$(A)$(A)":         "alphaalpha",
		"$(EMPTY)":         "",
		"$(MISSING)":       "$(MISSING)",
		"$$(A)":            "$(A)",
		"$$$(A)":           "$alpha",
		"$$":               "$",
		"$":                "$",
		"a$":               "a$",
		"$A":               "$A",
		"$(A":              "$(A",
		"$(A$(A)":          "$(A$(A)", // the name is "A$(A", which is not defined
		"$()":              "$()",
		"$(B)":             "$(A)", // values are not expanded again
		"100$":             "100$",
		"$(A)/$(MISSING)/": "alpha/$(MISSING)/",
	} {
		if got := Expand(in, lookup); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func basePod(c corev1.Container) Pod {
	return Pod{
		Meta: metav1.ObjectMeta{Name: "p-1", Namespace: "ns", UID: "uid-1", Labels: map[string]string{"app": "x"}, Annotations: map[string]string{"note": "n"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}, ServiceAccountName: "sa"},
	}
}

func TestEnvFromOrderAndPrecedence(t *testing.T) {
	c := corev1.Container{
		Name: "c",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "first"}}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "second"}}},
			{Prefix: "P_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "first"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
		},
		Env: []corev1.EnvVar{
			{Name: "OVERRIDDEN", Value: "from-env"},
			{Name: "REF", Value: "$(ONLY_FIRST)+$(LATER)"},
			{Name: "LATER", Value: "env-later"},
			{Name: "EMPTY_ENV", Value: ""},
		},
	}
	in := Input{
		Pod:       basePod(c),
		Container: "c",
		ConfigMaps: map[string]*corev1.ConfigMap{
			"first":  {Data: map[string]string{"SHARED": "first", "ONLY_FIRST": "1", "OVERRIDDEN": "cm", "LATER": "cm-later", "EMPTY_ENV": "cm"}, BinaryData: map[string][]byte{"BIN": []byte("b")}},
			"second": {Data: map[string]string{"SHARED": "second", "FROM_SECRET": "cm-second"}},
		},
		Secrets: map[string]*corev1.Secret{
			"creds": {Data: map[string][]byte{"FROM_SECRET": []byte("s3cr3t\n"), "SHARED": []byte("secret")}, StringData: map[string]string{"STRING": "plain"}},
		},
	}
	env, err := Environment(in, &in.Pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SHARED":       "second", // last envFrom source wins
		"ONLY_FIRST":   "1",
		"FROM_SECRET":  "cm-second", // a later ConfigMap beats an earlier Secret
		"STRING":       "plain",     // stringData is merged into data
		"OVERRIDDEN":   "from-env",  // env beats envFrom
		"LATER":        "env-later",
		"REF":          "1+cm-later", // expands against what is defined so far
		"EMPTY_ENV":    "",           // an explicit empty value still replaces
		"P_SHARED":     "first",
		"P_ONLY_FIRST": "1",
		"P_OVERRIDDEN": "cm",
		"P_LATER":      "cm-later",
		"P_EMPTY_ENV":  "cm",
	}
	if !maps.Equal(env, want) {
		t.Errorf("environment\n got %v\nwant %v", env, want)
	}
}

func TestMissingReferencesFail(t *testing.T) {
	for name, c := range map[string]corev1.Container{
		"configMapRef": {Name: "c", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}},
		"secretRef":    {Name: "c", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}},
		"configMapKeyRef object": {Name: "c", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}},
		"configMapKeyRef key": {Name: "c", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "nokey"}}}}},
		"secretKeyRef key": {Name: "c", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "nokey"}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			in := Input{
				Pod: basePod(c), Container: "c",
				ConfigMaps: map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"k": "v"}}},
				Secrets:    map[string]*corev1.Secret{"s": {Data: map[string][]byte{"k": []byte("v")}}},
			}
			_, err := Environment(in, &in.Pod.Spec.Containers[0])
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestValueFrom(t *testing.T) {
	c := corev1.Container{
		Name: "c",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
		},
		Env: []corev1.EnvVar{
			{Name: "CM_KEY", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}},
			{Name: "SECRET_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}},
			// A missing optional key leaves the variable as envFrom set it.
			{Name: "KEPT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "nokey", Optional: ptr(true)}}},
			{Name: "UNSET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: ptr(true)}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "LABEL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			// Values from valueFrom are not expanded.
			{Name: "LITERAL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "ref"}}},
		},
	}
	in := Input{
		Pod: basePod(c), Container: "c",
		ConfigMaps: map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"k": "cm-v", "KEPT": "from-envFrom", "ref": "$(POD)"}}},
		Secrets:    map[string]*corev1.Secret{"s": {Data: map[string][]byte{"k": []byte("secret-v")}}},
	}
	env, err := Environment(in, &in.Pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"CM_KEY": "cm-v", "SECRET_KEY": "secret-v", "KEPT": "from-envFrom", "POD": "p-1", "NS": "ns",
		"LABEL": "x", "SA": "sa", "LITERAL": "$(POD)",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if v, ok := env["UNSET"]; ok {
		t.Errorf("UNSET = %q, want it unset", v)
	}
}

func TestResourceFieldRef(t *testing.T) {
	ref := func(name, res, divisor, container string) corev1.EnvVar {
		s := &corev1.ResourceFieldSelector{Resource: res, ContainerName: container}
		if divisor != "" {
			s.Divisor = resource.MustParse(divisor)
		}
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: s}}
	}
	c := corev1.Container{
		Name: "c",
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi"), corev1.ResourceCPU: resource.MustParse("1500m")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100M")},
		},
		Env: []corev1.EnvVar{
			ref("GOMEMLIMIT", "limits.memory", "1", "c"),
			ref("MEM_DEFAULT_DIVISOR", "limits.memory", "", ""),
			ref("MEM_MI", "limits.memory", "1Mi", ""),
			ref("MEM_G_ROUNDED_UP", "limits.memory", "1G", ""),
			ref("CPU", "limits.cpu", "", ""),
			ref("CPU_MILLI", "limits.cpu", "1m", ""),
			ref("REQ_MEM_KI", "requests.memory", "1Ki", ""),
			ref("EPHEMERAL_FROM_NODE", "limits.ephemeral-storage", "1Gi", ""),
			ref("OTHER_CONTAINER", "limits.memory", "1Mi", "sidecar"),
		},
	}
	pod := basePod(c)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}})
	pod.NodeAllocatable = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("20Gi")}
	in := Input{Pod: pod, Container: "c"}
	env, err := Environment(in, &in.Pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"GOMEMLIMIT":          "536870912",
		"MEM_DEFAULT_DIVISOR": "536870912",
		"MEM_MI":              "512",
		"MEM_G_ROUNDED_UP":    "1", // 0.536... G rounds up
		"CPU":                 "2", // 1.5 cores round up
		"CPU_MILLI":           "1500",
		"REQ_MEM_KI":          "97657", // 100e6/1024 = 97656.25, up
		"EPHEMERAL_FROM_NODE": "20",
		"OTHER_CONTAINER":     "64",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}

	// No limit and no node allocatable: the harness cannot know the value.
	c.Env = []corev1.EnvVar{ref("GOMEMLIMIT", "limits.memory", "1", "")}
	c.Resources = corev1.ResourceRequirements{}
	in = Input{Pod: basePod(c), Container: "c"}
	if _, err := Environment(in, &in.Pod.Spec.Containers[0]); err == nil {
		t.Fatal("limits.memory without a limit or node allocatable: want an error")
	}
}

func TestCommandLine(t *testing.T) {
	img := Image{Entrypoint: []string{"/bin/app", "$(NOT_EXPANDED)"}, Cmd: []string{"default-cmd"}}
	env := []corev1.EnvVar{{Name: "VERB", Value: "restore"}}
	for name, tc := range map[string]struct {
		command, args, want []string
	}{
		"image only":         {want: []string{"/bin/app", "$(NOT_EXPANDED)", "default-cmd"}},
		"args replace CMD":   {args: []string{"backup"}, want: []string{"/bin/app", "$(NOT_EXPANDED)", "backup"}},
		"args expand":        {args: []string{"$(VERB)", "$$(VERB)", "$(NOPE)"}, want: []string{"/bin/app", "$(NOT_EXPANDED)", "restore", "$(VERB)", "$(NOPE)"}},
		"command drops both": {command: []string{"/other", "$(VERB)"}, want: []string{"/other", "restore"}},
		"command and args":   {command: []string{"/other"}, args: []string{"x"}, want: []string{"/other", "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := corev1.Container{Name: "c", Command: tc.command, Args: tc.args, Env: env}
			p, err := Build(Input{Pod: basePod(c), Container: "c", Image: img})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Argv, tc.want) {
				t.Errorf("argv = %q, want %q", p.Argv, tc.want)
			}
		})
	}
}

func TestMountsAndHostRewrite(t *testing.T) {
	host := t.TempDir()
	snaps, tmp, term := filepath.Join(host, "vol"), filepath.Join(host, "tmp"), filepath.Join(host, "term")
	c := corev1.Container{
		Name: "c",
		Args: []string{"--dir=/snapshots", "/snapshots/sub"},
		Env: []corev1.EnvVar{
			{Name: "SOURCE", Value: "/snapshots"},
			{Name: "NESTED", Value: "/snapshots/a/b"},
			{Name: "SIBLING", Value: "/snapshots2/x"},
			{Name: "RELATIVE", Value: "snapshots"},
			{Name: "TMPDIR", Value: "/tmp"},
			{Name: "TERM_LOG", Value: "/dev/termination-log"},
			{Name: "DEEP", Value: "/snapshots/data/x"},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "snapshots", MountPath: "/snapshots", ReadOnly: true},
			{Name: "data", MountPath: "/snapshots/data", SubPath: "inner"},
			{Name: "tmp", MountPath: "/tmp/"},
		},
		TerminationMessagePath: "/dev/termination-log",
	}
	pod := basePod(c)
	pod.Spec.Volumes = []corev1.Volume{{Name: "snapshots"}, {Name: "data"}, {Name: "tmp"}}
	p, err := Build(Input{
		Pod: pod, Container: "c", Image: Image{Entrypoint: []string{"/app"}},
		Volumes:        map[string]string{"snapshots": snaps, "data": filepath.Join(host, "d"), "tmp": tmp},
		TerminationLog: term,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range p.HostEnv {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	want := map[string]string{
		"SOURCE":   snaps,
		"NESTED":   filepath.Join(snaps, "a", "b"),
		"SIBLING":  "/snapshots2/x",
		"RELATIVE": "snapshots",
		"TMPDIR":   tmp,
		"TERM_LOG": term,
		"DEEP":     filepath.Join(host, "d", "inner", "x"), // the longer mount wins
	}
	if !maps.Equal(got, want) {
		t.Errorf("host env\n got %v\nwant %v", got, want)
	}
	if p.Env["SOURCE"] != "/snapshots" {
		t.Errorf("Env keeps container paths: SOURCE = %q", p.Env["SOURCE"])
	}
	// Only whole arguments that are paths are rewritten.
	if want := []string{"/app", "--dir=/snapshots", filepath.Join(snaps, "sub")}; !slices.Equal(p.HostArgv, want) {
		t.Errorf("host argv = %q, want %q", p.HostArgv, want)
	}
	var ro []string
	for _, m := range p.Mounts {
		if m.ReadOnly {
			ro = append(ro, m.ContainerPath)
		}
	}
	if !slices.Equal(ro, []string{"/snapshots"}) {
		t.Errorf("read-only mounts = %v, want [/snapshots]", ro)
	}

	// Every mounted volume needs a host directory.
	_, err = Build(Input{Pod: pod, Container: "c", Image: Image{Entrypoint: []string{"/app"}},
		Volumes: map[string]string{"snapshots": snaps, "tmp": tmp}})
	if err == nil || !strings.Contains(err.Error(), `"data"`) {
		t.Errorf("unmapped volume: err = %v, want one naming the volume", err)
	}
	// A mount of a volume the pod does not declare is a broken spec.
	pod.Spec.Volumes = pod.Spec.Volumes[:2]
	_, err = Build(Input{Pod: pod, Container: "c", Image: Image{Entrypoint: []string{"/app"}},
		Volumes: map[string]string{"snapshots": snaps, "data": snaps, "tmp": tmp}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("undeclared volume: err = %v, want ErrNotFound", err)
	}
}

// The process gets exactly the container's environment (plus the image's),
// nothing from the test process: run a real program and read what it got.
func TestCmdEnvironmentIsExact(t *testing.T) {
	envBin, err := exec.LookPath("env")
	if err != nil {
		t.Fatalf("env(1) is needed for this test: %v", err)
	}
	t.Setenv("LEAK_CHECK", "must-not-appear")
	c := corev1.Container{Name: "c", Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "PATH", Value: "/container/bin"}}}
	p, err := Build(Input{Pod: basePod(c), Container: "c", Image: Image{
		Entrypoint: []string{envBin}, Env: []string{"PATH=/image/bin", "HOME=/home/nonroot"}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Cmd(context.Background()).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	want := []string{"A=1", "HOME=/home/nonroot", "PATH=/container/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("child environment = %q, want %q", got, want)
	}
	if _, err := os.Stat(envBin); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownContainer(t *testing.T) {
	_, err := Build(Input{Pod: basePod(corev1.Container{Name: "c"}), Container: "other"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}
