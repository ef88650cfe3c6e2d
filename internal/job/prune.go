package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/retention"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// staleUploadAge is how old an incomplete upload must be before pruning
// aborts it: old enough that no running backup can own it.
const staleUploadAge = 24 * time.Hour

// uploadSweeper is offered by stores where a killed upload can leave
// something behind: billed parts (S3 multipart uploads), partial files
// (the file store). Azure's uncommitted blocks expire by themselves.
type uploadSweeper interface {
	// SweepIncomplete aborts or removes what uploads under prefix
	// started before olderThan left, where match accepts their key, and
	// returns those keys.
	SweepIncomplete(ctx context.Context, prefix string, olderThan time.Time, match func(key string) bool) ([]string, error)
}

// retentionPolicy is the policy the environment configured.
func retentionPolicy(r config.Retention) retention.Policy {
	return retention.Policy{
		KeepLast:    r.KeepLast,
		KeepDaily:   r.KeepDaily,
		KeepWeekly:  r.KeepWeekly,
		KeepMonthly: r.KeepMonthly,
		MaxAge:      time.Duration(r.MaxAge),
	}
}

// Prune applies retention without a backup.
func (r *Runner) Prune(ctx context.Context) (Result, error) {
	res := Result{Verb: "prune", Outcome: "pruned"}
	if err := r.Store.Check(ctx, store.Write); err != nil {
		return res, err
	}
	if !r.Config.Retention.Enabled() {
		r.Log.Warn("no retention rule is set (SNAPSHOT_RETENTION_KEEP_LAST, _KEEP_DAILY, _KEEP_WEEKLY, _KEEP_MONTHLY, _MAX_AGE): nothing is deleted")
		res.Outcome = "no rule set"
		return res, nil
	}
	deleted, kept, err := r.prune(ctx, r.now(), "")
	res.Deleted, res.Kept = deleted, kept
	return res, err
}

// prune applies the retention policy at the run's start time. The
// snapshot justWritten is never deleted. Every decision is logged with
// its reason: deletions at info, keeps at debug (info in a dry run).
// kept counts the matching snapshots left in place (all of them in a dry
// run).
func (r *Runner) prune(ctx context.Context, start time.Time, justWritten string) (deleted []string, kept int, err error) {
	c := r.Config
	policy := retentionPolicy(c.Retention)
	objs, err := r.Store.List(ctx, c.Prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %q: %w", c.Prefix, err)
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	snaps := retention.Match(c.Prefix, c.Name, keys)
	dry := c.Retention.DryRun
	var doomed []string
	for _, d := range retention.Plan(snaps, policy, start, justWritten) {
		switch {
		case !d.Keep && dry:
			r.Log.Info("would delete (dry run)", "key", d.Key, "reason", d.Reason())
		case !d.Keep:
			r.Log.Info("deleting snapshot", "key", d.Key, "reason", d.Reason())
		case dry:
			r.Log.Info("would keep (dry run)", "key", d.Key, "reason", d.Reason())
		default:
			r.Log.Debug("keeping snapshot", "key", d.Key, "reason", d.Reason())
		}
		if !d.Keep {
			doomed = append(doomed, d.Key)
		}
	}
	summary := func(deleted, locked int) {
		r.Log.Info("retention", "policy", policy.String(), "snapshots", len(snaps), "delete", deleted,
			"keep", len(snaps)-deleted, "retained_by_lock", locked, "other_keys_untouched", len(keys)-len(snaps), "dry_run", dry)
	}
	if dry {
		summary(len(doomed), 0)
		return nil, len(snaps), nil
	}
	err = r.Store.Delete(ctx, doomed)
	locked := 0
	if le, ok := errors.AsType[*store.LockedError](err); ok {
		// The store keeps what its lock protects, as it was set up to:
		// those snapshots are kept, and pruning them again once the lock
		// expires deletes them.
		held := map[string]bool{}
		for _, l := range le.Locked {
			held[l.Key] = true
			if l.Until.IsZero() {
				r.Log.Info("keeping snapshot: retained by a legal hold", "key", l.Key)
			} else {
				until := l.Until.UTC().Format(time.RFC3339)
				r.Log.Info("keeping snapshot: retained until "+until+" by its lock", "key", l.Key, "retained_until", until)
			}
		}
		doomed = slices.DeleteFunc(doomed, func(k string) bool { return held[k] })
		locked, err = len(held), le.Others
	}
	if err != nil {
		return nil, 0, fmt.Errorf("deleting %d snapshots: %w", len(doomed), err)
	}
	summary(len(doomed), locked)
	if s, ok := r.Store.(uploadSweeper); ok {
		ours := func(key string) bool {
			_, ok := snapname.Parse(c.Prefix, c.Name, key)
			return ok
		}
		// The store logs each upload it aborts.
		if _, err := s.SweepIncomplete(ctx, c.Prefix, start.Add(-staleUploadAge), ours); err != nil {
			return doomed, len(snaps) - len(doomed), fmt.Errorf("aborting incomplete uploads: %w", err)
		}
	}
	return doomed, len(snaps) - len(doomed), nil
}
