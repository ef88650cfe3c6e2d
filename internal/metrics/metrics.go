// Package metrics pushes a run's result to a Prometheus Pushgateway when
// the run ends, so that a backup that stops succeeding pages someone
// instead of being found out on the day of the restore.
//
// Every push is an add (HTTP POST): it replaces only the series it
// carries in its group. A run that fails carries no
// snapshot_job_last_success_timestamp_seconds, so the last successful
// run's value stays in the Pushgateway; every other series describes the
// last run, whatever its outcome.
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

// Timeout bounds a whole push (connect, send, answer): a Pushgateway that
// is down or slow costs a run at most this long, SIGTERM'd runs included.
const Timeout = 5 * time.Second

// Grouping label names besides job. A label is left out when its value
// is unknown (no POD_NAMESPACE, no SNAPSHOT_METRICS_CRONJOB).
const (
	LabelSnapshot  = "snapshot"
	LabelVerb      = "verb"
	LabelNamespace = "namespace"
	LabelCronJob   = "cronjob"
)

// Series names. Per-run values are gauges: each run replaces them, so
// none is a counter and none ends in _total, which Prometheus keeps for
// counters.
const (
	StartTime   = "snapshot_job_start_timestamp_seconds"
	EndTime     = "snapshot_job_end_timestamp_seconds"
	Duration    = "snapshot_job_duration_seconds"
	ExitCode    = "snapshot_job_exit_code"
	SourceBytes = "snapshot_job_source_bytes"
	StoredBytes = "snapshot_job_stored_bytes"
	Entries     = "snapshot_job_entries"
	Deleted     = "snapshot_job_snapshots_deleted"
	Kept        = "snapshot_job_snapshots_kept"
	LastSuccess = "snapshot_job_last_success_timestamp_seconds"
)

// Run is what one run did, as the metrics report it.
type Run struct {
	Verb string
	// Snapshot is SNAPSHOT_NAME.
	Snapshot   string
	Start, End time.Time
	ExitCode   int
	// SourceBytes are the content bytes of the tree's files: archived
	// (backup), restored or checked.
	SourceBytes int64
	// StoredBytes are the bytes of the snapshot object: stored (backup),
	// read (restore, verify), or of all snapshots listed (list).
	StoredBytes int64
	Entries     int64
	// Deleted and Kept count this job's snapshots that retention deleted
	// and kept; 0 when retention did not run.
	Deleted, Kept int
}

// help describes each series; it is also what docs/metrics.md lists.
var help = map[string]string{
	StartTime:   "Unix time the run started.",
	EndTime:     "Unix time the run ended.",
	Duration:    "Seconds the run took, from start to end.",
	ExitCode:    "Exit code of the run: 0 success, 143 SIGTERM, others as in docs/exit-codes.md.",
	SourceBytes: "Content bytes of the snapshot's files: archived by backup, restored by restore, checked by verify.",
	StoredBytes: "Bytes of the snapshot object: stored by backup, read by restore and verify, of all snapshots for list.",
	Entries:     "Tar entries (files, directories, links) archived, restored or checked.",
	Deleted:     "Snapshots retention deleted in this run (0 when retention did not run).",
	Kept:        "Snapshots of this job retention kept in this run (0 when retention did not run).",
	LastSuccess: "Unix time the last successful run ended; pushed by successful runs only.",
}

// Gatherer returns the series of run: every one of them, and the last
// success only when the run succeeded.
func Gatherer(run Run) prometheus.Gatherer {
	reg := prometheus.NewPedanticRegistry()
	set := func(name string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help[name]})
		g.Set(v)
		reg.MustRegister(g)
	}
	set(StartTime, seconds(run.Start))
	set(EndTime, seconds(run.End))
	set(Duration, run.End.Sub(run.Start).Seconds())
	set(ExitCode, float64(run.ExitCode))
	set(SourceBytes, float64(run.SourceBytes))
	set(StoredBytes, float64(run.StoredBytes))
	set(Entries, float64(run.Entries))
	set(Deleted, float64(run.Deleted))
	set(Kept, float64(run.Kept))
	if run.ExitCode == 0 {
		set(LastSuccess, seconds(run.End))
	}
	return reg
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Push adds run's series to the Pushgateway c names, under the job
// c.Job and the grouping labels, within Timeout (and ctx, which should
// not be the run's own: a SIGTERM'd run pushes too). The error never
// holds the URL's user information.
func Push(ctx context.Context, c Config, run Run) error {
	base, user, problem := endpoint(c.PushgatewayURL.Reveal())
	if problem != "" {
		return fmt.Errorf("%s%s %s", env, "PUSHGATEWAY_URL", problem)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p := push.New(base, c.Job).
		Gatherer(Gatherer(run)).
		Client(&http.Client{Transport: tr, Timeout: Timeout})
	for _, l := range Grouping(c, run) {
		p = p.Grouping(l[0], l[1])
	}
	if user != nil {
		pw, _ := user.Password()
		p = p.BasicAuth(user.Username(), pw)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("pushing metrics to %s: %w", base, err)
	}
	return nil
}

// Grouping is the grouping key besides job, as name/value pairs, without
// the labels whose value is unknown.
func Grouping(c Config, run Run) [][2]string {
	var out [][2]string
	for _, l := range [][2]string{
		{LabelSnapshot, run.Snapshot},
		{LabelVerb, run.Verb},
		{LabelNamespace, c.Namespace},
		{LabelCronJob, c.CronJob},
	} {
		if l[1] != "" {
			out = append(out, l)
		}
	}
	return out
}
