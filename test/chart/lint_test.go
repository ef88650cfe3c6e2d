package chart

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestHelmLint runs what `helm lint --strict --kube-version 1.27.0 -f
// <values>` runs, for every value set: warnings fail too.
func TestHelmLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(valueSets)) {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(chartDir(t), parseValues(t, valueSets[name]), namespace, kv)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("%s", m.Error())
				} else {
					t.Logf("%s", m.Error())
				}
			}
		})
	}
}

// The linter must see what the schema sees: a typo is an error.
func TestHelmLintFailsOnTypo(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	l := lint.AllWithKubeVersion(chartDir(t), parseValues(t, "cloud: {provder: s3}"), namespace, kv)
	if l.HighestSeverity != support.ErrorSev {
		t.Fatalf("lint of a typo: highest severity %d, want error; messages %v", l.HighestSeverity, l.Messages)
	}
}

// TestKubeVersionRange: Chart.yaml's kubeVersion admits the releases the
// chart's fields need (podFailurePolicy on by default from 1.26, CronJob
// timeZone GA in 1.27) and refuses older ones at install time.
func TestKubeVersionRange(t *testing.T) {
	c := loadChart(t)
	for v, want := range map[string]bool{"1.26.9": false, "1.27.0": true, "1.33.1": true, "1.37.0": true} {
		if got := chartutil.IsCompatibleRange(c.Metadata.KubeVersion, v); got != want {
			t.Errorf("kubeVersion %q admits %s: %v, want %v", c.Metadata.KubeVersion, v, got, want)
		}
	}
}

// TestSchemaRejects: values.schema.json catches typos and bad values before
// anything is installed, naming the offending key.
func TestSchemaRejects(t *testing.T) {
	for values, mention := range map[string]string{
		"cloud: {provder: s3}":                             "provder",
		"cloud: {s3: {bucekt: b}}":                         "bucekt",
		"cloud: {azblob: {storageAcount: a}}":              "storageAcount",
		"cloud: {provider: gcp}":                           "provider",
		"cloud: {gcs: {credentialJson: k}}":                "credentialJson",
		"cloud: {gcs: {endpoint: storage.example.com}}":    "endpoint",
		"cloud: {configMaps: kubeshark-s3-config}":         "configMaps",
		"cloud: {s3: {sse: aes256}}":                       "sse",
		"cloud: {s3: {endpoint: s3.example.com}}":          "endpoint",
		"cloud: {azblob: {accessTier: hot}}":               "accessTier",
		"backup: {scheduel: '0 3 * * *'}":                  "scheduel",
		"backup: {schedule: ''}":                           "schedule",
		"backup: {concurrencyPolicy: forbid}":              "concurrencyPolicy",
		"retention: {keepLast: -1}":                        "keepLast",
		"retention: {keepLast: '7'}":                       "keepLast",
		"retention: {maxAge: 30days}":                      "maxAge",
		"retention: {dryrun: true}":                        "dryrun",
		"restore: {onInstall: {ifNotEmpty: replace}}":      "ifNotEmpty",
		"restore: {paths: node-1}":                         "paths",
		"restore: {paths: ['a,b']}":                        "paths",
		"restore: {paths: [/etc]}":                         "paths",
		"restore: {onInstall: {hookDeletePolicy: always}}": "hookDeletePolicy",
		"restore: {onInstal: {enabled: false}}":            "onInstal",
		"snapshots: {name: Bad_Name}":                      "name",
		"snapshots: {mountPath: snapshots}":                "mountPath",
		"snapshots: {existingClam: x}":                     "existingClam",
		"transfer: {concurrency: 100}":                     "concurrency",
		"transfer: {partSize: 16 megabytes}":               "partSize",
		"image: {digest: latest}":                          "digest",
		"image: {pullPolicy: always}":                      "pullPolicy",
		"serviceAccount: {annotation: {a: b}}":             "annotation",
		"extraEnv: [{value: x}]":                           "name",
		"resouces: {limits: {memory: 1Gi}}":                "resouces",
		"log: {level: verbose}":                            "level",
		"tmp: {sizeLimit: lots}":                           "sizeLimit",
		"podLabels: {team: 1}":                             "team",
		"terminationGracePeriodSeconds: -1":                "terminationGracePeriodSeconds",
		"metrics: {pushgateway: {url: 'pg:9091'}}":         "url",
		"metrics: {pushgateway: {url: 'http://a b'}}":      "url",
		"metrics: {pushgatway: {url: 'http://pg'}}":        "pushgatway",
		"metrics: {job: 7}":                                "job",

		// Object Lock and encryption.
		"cloud: {s3: {objectLock: {mode: governance, days: 1}}}": "mode",
		"cloud: {s3: {objectLock: {mode: COMPLIANCE, days: 0}}}": "days",
		"encryption: {recipients: [AGE-SECRET-KEY-1XYZ]}":        "recipients",
		"encryption: {identity: AGE-SECRET-KEY-1XYZ}":            "identity",
	} {
		_, err := renderErr(t, values)
		if err == nil {
			t.Errorf("%s: rendered, want a schema error", values)
			continue
		}
		if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), mention) {
			t.Errorf("%s: error does not name %q:\n%v", values, mention, err)
		}
	}
}

// TestRenderedVariablesAreKnown: every SNAPSHOT_* name the chart renders
// (env entries, generated ConfigMap and Secret keys) is one the binary
// reads; a misspelt one would only produce a warning at run time.
func TestRenderedVariablesAreKnown(t *testing.T) {
	known := knownVariables(t)
	for name, values := range valueSets {
		r := render(t, values)
		var names []string
		for _, cm := range r.ConfigMaps {
			names = slices.AppendSeq(names, maps.Keys(cm.Data))
		}
		for _, s := range r.Secrets {
			names = slices.AppendSeq(names, maps.Keys(s.Data))
		}
		for _, pt := range podTemplates(t, r) {
			for _, e := range theContainer(t, pt).Env {
				names = append(names, e.Name)
			}
		}
		for _, n := range names {
			if strings.HasPrefix(n, "SNAPSHOT_") && !known[n] {
				t.Errorf("%s: %s is not a variable internal/config reads", name, n)
			}
		}
	}
}

// knownVariables reads the variable names from internal/config's struct
// tags (envconfig: nested structs prefix their fields with their own tag),
// following each store provider's settings (a field of type <pkg>.Config)
// into internal/store/<pkg>/config.go, and the metrics settings into
// internal/metrics/config.go. The chart's test module does not
// import the binary's module, so it reads the source instead.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	structsOf := func(path ...string) map[string]*ast.StructType {
		f, err := parser.ParseFile(fset, filepath.Join(append([]string{"..", ".."}, path...)...), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		structs := map[string]*ast.StructType{}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
		return structs
	}
	structs := structsOf("internal", "config", "config.go")
	known := map[string]bool{}
	var walk func(prefix string, st *ast.StructType)
	walk = func(prefix string, st *ast.StructType) {
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(field.Tag.Value)
			name := reflect.StructTag(tag).Get("envconfig")
			if name == "" {
				continue
			}
			if id, ok := field.Type.(*ast.Ident); ok && structs[id.Name] != nil {
				walk(prefix+name+"_", structs[id.Name])
				continue
			}
			if sel, ok := field.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Config" {
				if pkg, ok := sel.X.(*ast.Ident); ok {
					dir := []string{"internal", "store", pkg.Name}
					if pkg.Name == "metrics" {
						dir = []string{"internal", "metrics"}
					}
					st := structsOf(append(dir, "config.go")...)["Config"]
					if st == nil {
						t.Fatalf("type Config not found in %s/config.go", filepath.Join(dir...))
					}
					walk(prefix+name+"_", st)
					continue
				}
			}
			known[prefix+name] = true
		}
	}
	root := structs["Config"]
	if root == nil {
		t.Fatal("type Config not found in internal/config/config.go")
	}
	walk("SNAPSHOT_", root)
	// Guard the parser itself: names the contract fixes must be found.
	for _, n := range []string{"SNAPSHOT_CLOUD_PROVIDER", "SNAPSHOT_METRICS_PUSHGATEWAY_URL", "SNAPSHOT_AWS_BUCKET", "SNAPSHOT_AZBLOB_STORAGE_KEY", "SNAPSHOT_RETENTION_KEEP_LAST", "SNAPSHOT_RESTORE_IF_NOT_EMPTY"} {
		if !known[n] {
			t.Fatalf("known variables lack %s: the config parser is broken (%d found)", n, len(known))
		}
	}
	return known
}
