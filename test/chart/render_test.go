package chart

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"
)

const (
	releaseName = "snap"
	// fullname is the base of every object name: the release name does not
	// contain the chart name, so Helm's convention appends it.
	fullname  = "snap-snapshot-job"
	namespace = "monitoring"
	// The oldest Kubernetes the chart supports (Chart.yaml kubeVersion).
	kubeVersion = "v1.27.0"
)

func chartDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "charts", "snapshot-job"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

func capabilities(t testing.TB) *chartutil.Capabilities {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps
}

func parseValues(t testing.TB, valuesYAML string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(valuesYAML), &vals); err != nil {
		t.Fatalf("values: %v", err)
	}
	return vals
}

// renderErr renders the chart as `helm install` would (schema validation
// included) and returns the manifests by template name.
func renderErr(t testing.TB, valuesYAML string) (map[string]string, error) {
	t.Helper()
	return renderReleaseErr(t, releaseName, valuesYAML)
}

// renderReleaseErr is renderErr for a release of another name.
func renderReleaseErr(t testing.TB, release, valuesYAML string) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(c, parseValues(t, valuesYAML), opts, capabilities(t))
	if err != nil {
		return nil, err
	}
	return engine.Render(c, vals)
}

// Rendered holds the decoded objects of one render, by name.
type Rendered struct {
	CronJobs        map[string]*batchv1.CronJob
	Jobs            map[string]*batchv1.Job
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]*corev1.Secret
	ServiceAccounts map[string]*corev1.ServiceAccount
	PVCs            map[string]*corev1.PersistentVolumeClaim
	Notes           string
	Count           int
}

var strictDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	// The API server's strict field validation: unknown and duplicate
	// fields are errors, field names are case-sensitive.
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
}()

// render renders and decodes every object strictly into its k8s.io/api
// type; anything unknown fails the test.
func render(t testing.TB, valuesYAML string) *Rendered {
	t.Helper()
	return renderRelease(t, releaseName, valuesYAML)
}

// renderRelease is render for a release of another name.
func renderRelease(t testing.TB, release, valuesYAML string) *Rendered {
	t.Helper()
	files, err := renderReleaseErr(t, release, valuesYAML)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := &Rendered{
		CronJobs: map[string]*batchv1.CronJob{}, Jobs: map[string]*batchv1.Job{},
		ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]*corev1.Secret{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{}, PVCs: map[string]*corev1.PersistentVolumeClaim{},
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.Notes = files[name]
			continue
		}
		for _, doc := range releaseutil.SplitManifests(files[name]) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, gvk, err := strictDecoder.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: strict decode: %v\n%s", name, err, doc)
			}
			if err := setAndCheckNamespace(obj); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			r.Count++
			switch o := obj.(type) {
			case *batchv1.CronJob:
				r.CronJobs[o.Name] = o
			case *batchv1.Job:
				r.Jobs[o.Name] = o
			case *corev1.ConfigMap:
				r.ConfigMaps[o.Name] = o
			case *corev1.Secret:
				r.Secrets[o.Name] = o
			case *corev1.ServiceAccount:
				r.ServiceAccounts[o.Name] = o
			case *corev1.PersistentVolumeClaim:
				r.PVCs[o.Name] = o
			default:
				t.Fatalf("%s: unexpected kind %s", name, gvk)
			}
		}
	}
	return r
}

func setAndCheckNamespace(obj runtime.Object) error {
	type namespaced interface{ GetNamespace() string }
	if n, ok := obj.(namespaced); ok && n.GetNamespace() != namespace {
		return &namespaceError{got: n.GetNamespace()}
	}
	return nil
}

type namespaceError struct{ got string }

func (e *namespaceError) Error() string {
	return "object namespace is " + e.got + ", want the release namespace " + namespace
}

// readFile reads a file relative to the repository root.
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
