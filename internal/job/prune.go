package job

import (
	"context"
	"time"
)

// prune applies the retention policy. justWritten is never deleted.
func (r *Runner) prune(ctx context.Context, start time.Time, justWritten string) ([]string, error) {
	return nil, nil // wired to internal/retention when it lands
}

// Prune applies retention without a backup.
func (r *Runner) Prune(ctx context.Context) (Result, error) {
	res := Result{Verb: "prune"}
	if err := r.Store.Check(ctx); err != nil {
		return res, err
	}
	deleted, err := r.prune(ctx, r.now(), "")
	res.Deleted = deleted
	res.Outcome = "pruned"
	return res, err
}
