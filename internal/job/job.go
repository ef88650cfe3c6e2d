// Package job carries out the verbs: backup, restore, list, prune and
// verify. It connects the archive to a store and reports what happened;
// the command turns its errors into exit codes.
package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Error kinds of the verbs themselves.
var (
	// ErrNothingToRestore: no snapshot matches (exit 8).
	ErrNothingToRestore = errors.New("nothing to restore")
	// ErrKeyNotFound: the exact SNAPSHOT_RESTORE_KEY names no object. It
	// wraps ErrNothingToRestore (exit 8) but, unlike "latest" on an empty
	// prefix, is always a mistake: SNAPSHOT_RESTORE_IF_MISSING=ok does
	// not apply.
	ErrKeyNotFound = fmt.Errorf("%w: SNAPSHOT_RESTORE_KEY names no object", ErrNothingToRestore)
	// ErrNotEmpty: the restore target holds data (exit 8).
	ErrNotEmpty = errors.New("restore target not empty")
	// ErrPrune: the backup was stored but pruning failed (exit 6).
	ErrPrune = errors.New("retention pruning failed")
)

// Runner runs one verb.
type Runner struct {
	Config  config.Config
	Store   store.Store
	Log     *slog.Logger
	Stdout  io.Writer // list output
	Version string
	// Now is the clock; the run's start time names the snapshot and
	// anchors retention.
	Now func() time.Time
	// PlanMemory, if set, plans a backup's memory for an upper estimate
	// of the bytes it will store and the number of entries (whose index
	// the backup holds until the end), once the source has been scanned
	// and before anything is stored. An error (the plan does not fit)
	// fails the backup.
	PlanMemory func(estimate, entries int64) (Plan, error)
	// Exclude lists directories a backup leaves out of the snapshot
	// (archive.WriteOptions.Exclude): the file store's own, when it lies
	// inside the source.
	Exclude []string
}

// Plan is what a backup may hold in memory, as the command planned it
// within the memory limit. Zero fields keep the store's and the
// archive's defaults.
type Plan struct {
	PartsInFlight int   // store.PutOptions.Concurrency
	PartSize      int64 // store.PutOptions.PartSize
	Workers       int   // archive.WriteOptions.Concurrency
}

// Result is what a verb did, for the summary log line and the
// termination message. The JSON names are the termination message's,
// which operators and scripts read.
type Result struct {
	Verb    string `json:"verb"`
	Outcome string `json:"outcome"`
	Key     string `json:"key,omitempty"`
	// ObjectBytes are the bytes of the stored object: stored (backup),
	// read (restore, verify), or of all snapshots listed (list).
	ObjectBytes int64 `json:"bytes,omitempty"`
	// SourceBytes are the content bytes of the tree's files: archived,
	// restored or checked.
	SourceBytes int64    `json:"source_bytes,omitempty"`
	Entries     int64    `json:"entries,omitempty"`
	Deleted     []string `json:"deleted,omitempty"`
	Kept        int      `json:"kept,omitempty"` // this job's snapshots retention left in place; 0 when it did not run
	Seconds     float64  `json:"seconds"`
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

// snapshots lists this job's snapshots under the prefix, newest first.
func (r *Runner) snapshots(ctx context.Context) ([]store.Object, error) {
	objs, err := r.Store.List(ctx, r.Config.Prefix)
	if err != nil {
		return nil, err
	}
	var out []store.Object
	for _, o := range objs {
		if _, ok := snapname.Parse(r.Config.Prefix, r.Config.Name, o.Key); ok {
			out = append(out, o)
		}
	}
	// The names sort by time: same prefix, same name, fixed-width stamp.
	slices.SortFunc(out, func(a, b store.Object) int {
		switch {
		case a.Key > b.Key:
			return -1
		case a.Key < b.Key:
			return 1
		}
		return 0
	})
	return out, nil
}

// resolve turns SNAPSHOT_RESTORE_KEY into an object key.
func (r *Runner) resolve(ctx context.Context) (string, error) {
	key := r.Config.Restore.Key
	if key != "latest" {
		return key, nil
	}
	snaps, err := r.snapshots(ctx)
	if err != nil {
		return "", err
	}
	if len(snaps) == 0 {
		return "", fmt.Errorf("%w: no snapshot named %s-<time>%s (or %s%s) under %q in %s", ErrNothingToRestore, r.Config.Name, snapname.Ext, snapname.Ext, snapname.AgeExt, r.Config.Prefix, r.Store)
	}
	return snaps[0].Key, nil
}

// open resolves and opens the snapshot to read. An encrypted one is
// decrypted with SNAPSHOT_ENCRYPTION_IDENTITY, whose header is read here:
// a missing or wrong identity fails before the caller touches anything.
func (r *Runner) open(ctx context.Context) (io.ReadCloser, store.Object, error) {
	key, err := r.resolve(ctx)
	if err != nil {
		return nil, store.Object{}, err
	}
	return r.openKey(ctx, key)
}

// openKey opens the snapshot key as open does, once resolved.
func (r *Runner) openKey(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	rc, obj, err := r.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		if r.Config.Restore.Key != "latest" {
			return nil, obj, fmt.Errorf("%w: %w", ErrKeyNotFound, err)
		}
		return nil, obj, fmt.Errorf("%w: %w", ErrNothingToRestore, err)
	}
	if err != nil || !snapname.Encrypted(key) {
		return rc, obj, err
	}
	ids, err := r.identities()
	if err != nil {
		rc.Close()
		return nil, obj, err
	}
	plain, err := archive.Decrypt(rc, ids)
	if err != nil {
		rc.Close()
		return nil, obj, fmt.Errorf("opening %s: %w", key, err)
	}
	return decrypted{plain, rc}, obj, nil
}

// identities parses SNAPSHOT_ENCRYPTION_IDENTITY; none when it is unset.
func (r *Runner) identities() (archive.Identities, error) {
	id := r.Config.Encryption.Identity
	if id == "" {
		return nil, nil
	}
	ids, err := archive.ParseIdentities(id.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w: SNAPSHOT_ENCRYPTION_IDENTITY %w", setting.ErrInvalid, err)
	}
	return ids, nil
}

// decrypted reads through a decrypter and closes it, then the object
// below it.
type decrypted struct {
	plain io.ReadCloser
	obj   io.Closer
}

func (d decrypted) Read(p []byte) (int, error) { return d.plain.Read(p) }

func (d decrypted) Close() error {
	d.plain.Close()
	return d.obj.Close()
}
