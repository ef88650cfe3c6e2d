package volume

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// Watcher is a backup's view of the restores that could write into its
// source: the lock files of the source and of the directories above it on
// the same volume, and those the walk meets inside the tree. It takes no
// lock and writes nothing, so a backup works on a read-only mount.
type Watcher struct {
	j   judge
	log *slog.Logger

	mu   sync.Mutex
	seen map[string]observation // first look at each lock file
	keys []string               // in the order they were seen
}

// Watch looks at the lock files that concern a backup of dir. It fails
// with an error wrapping ErrBusy when a restore into dir, into a
// directory above it, is in progress or was interrupted while moving
// entries in. A restore that was interrupted before it moved anything is
// only reported: its staging directory is never archived.
func Watch(dir string, log *slog.Logger) (*Watcher, error) {
	return watch(dir, log, judge{me: whoAmI(), now: time.Now, staleAfter: StaleAfter})
}

func watch(dir string, log *slog.Logger, j judge) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{j: j, log: log, seen: map[string]observation{}}
	dirs, err := ancestors(dir)
	if err != nil {
		return nil, fmt.Errorf("looking for restores into %s: %w", dir, err)
	}
	for _, d := range dirs {
		if err := w.Add(filepath.Join(d, LockName)); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Add looks at a lock file met inside the tree (or above it) and keeps
// the observation for Recheck. It returns an error wrapping ErrBusy as
// Watch does.
func (w *Watcher) Add(path string) error {
	obs, err := w.j.inspect(path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if _, ok := w.seen[path]; !ok {
		w.seen[path] = obs
		w.keys = append(w.keys, path)
	}
	w.mu.Unlock()
	if err := busy(obs, "backup"); err != nil {
		return err
	}
	if obs.status == abandoned {
		w.log.Warn("a restore into this volume was interrupted before it moved anything; its staging directory is left out of the snapshot and the next restore removes it",
			"dir", filepath.Dir(path), "holder", obs.rec.owner())
	}
	return nil
}

// Recheck looks at every lock file again, after the walk and before the
// snapshot is completed: a restore that started, ended or was taken over
// since the first look may have changed files the walk had already read
// or was about to read, and the snapshot could mix two states.
func (w *Watcher) Recheck() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.keys {
		first := w.seen[p]
		now, err := w.j.inspect(p)
		if err != nil {
			return err
		}
		if err := busy(now, "backup"); err != nil {
			return err
		}
		if first.changed(now) {
			return fmt.Errorf("%w: a restore wrote into %s while this backup read it (lock generation %d, then %d): the snapshot could mix two states and is not stored", ErrBusy, filepath.Dir(p), first.rec.Generation, now.rec.Generation)
		}
	}
	return nil
}
