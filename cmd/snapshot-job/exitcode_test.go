package main

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/job"
	"github.com/snapshot-job/snapshot-job/internal/upload"
)

func TestClassify(t *testing.T) {
	wrap := func(errs ...error) error {
		var err error = errors.New("root cause")
		for _, e := range errs {
			err = fmt.Errorf("%w: %w", e, err)
		}
		return err
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("surprise"), 1},
		{wrap(config.ErrInvalid), 2},
		{wrap(upload.ErrAccess), 3},
		{wrap(archive.ErrSource), 4},
		{wrap(archive.ErrTarget), 4},
		{wrap(upload.ErrTransfer), 5},
		{wrap(upload.ErrExists), 5},
		{wrap(upload.ErrTransfer, job.ErrPrune), 6},
		{wrap(upload.ErrAccess, job.ErrPrune), 6},
		{wrap(archive.ErrCorrupt), 7},
		{wrap(archive.ErrUnsafe), 7},
		{wrap(job.ErrNothingToRestore), 8},
		{wrap(upload.ErrNotFound, job.ErrNothingToRestore), 8},
		{wrap(job.ErrNotEmpty), 8},
		{context.DeadlineExceeded, 5},
	} {
		if got, hint := classify(context.Background(), tc.err); got != tc.want || (tc.err != nil && hint == "") {
			t.Errorf("classify(%v) = %d %q, want %d", tc.err, got, hint, tc.want)
		}
	}
	for sig, want := range map[syscall.Signal]int{syscall.SIGTERM: 143, syscall.SIGINT: 130} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(&signalled{sig})
		if got, _ := classify(ctx, wrap(upload.ErrTransfer)); got != want {
			t.Errorf("after %s: %d, want %d", sig, got, want)
		}
	}
}
