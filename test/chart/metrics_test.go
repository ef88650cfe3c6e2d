package chart

import (
	"testing"

	"github.com/snapshot-job/snapshot-job/test/chart/podcontract"
)

// TestMetricsEnvironment: metrics.* reach every pod, and every pod can
// name its grouping labels: the namespace from the downward API in each,
// the CronJob's name in the CronJobs' pods only (a Job made from one with
// kubectl create job --from keeps it).
func TestMetricsEnvironment(t *testing.T) {
	for name, values := range map[string]string{"default": valueSets["default"], "metrics": valueSets["metrics"]} {
		r := render(t, values)
		pts := podTemplates(t, r)
		if len(pts) != 3 {
			t.Fatalf("%s: pod templates %d, want backup, restore and the hook", name, len(pts))
		}
		for short, pt := range pts {
			c := theContainer(t, pt)
			e, ok := envOf(c)["POD_NAMESPACE"]
			if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("%s %s: POD_NAMESPACE %+v, want the downward API's metadata.namespace", name, short, e)
			}
			env, err := podcontract.Environment(harnessInput(r, pt), c)
			if err != nil {
				t.Fatal(err)
			}
			if env["POD_NAMESPACE"] != namespace {
				t.Errorf("%s %s: POD_NAMESPACE resolves to %q, want %q", name, short, env["POD_NAMESPACE"], namespace)
			}
			wantCron := map[string]string{"backup": fullname + "-backup", "restore": fullname + "-restore", "hook": ""}[short]
			if env["SNAPSHOT_METRICS_CRONJOB"] != wantCron {
				t.Errorf("%s %s: SNAPSHOT_METRICS_CRONJOB %q, want %q", name, short, env["SNAPSHOT_METRICS_CRONJOB"], wantCron)
			}
			url, job := "", ""
			if name == "metrics" {
				url, job = "http://prometheus-pushgateway.monitoring:9091", "kubeshark-backups"
			}
			for k, want := range map[string]string{"SNAPSHOT_METRICS_PUSHGATEWAY_URL": url, "SNAPSHOT_METRICS_JOB": job} {
				got, set := envValue(t, c, k)
				if got != want || set != (want != "") {
					t.Errorf("%s %s: %s %q (set %v), want %q", name, short, k, got, set, want)
				}
			}
		}
	}

	// extraEnv takes POD_NAMESPACE over, as it does every name.
	r := render(t, "extraEnv: [{name: POD_NAMESPACE, value: elsewhere}]")
	for short, pt := range podTemplates(t, r) {
		var n int
		for _, e := range theContainer(t, pt).Env {
			if e.Name == "POD_NAMESPACE" {
				n++
				if e.Value != "elsewhere" {
					t.Errorf("%s: POD_NAMESPACE %+v, want extraEnv's", short, e)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d POD_NAMESPACE entries, want 1", short, n)
		}
	}
}
