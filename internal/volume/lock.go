package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapshot-job/snapshot-job/internal/archive"
)

// Lock is a restore's hold on its target directory, from Acquire to
// Release or Discard.
type Lock struct {
	dir, path   string
	f           *os.File
	rec         record
	j           judge
	log         *slog.Logger
	created     []string     // directories Acquire made, outermost first
	fileCreated bool         // the lock file did not exist before
	dirTimes    *unix.Stat_t // dir before the lock file was made in it
	heartbeat   time.Duration

	mu      sync.Mutex
	lostErr error
	lost    chan struct{} // closed when the lock is found lost
	stop    chan struct{}
	stopped chan struct{}
	closed  bool
}

// Acquire takes the lock of dir for a restore, creating dir (and its
// missing parents) when needed. It fails with an error wrapping ErrBusy
// when a live restore holds dir or a directory above it on the same
// volume, or when one of those was interrupted while moving entries in.
// An abandoned lock is taken over, with a warning.
//
// Failures to create or write the lock wrap archive.ErrTarget: the target
// is not writable.
func Acquire(ctx context.Context, dir string, log *slog.Logger) (*Lock, error) {
	return acquire(ctx, dir, log, judge{me: whoAmI(), now: time.Now, staleAfter: StaleAfter}, Heartbeat)
}

func acquire(ctx context.Context, dir string, log *slog.Logger, j judge, heartbeat time.Duration) (*Lock, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	above, err := ancestors(dir)
	if err != nil {
		return nil, targetErr(dir, err)
	}
	for _, a := range above {
		if same, _ := sameDir(a, dir); same {
			continue
		}
		obs, err := j.inspect(filepath.Join(a, LockName))
		if err != nil {
			return nil, targetErr(a, err)
		}
		if err := busy(obs, "restore into "+dir); err != nil {
			return nil, err
		}
	}
	created, err := mkdirAll(dir)
	if err != nil {
		return nil, targetErr(dir, err)
	}
	l := &Lock{dir: dir, path: filepath.Join(dir, LockName), j: j, log: log, created: created, heartbeat: heartbeat,
		lost: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{})}
	var st unix.Stat_t
	if unix.Stat(dir, &st) == nil {
		l.dirTimes = &st
	}
	if err := l.take(ctx); err != nil {
		removeCreated(created)
		return nil, err
	}
	go l.beat()
	return l, nil
}

// take opens or creates the lock file, locks it and writes this run's
// record. It retries when the file it locked was replaced meanwhile.
func (l *Lock) take(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if attempt == 5 {
			return fmt.Errorf("%w: the lock %s keeps being replaced by another run", ErrBusy, l.path)
		}
		f, created, err := openLock(l.path)
		if err != nil {
			return targetErr(l.dir, err)
		}
		again, err := l.takeFile(f, created)
		if err != nil || again {
			f.Close()
			if created && err != nil {
				os.Remove(l.path)
			}
			if err != nil {
				return err
			}
			continue
		}
		l.f, l.fileCreated = f, created
		return nil
	}
}

func openLock(path string) (f *os.File, created bool, err error) {
	const flags = os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	f, err = os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flags, 0)
	switch {
	case errors.Is(err, syscall.EISDIR):
		return nil, false, fmt.Errorf("%s is not a lock file but a directory: remove it", path)
	case errors.Is(err, syscall.ELOOP):
		return nil, false, fmt.Errorf("%s is not a lock file but a symlink: remove it", path)
	}
	return f, false, err
}

// takeFile locks f and writes the record; again asks take to start over.
func (l *Lock) takeFile(f *os.File, created bool) (again bool, err error) {
	var held, supported bool
	// Another restore probing the same file holds the lock only for an
	// instant; a live holder holds it throughout.
	for try := range 5 {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if held, supported, err = takeLock(f); err != nil {
			return false, targetErr(l.dir, err)
		}
		if !held {
			break
		}
	}
	obs, again, err := l.j.inspectFile(f, l.path)
	if again || err != nil {
		if err != nil && !again {
			err = targetErr(l.dir, err)
		}
		return again, err
	}
	switch {
	case held:
		return false, fmt.Errorf("%w: another restore holds %s (%s)", ErrBusy, l.dir, obs.rec.owner())
	case obs.status == live && !created:
		// Free lock but a fresh heartbeat: a holder on another node of a
		// filesystem that does not share locks.
		return false, fmt.Errorf("%w: another restore holds %s (%s; its heartbeat is %s old)", ErrBusy, l.dir,
			obs.rec.owner(), obs.beat.Round(time.Second))
	case obs.status == abandoned:
		l.log.Warn("taking over the lock of an interrupted restore", "dir", l.dir, "holder", obs.rec.owner(),
			"phase", string(obs.rec.Phase), "heartbeat_age_seconds", int64(obs.beat.Seconds()))
	}
	if !supported {
		l.log.Warn("the volume's filesystem has no file locks: other runs see this restore through its heartbeat only", "dir", l.dir)
	}
	token, err := newToken()
	if err != nil {
		return false, err
	}
	me := l.j.me
	l.rec = record{
		State: stateRestoring, Generation: obs.rec.Generation + 1, Phase: Extracting, Token: token,
		Host: me.host, Node: me.node, BootID: me.bootID, PID: me.pid, Started: l.j.now().UTC(),
	}
	if err := writeRecord(f, l.rec); err != nil {
		return false, targetErr(l.dir, err)
	}
	return false, nil
}

func writeRecord(f *os.File, r record) error {
	b, err := r.marshal()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	if err := f.Truncate(recordSize); err != nil {
		return err
	}
	// Without it, an NFS client may keep the write (and the heartbeat's
	// new mtime) to itself.
	return f.Sync()
}

func newToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Token names this restore's staging directory and asides.
func (l *Lock) Token() string { return l.rec.Token }

// Dir is the directory the lock is for.
func (l *Lock) Dir() string { return l.dir }

// Lost is closed when the heartbeat finds that the lock is no longer this
// run's (taken over by a run that judged it abandoned, or removed); Err
// then says why.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err is nil while the lock is held, and wraps ErrBusy once it is lost.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostErr
}

// SetPhase records how far the restore has come, after checking that the
// lock is still this run's: a restore must not move anything into a
// target another run took over.
func (l *Lock) SetPhase(p Phase) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.verifyLocked(); err != nil {
		return err
	}
	l.rec.Phase = p
	if err := writeRecord(l.f, l.rec); err != nil {
		return targetErr(l.dir, err)
	}
	return nil
}

// verifyLocked checks that the lock file is still the one this run
// holds and carries its token. l.mu is held.
func (l *Lock) verifyLocked() error {
	if l.lostErr != nil {
		return l.lostErr
	}
	if l.closed {
		return fmt.Errorf("%w: the lock of %s was released", ErrBusy, l.dir)
	}
	var reason string
	obs, again, err := l.j.inspectFile(l.f, l.path)
	switch {
	case again && err == nil:
		reason = "the lock file was removed or replaced"
	case err != nil:
		reason = err.Error()
	case obs.rec.Token != l.rec.Token:
		reason = "it was taken over by " + obs.rec.owner()
	default:
		return nil
	}
	l.lostErr = fmt.Errorf("%w: this restore lost the lock of %s (%s); it stops without moving anything more", ErrBusy, l.dir, reason)
	close(l.lost)
	return l.lostErr
}

// beat refreshes the lock every heartbeat until stopped, and notices when
// the lock is lost.
func (l *Lock) beat() {
	defer close(l.stopped)
	t := time.NewTicker(l.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		err := l.verifyLocked()
		if err == nil {
			// Rewriting the record moves the file's mtime, which is what
			// runs on other nodes read as the heartbeat.
			if werr := writeRecord(l.f, l.rec); werr != nil {
				l.log.Warn("could not refresh the volume lock", "path", l.path, "error", werr.Error())
			}
		}
		l.mu.Unlock()
		if err != nil {
			l.log.Error(err.Error())
			return
		}
	}
}

func (l *Lock) stopBeat() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.stopped
}

// end stops the heartbeat and says whether the lock is still this run's.
// The file stays open for the last word; a lost lock is closed here.
func (l *Lock) end() error {
	l.mu.Lock()
	err := l.verifyLocked()
	l.mu.Unlock()
	l.stopBeat()
	if err != nil {
		l.f.Close()
	}
	return err
}

// Release ends the restore's hold: the record says idle and keeps the
// generation, so that a backup that read the volume meanwhile can tell a
// restore ran. A lock already lost is left to its new holder.
func (l *Lock) Release() error {
	if l.f == nil {
		return nil
	}
	if err := l.end(); err != nil {
		return err
	}
	defer l.f.Close()
	l.rec = record{State: stateIdle, Generation: l.rec.Generation, Ended: l.j.now().UTC()}
	if err := writeRecord(l.f, l.rec); err != nil {
		return targetErr(l.dir, err)
	}
	return nil
}

// Discard ends a restore that changed nothing: the lock file and the
// directories Acquire created are removed when they did not exist
// before, so that the target is left exactly as it was; otherwise it is
// released as usual.
func (l *Lock) Discard() error {
	if !l.fileCreated {
		return l.Release()
	}
	if err := l.end(); err != nil {
		return err
	}
	defer l.f.Close()
	// Removed while still locked, so that nobody takes the old file in
	// between; anyone who opened it checks afterwards that the name
	// still leads to it.
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return targetErr(l.dir, err)
	}
	removeCreated(l.created)
	if len(l.created) == 0 && l.dirTimes != nil {
		// Best effort: needs ownership of dir, which a job may not have.
		ts := []unix.Timespec{l.dirTimes.Atim, l.dirTimes.Mtim}
		_ = unix.UtimesNano(l.dir, ts)
	}
	return nil
}

// busy turns an observation of a lock that stands in the way into an
// error, or nil when it does not.
func busy(obs observation, what string) error {
	dir := filepath.Dir(obs.path)
	switch {
	case obs.status == live:
		return fmt.Errorf("%w: a restore into %s is in progress (%s); the %s waits for it", ErrBusy, dir, obs.rec.owner(), what)
	case obs.status == abandoned && obs.rec.Phase == Committing:
		return fmt.Errorf("%w: a restore into %s (%s) was interrupted while it moved entries in, so the directory is partly restored; run the restore again: it rolls the interrupted one back first", ErrBusy, dir, obs.rec.owner())
	}
	return nil
}

// mkdirAll creates dir and its missing parents and returns those it
// created, outermost first.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // another run made it meanwhile: not ours to remove
			}
			removeCreated(created)
			return nil, err
		}
		created = append(created, missing[i])
	}
	return created, nil
}

// removeCreated removes directories made by mkdirAll, innermost first,
// as long as they are empty.
func removeCreated(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		if os.Remove(created[i]) != nil {
			return
		}
	}
}

func sameDir(a, b string) (bool, error) {
	ai, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	bi, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(ai, bi), nil
}

func targetErr(dir string, err error) error {
	if errors.Is(err, ErrBusy) || errors.Is(err, archive.ErrTarget) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", archive.ErrTarget, dir, err)
}

// Pending reports whether dir's lock shows a restore that is running, or
// one that was interrupted while moving entries in: then whatever dir
// holds now says nothing about what it will hold, and a restore must take
// the lock (and roll the interrupted commit back) before it judges the
// target. It only reads.
func Pending(dir string) (bool, error) {
	j := judge{me: whoAmI(), now: time.Now, staleAfter: StaleAfter}
	obs, err := j.inspect(filepath.Join(dir, LockName))
	if err != nil {
		return false, targetErr(dir, err)
	}
	return obs.status == live || (obs.status == abandoned && obs.rec.Phase == Committing), nil
}
