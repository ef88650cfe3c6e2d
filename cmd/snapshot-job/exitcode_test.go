package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/job"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/volume"
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
		{wrap(setting.ErrInvalid), 2},
		{wrap(store.ErrAccess), 3},
		{wrap(archive.ErrSource), 4},
		{wrap(archive.ErrTarget), 4},
		{wrap(store.ErrTransfer), 5},
		{wrap(store.ErrExists), 5},
		{wrap(store.ErrTransfer, job.ErrPrune), 6},
		{wrap(store.ErrAccess, job.ErrPrune), 6},
		{wrap(archive.ErrCorrupt), 7},
		{wrap(archive.ErrUnsafe), 7},
		{wrap(job.ErrNothingToRestore), 8},
		{wrap(store.ErrNotFound, job.ErrNothingToRestore), 8},
		{wrap(job.ErrNotEmpty), 8},
		{wrap(archive.ErrNoMatch), 8},
		{wrap(store.ErrNotFound, job.ErrKeyNotFound), 8},
		{wrap(volume.ErrBusy), 9},
		{context.DeadlineExceeded, 5},
	} {
		if got, hint := classify(context.Background(), "backup", tc.err); got != tc.want || (tc.err != nil && hint == "") {
			t.Errorf("classify(%v) = %d %q, want %d", tc.err, got, hint, tc.want)
		}
	}
	for sig, want := range map[syscall.Signal]int{syscall.SIGTERM: 143, syscall.SIGINT: 130} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(&signalled{sig})
		if got, _ := classify(ctx, "backup", wrap(store.ErrTransfer)); got != want {
			t.Errorf("after %s: %d, want %d", sig, got, want)
		}
	}
}

// Each verb gets the advice that fits what it did: a verify wrote
// nothing to restore from, a backup blocked by a restore is not a
// restore blocked by another.
func TestHintsDependOnTheVerb(t *testing.T) {
	for _, tc := range []struct {
		verb     string
		err      error
		want     []string
		wantNot  []string
		wantCode int
	}{
		{"restore", archive.ErrCorrupt, []string{"nothing was written", "restore an older one"}, nil, 7},
		{"verify", archive.ErrCorrupt, []string{"verify the older ones", "take a new backup"}, []string{"nothing was written", "restore an older one"}, 7},
		{"verify", archive.ErrUnsafe, []string{"verify the older ones"}, []string{"restore an older one"}, 7},
		{"verify", archive.ErrUnverifiable, []string{"not written by snapshot-job", "no checksums"}, []string{"damaged"}, 7},
		{"restore", job.ErrNothingToRestore, []string{"SNAPSHOT_RESTORE_IF_MISSING=ok", "SNAPSHOT_CLOUD_PREFIX"}, nil, 8},
		{"verify", job.ErrNothingToRestore, []string{"no snapshot to verify", "SNAPSHOT_CLOUD_PREFIX"}, []string{"IF_MISSING"}, 8},
		{"restore", fmt.Errorf("%w: %w", job.ErrKeyNotFound, store.ErrNotFound), []string{"SNAPSHOT_RESTORE_KEY names no object", "applies only to latest"}, []string{"set SNAPSHOT_RESTORE_IF_MISSING=ok"}, 8},
		{"verify", job.ErrKeyNotFound, []string{"SNAPSHOT_RESTORE_KEY names no object"}, []string{"set SNAPSHOT_RESTORE_IF_MISSING=ok"}, 8},
		{"backup", volume.ErrBusy, []string{"a restore is writing into SNAPSHOT_SOURCE_DIR", "nothing was stored", "backoffLimit"}, []string{"SNAPSHOT_RESTORE_DIR"}, 9},
		{"restore", volume.ErrBusy, []string{"another restore is writing into SNAPSHOT_RESTORE_DIR", "nothing was written"}, []string{"SNAPSHOT_SOURCE_DIR"}, 9},
		{"backup", store.ErrTransfer, []string{"nothing partial was stored"}, nil, 5},
		{"restore", store.ErrTransfer, []string{"nothing was written to SNAPSHOT_RESTORE_DIR"}, []string{"stored"}, 5},
		{"list", store.ErrTransfer, []string{"run the job again"}, []string{"stored", "written"}, 5},
	} {
		code, hint := classify(context.Background(), tc.verb, fmt.Errorf("boom: %w", tc.err))
		if code != tc.wantCode {
			t.Errorf("%s %v: exit %d, want %d", tc.verb, tc.err, code, tc.wantCode)
		}
		for _, w := range tc.want {
			if !strings.Contains(hint, w) {
				t.Errorf("%s %v: hint %q lacks %q", tc.verb, tc.err, hint, w)
			}
		}
		for _, w := range tc.wantNot {
			if strings.Contains(hint, w) {
				t.Errorf("%s %v: hint %q has %q", tc.verb, tc.err, hint, w)
			}
		}
	}
}
