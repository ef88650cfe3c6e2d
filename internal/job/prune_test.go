package job

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/retention"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
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

// lockingStore is a file store behind a retention lock on some keys, as
// S3 Object Lock answers: the other keys are deleted.
type lockingStore struct {
	store.Store
	locked map[string]time.Time
	others error
}

func (l lockingStore) Delete(ctx context.Context, keys []string) error {
	var free []string
	le := &store.LockedError{Others: l.others}
	for _, k := range keys {
		if until, ok := l.locked[k]; ok {
			le.Locked = append(le.Locked, store.Locked{Key: k, Until: until})
		} else {
			free = append(free, k)
		}
	}
	if err := l.Store.Delete(ctx, free); err != nil {
		return err
	}
	if len(le.Locked) == 0 && l.others == nil {
		return nil
	}
	return le
}

func TestPruneKeepsLockedSnapshots(t *testing.T) {
	until := time.Date(2026, 12, 24, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		others error
	}{{"lock only", nil}, {"lock and a failure", fmt.Errorf("%w: b: denied", store.ErrAccess)}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "snaps"), 0o755)
			old := []string{"snaps/snap-20200101T000000Z.tar.zst", "snaps/snap-20200102T000000Z.tar.zst"}
			for _, k := range old {
				os.WriteFile(filepath.Join(dir, filepath.FromSlash(k)), []byte("old"), 0o644)
			}
			r, logs := testRunner(t, lockingStore{Store: fileStore(t, dir), locked: map[string]time.Time{old[0]: until}, others: tc.others})
			r.Config.Retention.KeepLast = 1
			res, err := r.Backup(t.Context())
			if tc.others != nil {
				if !errors.Is(err, ErrPrune) || !errors.Is(err, store.ErrAccess) {
					t.Fatalf("err = %v, want ErrPrune with the other failure", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Backup: %v", err)
			}
			if !slices.Equal(res.Deleted, old[1:]) {
				t.Errorf("deleted %q, want only %q", res.Deleted, old[1:])
			}
			if !strings.Contains(logs.String(), "retained until 2026-12-24T03:00:00Z") || !strings.Contains(logs.String(), "retained_by_lock=1") {
				t.Errorf("logs do not say what the lock kept:\n%s", logs)
			}
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(old[0]))); err != nil {
				t.Errorf("locked snapshot: %v", err)
			}
		})
	}
}
