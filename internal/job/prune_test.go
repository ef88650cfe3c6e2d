package job

import (
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/retention"
	"github.com/snapshot-job/snapshot-job/internal/setting"
)

func TestRetentionPolicy(t *testing.T) {
	got := retentionPolicy(config.Retention{KeepLast: 1, KeepDaily: 2, KeepWeekly: 3, KeepMonthly: 4, MaxAge: setting.Duration(5 * time.Hour), DryRun: true})
	want := retention.Policy{KeepLast: 1, KeepDaily: 2, KeepWeekly: 3, KeepMonthly: 4, MaxAge: 5 * time.Hour}
	if got != want {
		t.Errorf("retentionPolicy = %+v, want %+v", got, want)
	}
	// Both must agree on "any rule set", or the job and the plan would
	// disagree about whether pruning runs.
	for _, r := range []config.Retention{{}, {KeepLast: 1}, {KeepDaily: 1}, {KeepWeekly: 1}, {KeepMonthly: 1}, {MaxAge: 1}, {DryRun: true}} {
		if retentionPolicy(r).Enabled() != r.Enabled() {
			t.Errorf("%+v: Policy.Enabled = %v, config Enabled = %v", r, retentionPolicy(r).Enabled(), r.Enabled())
		}
	}
}
