package config

import (
	"slices"
	"strings"
	"testing"
)

func TestMisspeltSafetySettingsStop(t *testing.T) {
	for name, want := range map[string]string{
		"SNAPSHOT_RETENTION_DRYRUN":     "SNAPSHOT_RETENTION_DRY_RUN",
		"SNAPSHOT_RETENTION_DRY_RUM":    "SNAPSHOT_RETENTION_DRY_RUN",
		"SNAPSHOT_RETENTION_KEEP_LATS":  "SNAPSHOT_RETENTION_KEEP_LAST",
		"SNAPSHOT_RETENTION_KEEP_DAYLY": "SNAPSHOT_RETENTION_KEEP_DAILY",
		"SNAPSHOT_RETENTION_MAXAGE":     "SNAPSHOT_RETENTION_MAX_AGE",
		"SNAPSHOT_RESTORE_IF_MISING":    "SNAPSHOT_RESTORE_IF_MISSING",
		"SNAPSHOT_RESTORE_IF_EMPTY":     "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
		"SNAPSHOT_RESTORE_IFNOTEMPTY":   "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
		"SNAPSHOT_DRY_RUN":              "SNAPSHOT_RETENTION_DRY_RUN",
		"SNAPSHOT_KEEP_LAST":            "SNAPSHOT_RETENTION_KEEP_LAST",
		"SNAPSHOT_IF_NOT_EMPTY":         "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
		"snapshot_retention_dry_run":    "SNAPSHOT_RETENTION_DRY_RUN",
		"Snapshot_Restore_If_Not_Empty": "SNAPSHOT_RESTORE_IF_NOT_EMPTY",
	} {
		w, p := UnknownVariables([]string{name + "=true"}, false)
		if len(w) != 0 || len(p) != 1 || !strings.HasPrefix(p[0], name+": ") || !strings.Contains(p[0], "safety setting "+want+";") ||
			!strings.Contains(p[0], "SNAPSHOT_ALLOW_UNKNOWN=true") {
			t.Errorf("%s: warnings %q, problems %q; want one problem naming %s", name, w, p, want)
		}
		w, p = UnknownVariables([]string{name + "=true"}, true)
		if len(p) != 0 || len(w) != 1 || !strings.Contains(w[0], want) || !strings.Contains(w[0], "running anyway because SNAPSHOT_ALLOW_UNKNOWN=true") {
			t.Errorf("%s with SNAPSHOT_ALLOW_UNKNOWN=true: warnings %q, problems %q; want one warning", name, w, p)
		}
	}
}

func TestOtherUnknownNamesWarn(t *testing.T) {
	for name, want := range map[string]string{
		"SNAPSHOT_AWS_BUKET":               "did you mean SNAPSHOT_AWS_BUCKET?",
		"SNAPSHOT_CLOUD_PREFX":             "did you mean SNAPSHOT_CLOUD_PREFIX?",
		"snapshot_name":                    "did you mean SNAPSHOT_NAME?",
		"SNAPSHOT_ALLOW_UNKNWON":           "did you mean SNAPSHOT_ALLOW_UNKNOWN?",
		"SNAPSHOT_RESTORE_KYE":             "did you mean SNAPSHOT_RESTORE_KEY?",
		"SNAPSHOT_GCS_BUKET":               "did you mean SNAPSHOT_GCS_BUCKET?",
		"SNAPSHOT_GCS_CREDENTIAL_JSON":     "did you mean SNAPSHOT_GCS_CREDENTIALS_JSON?",
		"SNAPSHOT_METRICS_PUSHGATEWAY_UTL": "did you mean SNAPSHOT_METRICS_PUSHGATEWAY_URL?",
		// Kubernetes service links of a Service named "snapshot": far
		// from every name, so never taken for a safety setting.
		"SNAPSHOT_PORT":                "the nearest known name is",
		"SNAPSHOT_SERVICE_HOST":        "the nearest known name is",
		"SNAPSHOT_SERVICE_PORT":        "the nearest known name is",
		"SNAPSHOT_PORT_8080_TCP":       "the nearest known name is",
		"SNAPSHOT_PORT_8080_TCP_PROTO": "the nearest known name is",
		"SNAPSHOT_PORT_8080_TCP_ADDR":  "the nearest known name is",
		"SNAPSHOT_PORT_8080_TCP_PORT":  "the nearest known name is",
		"SNAPSHOT_SERVICE_PORT_HTTP":   "the nearest known name is",
	} {
		w, p := UnknownVariables([]string{name + "=x"}, false)
		if len(p) != 0 || len(w) != 1 || !strings.Contains(w[0], want) {
			t.Errorf("%s: warnings %q, problems %q; want one warning with %q", name, w, p, want)
		}
	}
}

// A misspelt SNAPSHOT_RESTORE_PATHS would restore the whole snapshot.
func TestMisspeltRestorePathsStops(t *testing.T) {
	for _, name := range []string{"SNAPSHOT_RESTORE_PATH", "SNAPSHOT_RESTOR_PATHS"} {
		w, p := UnknownVariables([]string{name + "=node-1"}, false)
		if len(w) != 0 || len(p) != 1 || !strings.Contains(p[0], "SNAPSHOT_RESTORE_PATHS") {
			t.Errorf("%s: warnings %q, problems %q; want one problem naming SNAPSHOT_RESTORE_PATHS", name, w, p)
		}
	}
}

func TestKnownVariablesAreNotReported(t *testing.T) {
	var environ []string
	for _, k := range KnownVariables() {
		environ = append(environ, k+"=x")
	}
	if w, p := UnknownVariables(environ, false); len(w)+len(p) != 0 {
		t.Errorf("known variables reported: %q %q", w, p)
	}
}

func TestLoadStopsOnMisspeltSafetySetting(t *testing.T) {
	setenv(t, append(append([]string{}, fileBase...), "SNAPSHOT_RETENTION_DRYRUN", "true", "SNAPSHOT_RETENTION_KEEP_LAST", "1")...)
	_, _, err := Load()
	wantProblem(t, "DRYRUN", err, "SNAPSHOT_RETENTION_DRYRUN", "SNAPSHOT_RETENTION_DRY_RUN")

	t.Setenv("SNAPSHOT_ALLOW_UNKNOWN", "true")
	c, warnings, err := Load()
	if err != nil || c.Retention.DryRun || !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "SNAPSHOT_RETENTION_DRYRUN") }) {
		t.Errorf("with SNAPSHOT_ALLOW_UNKNOWN=true: %v, warnings %q", err, warnings)
	}

	// A value that does not parse still reports the misspelt name.
	t.Setenv("SNAPSHOT_ALLOW_UNKNOWN", "")
	t.Setenv("SNAPSHOT_PART_SIZE", "lots")
	_, _, err = Load()
	wantProblem(t, "DRYRUN and a bad size", err, "SNAPSHOT_PART_SIZE", "SNAPSHOT_RETENTION_DRYRUN")
}
