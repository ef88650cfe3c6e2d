package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// commit moves a complete staging directory into the target, all or
// nothing:
//
//  1. plan: walk staging against the target and write every move into a
//     journal. A directory present on both sides is merged (entered);
//     any other staged entry moves into place, and an existing entry of
//     that name is first renamed aside in its own directory (only with
//     overwrite). Every conflict (an existing entry without overwrite, a
//     directory the job may not change, the sticky bit, an immutable
//     entry) is found here, before anything moves.
//  2. make the journal durable, then move (rename) everything, then give
//     the directories their modes and times, then sync.
//  3. mark the commit done (rename the journal to the committed marker,
//     durably); then delete what was set aside.
//
// Nothing of the target is deleted before 3. A failure in 2 undoes every
// move and puts back the modes and times the commit changed, so the
// target is as it was; a run killed in 2 is rolled back by the next one
// (Recover), one killed in 3 is finished by it.
type commit struct {
	dir            string // for messages
	tfd, sfd       int    // target and staging directories
	staging, token string
	overwrite      bool
	sync           bool
	log            *slog.Logger
	asRoot         bool
	euid           int
	hook           func(step string) error
	crash          bool
	before         func() error
	after          func()
	rootState      dirState // the target before the restore touched it

	asides  int
	crashed bool // a test crash: everything left as it is
	kept    bool // rolling back failed: staging and journal stay for Recover
}

func (c *commit) step(name string) error {
	if c.hook == nil {
		return nil
	}
	err := c.hook(name)
	if err != nil && c.crash {
		c.crashed = true
	}
	return err
}

func (c *commit) run(ctx context.Context, dirs *dirList) error {
	if err := c.plan(); err != nil {
		return err
	}
	if err := c.persistJournal(); err != nil {
		return err
	}
	// A run stopped now moves nothing; once the moves start, finishing
	// (or undoing) them is quicker than anything else.
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if c.before != nil {
		if err := c.before(); err != nil {
			return err
		}
	}
	err := c.execute(dirs)
	if err == nil {
		err = c.step("marker")
	}
	if err == nil {
		err = c.markCommitted()
	}
	if err != nil {
		if c.crashed {
			return err
		}
		if _, uerr := undoJournal(c.tfd, c.sfd, c.log); uerr != nil {
			c.kept = true
			return fmt.Errorf("%w; rolling back failed too, so %s may hold old and new entries mixed (%v): the staging directory %s was kept with its journal, and the next restore into %s rolls back what is left before it starts",
				err, c.dir, uerr, filepath.Join(c.dir, c.staging), c.dir)
		}
		return err
	}
	if c.after != nil {
		c.after()
	}
	if err := c.step("asides"); err != nil && c.crashed {
		return err
	}
	rollForward(c.tfd, c.sfd, c.dir, c.log)
	return nil
}

// display names an entry of the target for a message.
func (c *commit) display(t *cursor, name string) string {
	return shortName(filepath.Join(c.dir, string(t.path), name))
}

func (c *commit) conflict(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+"; nothing was changed", append([]any{ErrTarget}, args...)...)
}

// planFrame is what the planner knows of one directory of the target.
type planFrame struct {
	checked bool // whether moves into it are allowed was checked
	stx     unix.Statx_t
}

func (c *commit) plan() error {
	jfd, err := unix.Openat(c.sfd, journalTemp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return targetErr(journalTemp, err)
	}
	jf := os.NewFile(uintptr(jfd), journalTemp)
	defer jf.Close()
	j := newJournalWriter(jf)
	s, err := newCursor(c.sfd, false)
	if err != nil {
		return targetErr(".", err)
	}
	defer s.close()
	t, err := newCursor(c.tfd, false)
	if err != nil {
		return targetErr(".", err)
	}
	defer t.close()
	j.root(c.rootState)
	frames := []planFrame{{}}
	var offs []int64 // where the listing of each directory above stopped
	r := newDirReader(make([]byte, 32<<10))
	if err := r.reset(s.fd, 0); err != nil {
		return targetErr(".", err)
	}
	move := func(name, aside string) error {
		f := &frames[len(frames)-1]
		if !f.checked {
			f.checked = true
			if err := c.checkWritable(t, f, j); err != nil {
				return err
			}
		}
		j.move(name, aside)
		return nil
	}
	for {
		name, typ, ok, err := r.next()
		if err != nil {
			return targetErr(filepath.Join(c.staging, s.where()), err)
		}
		if !ok {
			if s.depth() == 0 {
				break
			}
			j.leave()
			if err := s.up(); err != nil {
				return targetErr(filepath.Join(c.staging, s.where()), err)
			}
			if err := t.up(); err != nil {
				return targetErr(t.where(), err)
			}
			frames = frames[:len(frames)-1]
			if err := r.reset(s.fd, offs[len(offs)-1]); err != nil {
				return targetErr(filepath.Join(c.staging, s.where()), err)
			}
			offs = offs[:len(offs)-1]
			continue
		}
		if s.depth() == 0 && Reserved(name) {
			continue // the journal
		}
		if typ, err = entryType(s.fd, name, typ); err != nil {
			return targetErr(filepath.Join(c.staging, s.where(), name), err)
		}
		var stx unix.Statx_t
		err = unix.Statx(t.fd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx)
		if err == unix.ENOENT {
			if err := move(name, ""); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return c.conflict("cannot look at %s: %v", c.display(t, name), err)
		}
		if typ == unix.DT_DIR && stx.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := unix.Faccessat(t.fd, name, unix.X_OK, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return c.conflict("cannot merge the snapshot's directory into %s: the job's user (uid %d) may not look into it (%v); make it searchable for that user or remove it", c.display(t, name), c.euid, err)
			}
			off := r.off
			j.enter(name, statxState(&stx))
			if err := t.down(name); err != nil {
				return c.conflict("cannot merge into %s: %v", c.display(t, name), err)
			}
			if err := s.down(name); err != nil {
				return targetErr(filepath.Join(c.staging, s.where(), name), err)
			}
			offs = append(offs, off)
			frames = append(frames, planFrame{})
			if err := r.reset(s.fd, 0); err != nil {
				return targetErr(filepath.Join(c.staging, s.where()), err)
			}
			continue
		}
		if !c.overwrite {
			return c.conflict("%s already exists (set SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite to replace it)", c.display(t, name))
		}
		if stx.Attributes&(unix.STATX_ATTR_IMMUTABLE|unix.STATX_ATTR_APPEND) != 0 {
			return c.conflict("cannot replace %s: it is immutable or append-only (lsattr shows it; chattr -i -a removes it)", c.display(t, name))
		}
		f := &frames[len(frames)-1]
		if !f.checked {
			f.checked = true
			if err := c.checkWritable(t, f, j); err != nil {
				return err
			}
		}
		if f.stx.Mode&unix.S_ISVTX != 0 && c.euid != 0 && int(stx.Uid) != c.euid && int(f.stx.Uid) != c.euid {
			return c.conflict("cannot replace %s: its directory has the sticky bit, and the entry belongs to uid %d, not to the job's user (uid %d); remove it or restore as its owner", c.display(t, name), stx.Uid, c.euid)
		}
		c.asides++
		if err := move(name, ReservedPrefix+asideInfix+c.token+"-"+strconv.Itoa(c.asides)); err != nil {
			return err
		}
	}
	if err := j.finish(); err != nil {
		return targetErr(journalTemp, err)
	}
	if c.sync {
		if err := jf.Sync(); err != nil {
			return targetErr(journalTemp, err)
		}
	}
	return nil
}

// checkWritable decides whether entries can be renamed in the target
// directory t is at: write and search permission as the kernel judges
// them for this user (ACLs included), or ownership, which lets the commit
// add the permission for its duration.
func (c *commit) checkWritable(t *cursor, f *planFrame, j *journalWriter) error {
	if err := unix.Statx(t.fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &f.stx); err != nil {
		return targetErr(t.where(), err)
	}
	here := c.display(t, "")
	if f.stx.Attributes&(unix.STATX_ATTR_IMMUTABLE|unix.STATX_ATTR_APPEND) != 0 {
		return c.conflict("cannot replace entries in %s: the directory is immutable or append-only (lsattr shows it; chattr -i -a removes it)", here)
	}
	err := unix.Faccessat(t.fd, ".", unix.W_OK|unix.X_OK, unix.AT_EACCESS)
	switch {
	case err == nil:
		return nil
	case err == unix.EROFS:
		return c.conflict("cannot write into %s: the filesystem is read-only; mount the volume read-write", here)
	case err == unix.EACCES || err == unix.EPERM:
		if int(f.stx.Uid) == c.euid {
			j.writable()
			return nil
		}
		return c.conflict("cannot replace entries in %s: the directory belongs to uid %d and the job's user (uid %d) may not write into it; make it writable for that user (chmod, or fsGroup in the pod's securityContext) or remove it", here, f.stx.Uid, c.euid)
	}
	return targetErr(t.where(), err)
}

func statxState(stx *unix.Statx_t) dirState {
	return dirState{mode: uint32(stx.Mode) & 0o7777, times: stamp{
		{Sec: stx.Atime.Sec, Nsec: int64(stx.Atime.Nsec)},
		{Sec: stx.Mtime.Sec, Nsec: int64(stx.Mtime.Nsec)},
	}}
}

func (c *commit) persistJournal() error {
	if err := unix.Renameat(c.sfd, journalTemp, c.sfd, journalName); err != nil {
		return targetErr(journalName, err)
	}
	if c.sync {
		if err := unix.Fsync(c.sfd); err != nil {
			return targetErr(c.staging, err)
		}
	}
	return nil
}

func (c *commit) markCommitted() error {
	if err := unix.Renameat(c.sfd, journalName, c.sfd, committedName); err != nil {
		return targetErr(committedName, err)
	}
	if c.sync {
		if err := unix.Fsync(c.sfd); err != nil {
			return targetErr(c.staging, err)
		}
	}
	return nil
}

// openJournal opens the journal of a staging directory, or its committed
// marker when that is what there is.
func openJournal(sfd int) (*os.File, error) {
	for _, n := range []string{journalName, committedName} {
		fd, err := unix.Openat(sfd, n, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), n), nil
	}
	return nil, fs.ErrNotExist
}

// replay walks a journal with a cursor in the target and one in staging.
type replay struct {
	s, t   *cursor
	frames []replayFrame
}

type replayFrame struct {
	state dirState
	made  bool // made writable for the commit
}

func newReplay(tfd, sfd int) (*replay, error) {
	s, err := newCursor(sfd, false)
	if err != nil {
		return nil, err
	}
	t, err := newCursor(tfd, false)
	if err != nil {
		return nil, err
	}
	return &replay{s: s, t: t}, nil
}

func (r *replay) close() { r.s.close(); r.t.close() }

func (r *replay) top() *replayFrame { return &r.frames[len(r.frames)-1] }

func (r *replay) where(name string) string {
	return filepath.Join(string(r.t.path), name)
}

func (c *commit) execute(dirs *dirList) error {
	f, err := openJournal(c.sfd)
	if err != nil {
		return targetErr(journalName, err)
	}
	defer f.Close()
	r, err := newReplay(c.tfd, c.sfd)
	if err != nil {
		return targetErr(".", err)
	}
	defer r.close()
	err = readJournal(f, func(rec record) error {
		switch rec.kind {
		case recRoot:
			r.frames = append(r.frames, replayFrame{state: rec.state})
		case recWritable:
			top := r.top()
			if err := fdChmod(r.t.fd, top.state.mode|0o300); err != nil {
				return targetErr(r.where(""), err)
			}
			top.made = true
		case recEnter:
			if err := r.t.down(rec.name); err != nil {
				return targetErr(r.where(rec.name), err)
			}
			if err := r.s.down(rec.name); err != nil {
				return targetErr(filepath.Join(c.staging, r.where("")), err)
			}
			r.frames = append(r.frames, replayFrame{state: rec.state})
		case recMove:
			if err := c.step("move"); err != nil {
				return err
			}
			if rec.aside != "" {
				if err := renameNoReplace(r.t.fd, rec.name, r.t.fd, rec.aside); err != nil {
					return fmt.Errorf("%w: setting %s aside: %w", ErrTarget, shortName(r.where(rec.name)), err)
				}
			}
			if err := renameNoReplace(r.s.fd, rec.name, r.t.fd, rec.name); err != nil {
				return fmt.Errorf("%w: moving %s into place: %w", ErrTarget, shortName(r.where(rec.name)), err)
			}
		case recLeave, recEnd:
			top := r.top()
			if top.made {
				if err := fdChmod(r.t.fd, top.state.mode); err != nil {
					return targetErr(r.where(""), err)
				}
			}
			r.frames = r.frames[:len(r.frames)-1]
			if rec.kind == recLeave {
				if err := r.t.up(); err != nil {
					return targetErr(r.where(""), err)
				}
				if err := r.s.up(); err != nil {
					return targetErr(filepath.Join(c.staging, r.where("")), err)
				}
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errJournal) {
			err = fmt.Errorf("%w: %w", ErrTarget, err)
		}
		return err
	}
	if err := c.step("dirs"); err != nil {
		return err
	}
	if err := c.applyDirs(dirs); err != nil {
		return err
	}
	if c.sync {
		// One syncfs makes the whole restore durable at the cost of a
		// single call, instead of an fsync per file; the commit is
		// marked done only after it.
		if err := unix.Syncfs(c.tfd); err != nil {
			return targetErr(".", err)
		}
	}
	return nil
}

// applyDirs gives the archive's directories their owners, modes and
// times, deepest first: a directory the job may not search any more
// must have nothing left to do below it.
func (c *commit) applyDirs(dirs *dirList) error {
	sort.Sort(dirs)
	t, err := newCursor(c.tfd, false)
	if err != nil {
		return targetErr(".", err)
	}
	defer t.close()
	denied, first := 0, ""
	for i := 0; i < dirs.n; i++ {
		d := dirs.at(i)
		dir, base := splitName(d.name)
		if err := t.goTo(dir); err != nil {
			return targetErr(d.name, err)
		}
		fd, err := openDir(t.fd, base)
		if err != nil {
			return targetErr(d.name, err)
		}
		st, err := statFD(fd)
		switch {
		case err != nil:
		case !c.asRoot && int(st.Uid) != c.euid:
			// A directory that was already there, owned by someone
			// else: only its owner can change its mode and times.
			denied++
			if first == "" {
				first = d.name
			}
		default:
			if c.asRoot {
				err = fdChown(fd, int(d.uid), int(d.gid))
			}
			if err == nil {
				err = fdChmod(fd, d.mode)
			}
			if err == nil {
				err = fdUtimes(fd, d.times)
			}
		}
		unix.Close(fd)
		if err != nil {
			return targetErr(d.name, err)
		}
	}
	if denied > 0 {
		c.log.Warn("the snapshot's modes and times were not applied to directories the job's user does not own; their contents were restored",
			"directories", denied, "first", shortName(filepath.Join(c.dir, first)), "uid", c.euid)
	}
	return nil
}

// undoJournal rolls back the commit described by the journal in sfd:
// each move is undone according to which names exist, so it does not
// matter where the commit stopped, and the directories get back the modes
// and times recorded before it. The moves touch distinct names, each in
// a directory that itself stays in place, so undoing them in the
// journal's order restores the same state as the reverse order would;
// a directory's mode and times are put back when the walk leaves it,
// after every move inside it was undone.
//
// It returns the target's recorded state, and an error when a move could
// not be undone (the journal is then still needed); modes and times it
// cannot put back are warnings.
func undoJournal(tfd, sfd int, log *slog.Logger) (dirState, error) {
	var root dirState
	f, err := openJournal(sfd)
	if err != nil {
		return root, err
	}
	defer f.Close()
	r, err := newReplay(tfd, sfd)
	if err != nil {
		return root, err
	}
	defer r.close()
	var failed []string
	restore := func(fd int, want dirState, where string) {
		if err := restoreState(fd, want); err != nil && where != "" {
			log.Warn("could not put back the mode and times of a directory after rolling the restore back", "path", shortName(where), "error", err)
		}
	}
	err = readJournal(f, func(rec record) error {
		switch rec.kind {
		case recRoot:
			root = rec.state
			r.frames = append(r.frames, replayFrame{state: rec.state})
			_, _, _ = ensureAccess(r.t.fd, 0o300)
		case recEnter:
			if err := r.t.down(rec.name); err != nil {
				return fmt.Errorf("entering %s: %w", shortName(r.where(rec.name)), err)
			}
			if err := r.s.down(rec.name); err != nil {
				return fmt.Errorf("entering the staged %s: %w", shortName(r.where("")), err)
			}
			if _, _, err := ensureAccess(r.t.fd, 0o300); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", shortName(r.where("")), err))
			}
			r.frames = append(r.frames, replayFrame{state: rec.state})
		case recMove:
			if err := undoMove(r, rec.name, rec.aside); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", shortName(r.where(rec.name)), err))
			}
		case recLeave:
			restore(r.t.fd, r.top().state, r.where(""))
			r.frames = r.frames[:len(r.frames)-1]
			if err := r.t.up(); err != nil {
				return err
			}
			if err := r.s.up(); err != nil {
				return err
			}
		case recEnd:
			// The target's own times: best effort, as its owner may
			// be someone else.
			restore(r.t.fd, r.top().state, "")
		}
		return nil
	})
	if err == nil && len(failed) > 0 {
		if len(failed) > 3 {
			failed = append(failed[:3], fmt.Sprintf("and %d more", len(failed)-3))
		}
		err = errors.New("could not undo " + strings.Join(failed, "; "))
	}
	return root, err
}

// undoMove undoes one move of a commit, whether it happened in full, in
// part or not at all.
func undoMove(r *replay, name, aside string) error {
	var st unix.Stat_t
	staged := unix.Fstatat(r.s.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if staged == unix.ENOENT {
		// The staged entry was moved in: take it back.
		if err := unix.Fstatat(r.t.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("the restored entry is gone: %w", err)
		}
		err := renameNoReplace(r.t.fd, name, r.s.fd, name)
		if err == unix.EACCES && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			// Moving a directory to another parent needs write
			// permission on it, which its restored mode may lack.
			if fd, oerr := openDir(r.t.fd, name); oerr == nil {
				_, _, _ = ensureAccess(fd, 0o200)
				unix.Close(fd)
				err = renameNoReplace(r.t.fd, name, r.s.fd, name)
			}
		}
		if err != nil {
			return err
		}
	} else if staged != nil {
		return staged
	}
	if aside == "" {
		return nil
	}
	switch err := unix.Fstatat(r.t.fd, aside, &st, unix.AT_SYMLINK_NOFOLLOW); err {
	case nil:
		return renameNoReplace(r.t.fd, aside, r.t.fd, name)
	case unix.ENOENT:
		return nil // never set aside
	default:
		return err
	}
}

// restoreState puts back a directory's mode and times where they differ.
func restoreState(fd int, want dirState) error {
	st, err := statFD(fd)
	if err != nil {
		return err
	}
	if st.Mode&0o7777 != want.mode {
		if err := fdChmod(fd, want.mode); err != nil {
			return err
		}
	}
	if stampOf(&st) != want.times {
		return fdUtimes(fd, want.times)
	}
	return nil
}

// rollForward finishes a commit that is marked done: what was set aside
// is deleted. What cannot be deleted stays, with a warning: backups and
// Empty ignore reserved names.
func rollForward(tfd, sfd int, dir string, log *slog.Logger) {
	f, err := openJournal(sfd)
	if err != nil {
		log.Warn("could not read the commit journal to delete the entries set aside; they stay (backups ignore them)", "error", err)
		return
	}
	defer f.Close()
	r, err := newReplay(tfd, sfd)
	if err != nil {
		log.Warn("could not delete the entries set aside; they stay (backups ignore them)", "error", err)
		return
	}
	defer r.close()
	left := 0
	err = readJournal(f, func(rec record) error {
		switch rec.kind {
		case recEnter:
			if err := r.t.down(rec.name); err != nil {
				return err
			}
		case recLeave:
			if err := r.t.up(); err != nil {
				return err
			}
		case recMove:
			if rec.aside == "" {
				return nil
			}
			if err := removeAside(r.t.fd, rec.aside); err != nil {
				left++
				if left <= maxSkipWarnings {
					log.Warn("could not delete an entry set aside by the restore; it stays (backups ignore it), delete it by hand", "path", shortName(filepath.Join(dir, r.where(rec.aside))), "error", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		log.Warn("could not delete every entry set aside by the restore; they stay (backups ignore them), delete them by hand", "dir", dir, "error", err)
	}
}

// removeAside deletes an entry set aside in the directory open as fd,
// keeping that directory's mode and times as the commit left them.
func removeAside(fd int, aside string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, aside, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
		return nil
	}
	dst, err := statFD(fd)
	if err != nil {
		return err
	}
	orig, changed, err := ensureAccess(fd, 0o300)
	if err != nil {
		return err
	}
	err = removeAll(fd, aside)
	if changed {
		if cerr := fdChmod(fd, orig); err == nil {
			err = cerr
		}
	}
	// Deleting changed the directory's modification time; put back the
	// snapshot's (best effort: needs ownership).
	_ = fdUtimes(fd, stampOf(&dst))
	return err
}

// Recover cleans up after restores into dir that were interrupted: for
// each staging directory directly in dir, a commit marked done is
// finished (what it set aside is deleted), a commit in progress is rolled
// back (dir gets back exactly what it had), and the staging directory is
// removed. Call it only while holding the volume lock of dir: every
// staging directory is then provably abandoned. A missing dir is fine.
//
// An error (exit 4) means a rollback could not be completed; the staging
// directory and its journal are kept for the next attempt.
func Recover(dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
	}
	defer unix.Close(tfd)
	var names []string
	r := newDirReader(make([]byte, 32<<10))
	if err := r.reset(tfd, 0); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
	}
	for {
		name, _, ok, err := r.next()
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
		}
		if !ok {
			break
		}
		if strings.HasPrefix(name, StagingPrefix) {
			names = append(names, name)
		}
	}
	var first error
	for _, name := range names {
		if err := recoverStaging(tfd, dir, name, log); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func recoverStaging(tfd int, dir, name string, log *slog.Logger) error {
	p := filepath.Join(dir, name)
	sfd, err := openDir(tfd, name)
	switch {
	case err == unix.ENOENT:
		return nil
	case err == unix.ENOTDIR || err == unix.ELOOP:
		log.Warn("removing a leftover that has the name of a staging directory", "path", p)
		if err := unix.Unlinkat(tfd, name, 0); err != nil && err != unix.ENOENT {
			return fmt.Errorf("%w: removing %s: %w", ErrTarget, p, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrTarget, p, err)
	}
	var st unix.Stat_t
	exists := func(n string) bool { return unix.Fstatat(sfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil }
	switch {
	case exists(committedName):
		log.Info("finishing a restore that was interrupted after its commit: deleting what it set aside", "staging", p)
		rollForward(tfd, sfd, dir, log)
	case exists(journalName):
		log.Warn("rolling back a restore that was interrupted during its commit", "staging", p)
		root, err := undoJournal(tfd, sfd, log)
		if err != nil {
			unix.Close(sfd)
			return fmt.Errorf("%w: rolling back the interrupted restore recorded in %s: %w; fix the cause and run the restore again (it retries the rollback first)", ErrTarget, p, err)
		}
		// Removing staging changes the target's times again.
		defer func() { _ = restoreState(tfd, root) }()
	default:
		log.Info("removing the staging directory of an interrupted restore", "path", p)
	}
	unix.Close(sfd)
	if err := removeAll(tfd, name); err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrTarget, p, err)
	}
	return nil
}

// Interrupted reports whether a restore into dir was interrupted during
// its commit and not yet rolled back: dir then holds old and new entries
// mixed, and only Recover, under the volume lock, can tell them apart. It
// only reads.
func Interrupted(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), StagingPrefix) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, e.Name(), journalName)); err == nil {
			return true, nil
		}
	}
	return false, nil
}
