package job

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/upload"
)

// Restore extracts a snapshot into the restore directory.
func (r *Runner) Restore(ctx context.Context) (Result, error) {
	start := time.Now()
	res := Result{Verb: "restore"}
	c := r.Config
	if err := r.Store.Check(ctx, upload.Read); err != nil {
		return res, err
	}
	dir := c.Restore.Dir
	// Before the emptiness check: rolling back an interrupted commit puts
	// the target's earlier entries back.
	if err := archive.Recover(dir, r.Log); err != nil {
		return res, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	empty, err := archive.Empty(dir)
	if err != nil {
		return res, fmt.Errorf("restore directory %s: %w", dir, err)
	}
	if !empty {
		switch c.Restore.IfNotEmpty {
		case "skip":
			r.Log.Info("restore skipped: the target is not empty (SNAPSHOT_RESTORE_IF_NOT_EMPTY=skip)", "dir", dir)
			res.Outcome = "skipped: target not empty"
			return res, nil
		case "overwrite":
			r.Log.Warn("the target is not empty; entries of the snapshot will replace entries of the same name (SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite)", "dir", dir)
		default:
			return res, fmt.Errorf("%w: %s holds data", ErrNotEmpty, dir)
		}
	}
	rc, obj, err := r.open(ctx)
	if errors.Is(err, ErrNothingToRestore) && c.Restore.Key == "latest" && c.Restore.IfMissing == "ok" {
		r.Log.Info("nothing to restore (SNAPSHOT_RESTORE_IF_MISSING=ok)", "reason", err.Error())
		res.Outcome = "nothing to restore"
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer rc.Close()
	res.Key = obj.Key
	r.Log.Info("restore started", "key", obj.Key, "bytes", obj.Size, "store", r.Store.String(), "dir", dir)
	var read, written atomic.Int64
	prog := startProgress(ctx, r.Log, time.Duration(c.ProgressInterval), "restore", obj.Size, &read, &written)
	st, err := archive.Extract(ctx, counter{rc, &read}, dir, archive.ExtractOptions{
		Overwrite: c.Restore.IfNotEmpty == "overwrite",
		Logger:    r.Log,
		Token:     strings.ToLower(rand.Text()),
	})
	prog.done()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("restoring %s into %s: %w", obj.Key, dir, err)
	}
	res.Outcome = "restored"
	res.Bytes, res.SourceBytes, res.Entries = read.Load(), st.Bytes, st.Entries()
	elapsed := time.Since(start)
	r.Log.Info("snapshot restored", "key", obj.Key, "dir", dir, "bytes", res.Bytes, "source_bytes", st.Bytes,
		"entries", st.Entries(), "seconds", elapsed.Seconds(),
		"rate_mib_s", round1(float64(st.Bytes)/(1<<20)/elapsed.Seconds()))
	return res, nil
}

// Verify reads a snapshot end to end without writing files.
func (r *Runner) Verify(ctx context.Context) (Result, error) {
	start := time.Now()
	res := Result{Verb: "verify"}
	if err := r.Store.Check(ctx, upload.Read); err != nil {
		return res, err
	}
	rc, obj, err := r.open(ctx)
	if err != nil {
		return res, err
	}
	defer rc.Close()
	res.Key = obj.Key
	r.Log.Info("verify started", "key", obj.Key, "bytes", obj.Size, "store", r.Store.String())
	var read, none atomic.Int64
	prog := startProgress(ctx, r.Log, time.Duration(r.Config.ProgressInterval), "verify", obj.Size, &read, &none)
	st, err := archive.Verify(ctx, counter{rc, &read}, 0, r.Log)
	prog.done()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("verifying %s: %w", obj.Key, err)
	}
	res.Outcome = "verified"
	res.Bytes, res.SourceBytes, res.Entries = read.Load(), st.Bytes, st.Entries()
	r.Log.Info("snapshot verified", "key", obj.Key, "bytes", res.Bytes, "source_bytes", st.Bytes,
		"entries", st.Entries(), "files", st.Files, "dirs", st.Dirs, "symlinks", st.Symlinks,
		"hard_links", st.HardLinks, "seconds", time.Since(start).Seconds())
	return res, nil
}
