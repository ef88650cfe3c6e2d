package chart

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFullnameConvention: object names follow Helm's convention, so that a
// release named after Kubeshark never takes Kubeshark's own object names.
func TestFullnameConvention(t *testing.T) {
	for _, tc := range []struct{ release, values, want string }{
		{"kubeshark", "", "kubeshark-snapshot-job"},
		{"snapshot-job", "", "snapshot-job"},
		{"kubeshark-snapshot-job", "", "kubeshark-snapshot-job"},
		{"kubeshark", "nameOverride: snapper", "kubeshark-snapper"},
		{"kubeshark", "fullnameOverride: backups", "backups"},
	} {
		r := renderRelease(t, tc.release, "cloud: {provider: s3, s3: {bucket: b, accessKey: a, secretKey: s}}\n"+tc.values)
		want := []string{tc.want + "-backup", tc.want + "-restore"}
		if got := slices.Sorted(maps.Keys(r.CronJobs)); !slices.Equal(got, want) {
			t.Errorf("release %s %s: CronJobs %v, want %v", tc.release, tc.values, got, want)
		}
		for _, names := range [][]string{
			slices.Collect(maps.Keys(r.ConfigMaps)), slices.Collect(maps.Keys(r.Secrets)),
			slices.Collect(maps.Keys(r.ServiceAccounts)), slices.Collect(maps.Keys(r.PVCs)), slices.Collect(maps.Keys(r.Jobs)),
		} {
			for _, n := range names {
				if n != tc.want && !strings.HasPrefix(n, tc.want+"-") {
					t.Errorf("release %s %s: object %s is not named after %s", tc.release, tc.values, n, tc.want)
				}
				if n == "kubeshark-cloud-config" || n == "kubeshark-cloud-secret" {
					t.Errorf("release %s renders %s, the name Kubeshark's chart uses", tc.release, n)
				}
			}
		}
	}
}

func upstreamFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "upstream", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUpstreamFixtures: Kubeshark's own values files render as they are,
// with the same settings they give Kubeshark's hub.
func TestUpstreamFixtures(t *testing.T) {
	for _, tc := range []struct {
		file         string
		config       map[string]string
		secret       map[string]string
		envFrom      []string
		provider     string
		prefix       string
		configAbsent bool
	}{
		{
			file:     "values-s3.yaml",
			config:   map[string]string{"SNAPSHOT_AWS_BUCKET": "kubeshark-snapshots", "SNAPSHOT_AWS_REGION": "us-east-1"},
			secret:   map[string]string{"SNAPSHOT_AWS_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "SNAPSHOT_AWS_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
			envFrom:  []string{"configMap:" + fullname + "-cloud-config", "secret:" + fullname + "-cloud-secret"},
			provider: "s3", prefix: "snapshots/",
		},
		{
			file:     "values-azblob.yaml",
			config:   map[string]string{"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT": "kubesharkstore", "SNAPSHOT_AZBLOB_CONTAINER": "snapshots"},
			secret:   map[string]string{"SNAPSHOT_AZBLOB_STORAGE_KEY": "c29tZWtleWhlcmU="},
			envFrom:  []string{"configMap:" + fullname + "-cloud-config", "secret:" + fullname + "-cloud-secret"},
			provider: "azblob", prefix: "snapshots/",
		},
		{
			file:     "values-gcs.yaml",
			config:   map[string]string{"SNAPSHOT_GCS_BUCKET": "kubeshark-snapshots", "SNAPSHOT_GCS_PROJECT": "my-gcp-project"},
			secret:   map[string]string{"SNAPSHOT_GCS_CREDENTIALS_JSON": gcsFixtureKey},
			envFrom:  []string{"configMap:" + fullname + "-cloud-config", "secret:" + fullname + "-cloud-secret"},
			provider: "gcs", prefix: "snapshots/",
		},
		{
			file:     "values-cloud-refs.yaml",
			envFrom:  []string{"configMap:my-cloud-config", "secret:my-cloud-secret"},
			provider: "s3", configAbsent: true,
		},
		{
			file:     "values-kubeshark-full.yaml",
			config:   map[string]string{"SNAPSHOT_AWS_BUCKET": "kubeshark-snapshots", "SNAPSHOT_AWS_REGION": "eu-west-1", "SNAPSHOT_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/KubesharkS3Role"},
			envFrom:  []string{"configMap:" + fullname + "-cloud-config"},
			provider: "s3", prefix: "snapshots/",
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := render(t, upstreamFixture(t, tc.file))
			cm := r.ConfigMaps[fullname+"-cloud-config"]
			switch {
			case tc.configAbsent && cm != nil:
				t.Errorf("ConfigMap rendered: %v", cm.Data)
			case !tc.configAbsent && (cm == nil || !maps.Equal(cm.Data, tc.config)):
				t.Errorf("ConfigMap %v, want %v", cm, tc.config)
			}
			if tc.secret != nil {
				checkSecret(t, r, tc.secret)
			} else if len(r.Secrets) != 0 {
				t.Errorf("Secrets rendered: %v", slices.Collect(maps.Keys(r.Secrets)))
			}
			for short, pt := range podTemplates(t, r) {
				c := theContainer(t, pt)
				if got := envFromList(c); !slices.Equal(got, tc.envFrom) {
					t.Errorf("%s: envFrom %v, want %v", short, got, tc.envFrom)
				}
				if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PROVIDER"); v != tc.provider {
					t.Errorf("%s: SNAPSHOT_CLOUD_PROVIDER %q, want %q", short, v, tc.provider)
				}
				if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PREFIX"); v != tc.prefix {
					t.Errorf("%s: SNAPSHOT_CLOUD_PREFIX %q, want %q", short, v, tc.prefix)
				}
			}
			if strings.Contains(r.Notes, "WARNING: cloud.provider is empty") {
				t.Errorf("NOTES warn about an empty provider although tap.snapshots.cloud sets it")
			}
		})
	}
}

// TestCloudOverTap: a cloud.* setting wins over the same tap.snapshots.cloud
// one, and the tap block fills in what cloud.* leaves unset.
func TestCloudOverTap(t *testing.T) {
	r := render(t, upstreamFixture(t, "values-s3.yaml")+`
cloud:
  prefix: mine/
  configMaps: [extra]
  s3: {region: eu-central-1, endpoint: "http://127.0.0.1:9000", forcePathStyle: true}
`)
	want := map[string]string{
		"SNAPSHOT_AWS_BUCKET":           "kubeshark-snapshots",
		"SNAPSHOT_AWS_REGION":           "eu-central-1",
		"SNAPSHOT_AWS_ENDPOINT":         "http://127.0.0.1:9000",
		"SNAPSHOT_AWS_FORCE_PATH_STYLE": "true",
	}
	if got := r.ConfigMaps[fullname+"-cloud-config"].Data; !maps.Equal(got, want) {
		t.Errorf("ConfigMap %v, want %v", got, want)
	}
	for short, pt := range podTemplates(t, r) {
		c := theContainer(t, pt)
		if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PREFIX"); v != "mine/" {
			t.Errorf("%s: prefix %q, want cloud.prefix", short, v)
		}
		want := []string{"configMap:extra", "configMap:" + fullname + "-cloud-config", "secret:" + fullname + "-cloud-secret"}
		if got := envFromList(c); !slices.Equal(got, want) {
			t.Errorf("%s: envFrom %v, want %v", short, got, want)
		}
	}
}

// gcsFixtureKey is the key in testdata/upstream/values-gcs.yaml, as the
// Secret must hold it: the YAML block scalar keeps its final line break
// (the job trims it).
const gcsFixtureKey = `{"type": "service_account", "project_id": "my-gcp-project", "private_key_id": "0123abcd", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCEXAMPLEKEY\n-----END PRIVATE KEY-----\n", "client_email": "kubeshark@my-gcp-project.iam.gserviceaccount.com", "client_id": "100000000000000000000", "token_uri": "https://oauth2.googleapis.com/token"}
`

// TestGCSRenders: inline gcs values, from cloud.gcs or tap.snapshots.cloud.gcs,
// render the non-secret settings into the ConfigMap and the key into the
// Secret only.
func TestGCSRenders(t *testing.T) {
	const key = `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nGCSKEYMATERIALEXAMPLE\n-----END PRIVATE KEY-----\n","client_email":"s@p.iam.gserviceaccount.com"}`
	for name, values := range map[string]string{
		"cloud": `cloud: {provider: gcs, gcs: {bucket: snaps, project: proj, endpoint: "https://storage.example.com", credentialsJson: '` + key + `'}}`,
		"tap":   `tap: {snapshots: {cloud: {provider: gcs, gcs: {bucket: snaps, project: proj, credentialsJson: '` + key + `'}}}}` + "\ncloud: {gcs: {endpoint: \"https://storage.example.com\"}}",
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			want := map[string]string{"SNAPSHOT_GCS_BUCKET": "snaps", "SNAPSHOT_GCS_PROJECT": "proj", "SNAPSHOT_GCS_ENDPOINT": "https://storage.example.com"}
			if got := r.ConfigMaps[fullname+"-cloud-config"].Data; !maps.Equal(got, want) {
				t.Errorf("ConfigMap %v, want %v", got, want)
			}
			checkSecret(t, r, map[string]string{"SNAPSHOT_GCS_CREDENTIALS_JSON": key})
			checkSecretsOnlyInSecret(t, values, "GCSKEYMATERIALEXAMPLE", key)
			for short, pt := range podTemplates(t, r) {
				c := theContainer(t, pt)
				if v, _ := envValue(t, c, "SNAPSHOT_CLOUD_PROVIDER"); v != "gcs" {
					t.Errorf("%s: SNAPSHOT_CLOUD_PROVIDER %q, want gcs", short, v)
				}
				want := []string{"configMap:" + fullname + "-cloud-config", "secret:" + fullname + "-cloud-secret"}
				if got := envFromList(c); !slices.Equal(got, want) {
					t.Errorf("%s: envFrom %v, want %v", short, got, want)
				}
			}
		})
	}
}

// TestGCSWorkloadIdentity: the documented GKE workload identity setup (no
// key, the ServiceAccount annotated) renders no Secret and puts the
// annotation on the ServiceAccount the Jobs run as.
func TestGCSWorkloadIdentity(t *testing.T) {
	const gsa = "kubeshark-snapshots@my-project.iam.gserviceaccount.com"
	r := render(t, `cloud: {provider: gcs, prefix: snapshots/, gcs: {bucket: my-kubeshark-snapshots}}
serviceAccount: {annotations: {iam.gke.io/gcp-service-account: `+gsa+`}}`)
	if len(r.Secrets) != 0 {
		t.Errorf("Secrets rendered without a key: %v", slices.Collect(maps.Keys(r.Secrets)))
	}
	if got := r.ConfigMaps[fullname+"-cloud-config"].Data; !maps.Equal(got, map[string]string{"SNAPSHOT_GCS_BUCKET": "my-kubeshark-snapshots"}) {
		t.Errorf("ConfigMap %v", got)
	}
	sa := r.ServiceAccounts[fullname]
	if sa == nil || sa.Annotations["iam.gke.io/gcp-service-account"] != gsa {
		t.Fatalf("ServiceAccount %s annotations: %+v", fullname, sa)
	}
	for short, pt := range podTemplates(t, r) {
		if pt.Spec.ServiceAccountName != fullname {
			t.Errorf("%s runs as %q, want %s", short, pt.Spec.ServiceAccountName, fullname)
		}
	}
}

// TestTapTyposRejected: the snapshot block is checked as strictly as
// cloud.*; Kubeshark's other settings are not this chart's business.
func TestTapTyposRejected(t *testing.T) {
	for values, mention := range map[string]string{
		"tap: {snapshots: {cloud: {provder: s3}}}":             "provder",
		"tap: {snapshots: {cloud: {s3: {bucekt: b}}}}":         "bucekt",
		"tap: {snapshots: {cloud: {provider: minio}}}":         "provider",
		"tap: {snapshots: {cloud: {configMaps: one}}}":         "configMaps",
		"tap: {snapshots: {cloud: {azblob: {storagekey: k}}}}": "storagekey",
	} {
		_, err := renderErr(t, values)
		if err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("%s: error %v, want one naming %q", values, err, mention)
		}
	}
	if _, err := renderErr(t, "tap: {regex: '.*', docker: {tag: v53}}\nlicense: x\nlogLevel: debug"); err != nil {
		t.Errorf("Kubeshark's other values: %v", err)
	}
}

// TestChartReadmeListsEveryValue: the chart README's values table has a row
// for every key of values.yaml (maps the chart passes through as a whole
// count as one key).
func TestChartReadmeListsEveryValue(t *testing.T) {
	readme := string(readRepoFile(t, "charts/snapshot-job/README.md"))
	vals := parseValues(t, string(readRepoFile(t, "charts/snapshot-job/values.yaml")))
	whole := map[string]bool{
		"podSecurityContext": true, "securityContext": true, "resources": true, "podLabels": true, "podAnnotations": true,
		"nodeSelector": true, "affinity": true, "serviceAccount.annotations": true, "snapshots.persistence.annotations": true, "tap": true,
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if sub, ok := v.(map[string]any); ok && !whole[key] {
				walk(key+".", sub)
				continue
			}
			if !strings.Contains(readme, "| `"+key+"` |") {
				t.Errorf("charts/snapshot-job/README.md has no row for %s", key)
			}
		}
	}
	walk("", vals)
}
