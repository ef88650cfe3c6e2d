package metrics

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestSeriesFollowPrometheusNaming(t *testing.T) {
	end := time.Date(2026, 11, 26, 3, 15, 42, 0, time.UTC)
	for _, code := range []int{0, 3} {
		mfs, err := Gatherer(Run{Verb: "backup", Start: end.Add(-90 * time.Second), End: end, ExitCode: code}).Gather()
		if err != nil {
			t.Fatal(err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
		var names []string
		for _, mf := range mfs {
			names = append(names, mf.GetName())
			if mf.GetHelp() == "" {
				t.Errorf("%s has no help", mf.GetName())
			}
		}
		want := []string{Duration, Entries, EndTime, ExitCode, SourceBytes, Deleted, Kept, StartTime, StoredBytes}
		if code == 0 {
			want = append(want, LastSuccess)
		}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("exit %d: series %q, want %q", code, names, want)
		}
	}
}

func TestGrouping(t *testing.T) {
	run := Run{Verb: "backup", Snapshot: "kubeshark"}
	if g := Grouping(Config{}, run); !slices.Equal(g, [][2]string{{"snapshot", "kubeshark"}, {"verb", "backup"}}) {
		t.Errorf("grouping without namespace or CronJob: %q", g)
	}
	g := Grouping(Config{Namespace: "ks", CronJob: "snap-backup"}, run)
	if !slices.Equal(g, [][2]string{{"snapshot", "kubeshark"}, {"verb", "backup"}, {"namespace", "ks"}, {"cronjob", "snap-backup"}}) {
		t.Errorf("grouping: %q", g)
	}
}
