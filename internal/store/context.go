package store

import (
	"context"
	"fmt"
	"time"
)

// ContextError is ctx's error together with its cause (e.g. the signal
// that stopped the job), so that errors.Is(err, context.Canceled) keeps
// holding and the message says why.
func ContextError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// GraceContext is a context for requests already in flight when ctx ends:
// it outlives ctx by grace (a pod has 30 s between SIGTERM and SIGKILL), so
// that a part or block sent before the cancellation finishes, or fails,
// before the cleanup runs instead of landing after it. stop releases it.
func GraceContext(ctx context.Context, grace time.Duration) (reqCtx context.Context, stop func()) {
	reqCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(grace, abort) })
	return reqCtx, func() { stopGrace(); abort() }
}
