package store

import (
	"context"
	"fmt"
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
