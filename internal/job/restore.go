package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/volume"
)

// Restore extracts a snapshot into the restore directory. It holds the
// directory's volume lock from before it touches anything there until it
// is done, so that no other run reads or writes a half-restored tree.
func (r *Runner) Restore(ctx context.Context) (Result, error) {
	start := time.Now()
	res := Result{Verb: "restore"}
	c := r.Config
	if err := r.Store.Check(ctx, store.Read); err != nil {
		return res, err
	}
	dir := c.Restore.Dir
	// Settle what can be settled without touching the target: a target
	// that holds data and is to be skipped or refused stays as it is.
	// Unless a restore is running in it or was interrupted mid-commit:
	// then what it holds now says nothing, and the lock decides.
	pending, err := volume.Pending(dir)
	if err == nil && !pending {
		pending, err = archive.Interrupted(dir)
	}
	if err != nil {
		return res, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	if !pending {
		if done, err := r.notEmpty(dir, &res); done || err != nil {
			return res, err
		}
	}
	src, err := r.openSource(ctx)
	if errors.Is(err, ErrNothingToRestore) && c.Restore.Key == "latest" && c.Restore.IfMissing == "ok" {
		r.Log.Info("nothing to restore (SNAPSHOT_RESTORE_IF_MISSING=ok)", "reason", err.Error())
		res.Outcome = "nothing to restore"
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer src.close()
	res.Key = src.obj.Key

	lock, err := volume.Acquire(ctx, dir, r.Log)
	if err != nil {
		return res, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	// A lock found lost by its heartbeat stops the restore before it
	// moves anything more.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lock.Lost():
			cancel(lock.Err())
		case <-ctx.Done():
		}
	}()
	res, err = r.restoreLocked(ctx, lock, src, res, start)
	if err != nil {
		if derr := lock.Discard(); derr != nil && !errors.Is(err, volume.ErrBusy) {
			r.Log.Warn("could not release the volume lock", "dir", dir, "error", derr.Error())
		}
		return res, err
	}
	if err := lock.Release(); err != nil {
		return res, fmt.Errorf("restore directory %s: the snapshot is in place, but %w", dir, err)
	}
	return res, nil
}

// restoreSource is the opened snapshot: a stream of the whole object, or,
// for a partial restore of a snapshot with an index, the index through
// which only the frames holding the selection are fetched.
type restoreSource struct {
	obj  store.Object
	rc   io.ReadCloser  // the whole object; nil when ix is set
	ix   *archive.Index // nil when rc is set
	read *atomic.Int64  // bytes fetched from the store
}

func (s *restoreSource) close() {
	if s.rc != nil {
		s.rc.Close()
	}
}

// openSource opens the snapshot to restore. A partial restore goes
// through the snapshot's index when it has one; a snapshot without one
// (an earlier version's) is read whole, as before, and the log says so.
func (r *Runner) openSource(ctx context.Context) (*restoreSource, error) {
	if r.Config.Restore.Selection == nil {
		rc, obj, err := r.open(ctx)
		if err != nil {
			return nil, err
		}
		return &restoreSource{obj: obj, rc: rc, read: new(atomic.Int64)}, nil
	}
	obj, err := r.object(ctx)
	if err != nil {
		return nil, err
	}
	rg, ranger, size, err := r.ranger(ctx, obj)
	if err != nil {
		return nil, err
	}
	ix, err := archive.OpenIndex(ctx, ranger, size)
	if err == nil {
		return &restoreSource{obj: obj, ix: ix, read: &rg.read}, nil
	}
	if !errors.Is(err, archive.ErrNoIndex) {
		return nil, fmt.Errorf("opening the index of %s: %w", obj.Key, err)
	}
	r.Log.Info("the snapshot has no index (an earlier version wrote it): reading all of it to restore the selected paths", "key", obj.Key, "bytes", obj.Size)
	rc, _, err := r.openKey(ctx, obj.Key)
	if err != nil {
		return nil, err
	}
	return &restoreSource{obj: obj, rc: rc, read: new(atomic.Int64)}, nil
}

// restoreLocked does the part of a restore that needs the lock: it
// cleans up after interrupted restores, judges the target, and extracts.
// Every failure leaves the target as it was.
func (r *Runner) restoreLocked(ctx context.Context, lock *volume.Lock, src *restoreSource, res Result, start time.Time) (Result, error) {
	c := r.Config
	dir := c.Restore.Dir
	// Holding the lock, every staging directory in dir is abandoned.
	// Before the emptiness check: rolling back an interrupted commit puts
	// the target's earlier entries back.
	if err := archive.Recover(dir, r.Log); err != nil {
		return res, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	if done, err := r.notEmpty(dir, &res); done || err != nil {
		return res, err
	}
	obj := src.obj
	if sel := c.Restore.Selection; sel != nil {
		r.Log.Info("restore started", "key", obj.Key, "bytes", obj.Size, "store", r.Store.String(), "dir", dir, "paths", sel.String())
	} else {
		r.Log.Info("restore started", "key", obj.Key, "bytes", obj.Size, "store", r.Store.String(), "dir", dir)
	}
	read := src.read
	var written atomic.Int64
	prog := startProgress(ctx, r.Log, time.Duration(c.ProgressInterval), "restore", obj.Size,
		meter{"read_bytes", read}, meter{"written_bytes", &written})
	opts := archive.ExtractOptions{
		Overwrite:    c.Restore.IfNotEmpty == "overwrite",
		Paths:        c.Restore.Selection,
		Logger:       r.Log,
		Progress:     &written,
		Token:        lock.Token(),
		BeforeCommit: func() error { return lock.SetPhase(volume.Committing) },
		AfterCommit: func() {
			if err := lock.SetPhase(volume.Committed); err != nil {
				r.Log.Warn("could not record the finished commit in the volume lock", "error", err.Error())
			}
		},
	}
	var (
		st      archive.Stats
		fetched archive.Fetched
		err     error
	)
	if src.ix != nil {
		st, fetched, err = archive.ExtractIndexed(ctx, src.ix, dir, opts)
	} else {
		st, err = archive.Extract(ctx, counter{src.rc, read}, dir, opts)
	}
	prog.done()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("restoring %s into %s: %w", obj.Key, dir, err)
	}
	res.Outcome = "restored"
	res.ObjectBytes, res.SourceBytes, res.Entries = read.Load(), st.Bytes, st.Entries()
	elapsed := time.Since(start)
	args := []any{"key", obj.Key, "dir", dir, "bytes", res.ObjectBytes, "source_bytes", st.Bytes,
		"entries", st.Entries(), "seconds", elapsed.Seconds(),
		"rate_mib_s", round1(float64(st.Bytes) / (1 << 20) / elapsed.Seconds())}
	if src.ix != nil {
		// What the index saved: the share of the object fetched.
		args = append(args, "object_bytes", obj.Size, "fetched_percent", round1(100*float64(res.ObjectBytes)/float64(max(obj.Size, 1))),
			"frames_fetched", fetched.Frames, "frames", src.ix.Frames(), "frame_runs", fetched.Ranges)
	}
	r.Log.Info("snapshot restored", args...)
	return res, nil
}

// notEmpty applies SNAPSHOT_RESTORE_IF_NOT_EMPTY. done means the restore
// ends here (skipped, or refused with err).
func (r *Runner) notEmpty(dir string, res *Result) (done bool, err error) {
	empty, err := archive.TargetEmpty(dir)
	if err != nil {
		return true, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	if empty {
		return false, nil
	}
	switch r.Config.Restore.IfNotEmpty {
	case "skip":
		r.Log.Info("restore skipped: the target is not empty (SNAPSHOT_RESTORE_IF_NOT_EMPTY=skip)", "dir", dir)
		res.Outcome = "skipped: target not empty"
		return true, nil
	case "overwrite":
		r.Log.Warn("the target is not empty; entries of the snapshot will replace entries of the same name (SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite)", "dir", dir)
		return false, nil
	}
	return true, fmt.Errorf("%w: %s holds data", ErrNotEmpty, dir)
}

// Verify reads a snapshot end to end without writing files.
func (r *Runner) Verify(ctx context.Context) (Result, error) {
	start := time.Now()
	res := Result{Verb: "verify"}
	if err := r.Store.Check(ctx, store.Read); err != nil {
		return res, err
	}
	rc, obj, err := r.open(ctx)
	if err != nil {
		return res, err
	}
	defer rc.Close()
	res.Key = obj.Key
	r.Log.Info("verify started", "key", obj.Key, "bytes", obj.Size, "store", r.Store.String())
	var read, checked atomic.Int64
	prog := startProgress(ctx, r.Log, time.Duration(r.Config.ProgressInterval), "verify", obj.Size,
		meter{"read_bytes", &read}, meter{"checked_bytes", &checked})
	// The index, when the snapshot has one, is read by ranges beside the
	// stream and every entry checked against it.
	rg := &storeRanger{s: r.Store, key: obj.Key}
	ix, err := archive.OpenIndex(ctx, rg, obj.Size)
	switch {
	case errors.Is(err, archive.ErrNoIndex):
		r.Log.Info("the snapshot has no index (an earlier version wrote it): verifying the stream alone", "key", obj.Key)
		ix = nil
	case err != nil:
		prog.done()
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("verifying %s: %w", obj.Key, err)
	}
	st, err := archive.Verify(ctx, counter{rc, &read}, archive.VerifyOptions{Logger: r.Log, Progress: &checked, Index: ix})
	prog.done()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("verifying %s: %w", obj.Key, err)
	}
	res.Outcome = "verified"
	res.ObjectBytes, res.SourceBytes, res.Entries = read.Load()+rg.read.Load(), st.Bytes, st.Entries()
	r.Log.Info("snapshot verified", "key", obj.Key, "indexed", ix != nil, "bytes", res.ObjectBytes, "source_bytes", st.Bytes,
		"entries", st.Entries(), "files", st.Files, "dirs", st.Dirs, "symlinks", st.Symlinks,
		"hard_links", st.HardLinks, "seconds", time.Since(start).Seconds())
	return res, nil
}
