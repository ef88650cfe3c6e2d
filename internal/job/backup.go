package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/volume"
)

// errStoreStopped closes the archive's pipe when the store gave up first,
// so that the archive's own error is recognisably a consequence.
var errStoreStopped = errors.New("store stopped reading")

// Backup archives the source directory into a new snapshot, then prunes
// when a retention rule is set.
func (r *Runner) Backup(ctx context.Context) (Result, error) {
	start := r.now()
	res := Result{Verb: "backup"}
	c := r.Config
	// A restore writing into the source, now or at any moment until the
	// walk is over, would make the snapshot a mix of two trees: the
	// watch sees one that runs (or ran meanwhile) through the volume's
	// lock files, and the backup then stores nothing.
	watch, err := volume.Watch(c.SourceDir, r.Log)
	if err != nil {
		return res, fmt.Errorf("snapshot directory %s: %w", c.SourceDir, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Lock files inside the tree belong to restores into subdirectories.
	reserved := func(rel string) {
		if path.Base(rel) == volume.LockName {
			if err := watch.Add(filepath.Join(c.SourceDir, filepath.FromSlash(rel))); err != nil {
				cancel(err)
			}
		}
	}
	// The source is local and cheap to check; a missing volume should not
	// wait for the network.
	scan, err := archive.Scan(ctx, c.SourceDir, archive.WriteOptions{Exclude: r.Exclude, Reserved: reserved})
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		return res, fmt.Errorf("snapshot directory %s: %w", c.SourceDir, err)
	}
	if scan.Entries() == 0 {
		r.Log.Warn("the snapshot directory is empty; storing an empty snapshot", "dir", c.SourceDir)
	}
	// A plan that cannot fit is a configuration error, found without
	// the network.
	estimate := archive.EstimateSize(scan)
	var plan Plan
	if r.PlanMemory != nil {
		if plan, err = r.PlanMemory(estimate, scan.Entries()); err != nil {
			return res, err
		}
	}
	recipients, err := archive.ParseRecipients(c.Encryption.Recipients)
	if err != nil {
		return res, fmt.Errorf("%w: SNAPSHOT_ENCRYPTION_RECIPIENTS: %w", setting.ErrInvalid, err)
	}
	if c.Encryption.Identity != "" {
		r.Log.Warn("SNAPSHOT_ENCRYPTION_IDENTITY is set, and a backup never needs it: keep the private key out of the backup's environment (only restores read it)")
	}
	if err := r.Store.Check(ctx, store.Write); err != nil {
		return res, err
	}
	res.Key = snapname.Key(c.Prefix, c.Name, start)
	if len(recipients) > 0 {
		res.Key = snapname.EncryptedKey(c.Prefix, c.Name, start)
		estimate = archive.EncryptedSize(estimate, recipients)
	}
	r.Log.Info("backup started", "key", res.Key, "store", r.Store.String(), "source", c.SourceDir,
		"files", scan.Files, "source_bytes", scan.Bytes, "level", c.CompressionLevel, "recipients", len(recipients))

	var read, stored atomic.Int64
	pr, pw := io.Pipe()
	archived := make(chan error, 1)
	var st archive.Stats
	go func() {
		var w io.Writer = pw
		var enc io.WriteCloser
		var err error
		if len(recipients) > 0 {
			// age over the finished tar+zstd stream, so that age -d
			// gives back exactly what an unencrypted snapshot holds.
			if enc, err = archive.Encrypt(pw, recipients); err != nil {
				pw.CloseWithError(err)
				archived <- err
				return
			}
			w = enc
		}
		st, err = archive.Write(ctx, w, c.SourceDir, archive.WriteOptions{
			Level:       c.CompressionLevel,
			Concurrency: plan.Workers,
			Logger:      r.Log,
			Progress:    &read,
			Exclude:     r.Exclude,
			Reserved:    reserved,
			BeforeEnd:   watch.Recheck,
		})
		if err == nil && enc != nil {
			err = enc.Close()
		}
		pw.CloseWithError(err)
		archived <- err
	}()
	prog := startProgress(ctx, r.Log, time.Duration(c.ProgressInterval), "backup", scan.Bytes,
		meter{"read_bytes", &read}, meter{"stored_bytes", &stored})
	n, putErr := r.Store.Put(ctx, res.Key, counter{pr, &stored}, store.PutOptions{
		SizeHint:    estimate,
		Concurrency: plan.PartsInFlight,
		PartSize:    plan.PartSize,
		Metadata: map[string]string{
			"source-bytes": strconv.FormatInt(scan.Bytes, 10),
			"files":        strconv.FormatInt(scan.Files, 10),
			"tool-version": r.Version,
			"created":      start.Format(time.RFC3339),
			"encryption":   encryptionName(len(recipients)),
		},
	})
	pr.CloseWithError(errStoreStopped)
	archErr := <-archived
	prog.done()
	// The archive's error explains a failed Put better than the store's
	// rewording of it, unless the archive failed only because the store
	// stopped reading.
	if archErr != nil && !errors.Is(archErr, errStoreStopped) {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("archiving %s: %w", c.SourceDir, archErr)
	}
	if putErr != nil {
		return res, fmt.Errorf("storing %s: %w", res.Key, putErr)
	}
	res.Outcome = "stored"
	res.ObjectBytes, res.SourceBytes, res.Entries = n, st.Bytes, st.Entries()
	elapsed := time.Since(start)
	r.Log.Info("snapshot stored", "key", res.Key, "bytes", n, "source_bytes", st.Bytes,
		"entries", st.Entries(), "skipped", st.Skipped, "changed_while_read", st.Changed,
		"ratio", ratio(st.Bytes, n), "seconds", elapsed.Seconds(),
		"rate_mib_s", round1(float64(st.Bytes)/(1<<20)/elapsed.Seconds()))

	// An unmounted or wiped volume must never push real snapshots out.
	if c.Retention.Enabled() && st.Files == 0 {
		r.Log.Warn("the snapshot directory holds no regular file: the snapshot is stored, but pruning is skipped so that an empty or unmounted volume cannot push real snapshots out",
			"dir", c.SourceDir, "key", res.Key)
		return res, nil
	}
	if c.Retention.Enabled() {
		deleted, kept, err := r.prune(ctx, start, res.Key)
		res.Deleted, res.Kept = deleted, kept
		if err != nil {
			return res, fmt.Errorf("%w: the backup %s is stored and safe; %w", ErrPrune, res.Key, err)
		}
	}
	return res, nil
}

func ratio(src, stored int64) float64 {
	if stored == 0 {
		return 0
	}
	return round1(float64(src) / float64(stored))
}

// encryptionName is the object's "encryption" metadata: how the body is
// encrypted, or "none".
func encryptionName(recipients int) string {
	if recipients > 0 {
		return "age"
	}
	return "none"
}
