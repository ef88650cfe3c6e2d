package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ExtractOptions tune Extract.
type ExtractOptions struct {
	// Overwrite lets entries of the archive replace entries of the same
	// name already in the target; other entries of the target stay. When
	// false the target is expected to be empty (see TargetEmpty).
	Overwrite bool
	// Concurrency is the number of decompression goroutines; 0 means
	// GOMAXPROCS.
	Concurrency int
	// Logger receives warnings.
	Logger *slog.Logger
	// Token names this run's staging directory (StagingPrefix + Token)
	// and the entries it moves aside: lower-case letters and digits, at
	// most 64. Required.
	Token string
	// BeforeCommit, if set, is called once the stream has checked out
	// and the commit has been planned and checked, right before the first
	// move into the target. An error aborts: nothing was moved, the
	// staging directory is removed, and Extract returns the error as is.
	BeforeCommit func() error
	// AfterCommit, if set, is called as soon as the commit is durable:
	// from then on an interrupted run is finished, not rolled back.
	AfterCommit func()
	// Progress, if set, is advanced by the content bytes written into
	// the staging directory.
	Progress *atomic.Int64
	// Paths, if set, limits the restore to the entries it matches and
	// their parent directories (with their metadata from the archive).
	// Every other entry is still read and validated, so an archive a
	// full restore would refuse is refused, but not written. A selection
	// that matches nothing fails with ErrNoMatch before anything moves.
	Paths *Paths

	// noSync skips syncfs and fsync, which fuzzing cannot afford.
	noSync bool
	// testHook, if set, is called at each step of a commit ("move",
	// "dirs", "marker", "asides") and may fail it, to test rollbacks.
	testHook func(step string) error
	// testCrash makes a failing testHook leave everything as a killed
	// run would: no rollback, no cleanup.
	testCrash bool
	// limits lowers the caps of limits.go for tests; zero: those.
	limits limits
}

// TargetEmpty reports whether the restore target dir holds nothing but
// lost+found and names of snapshot-job's own (a lock file, staging
// directories, entries set aside): what a restore without Overwrite
// needs. A missing dir is empty.
func TargetEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if n != lostFound && !Reserved(n) {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrTarget, err)
		}
	}
}

func validToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, c := range []byte(t) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Extract restores the tar+zstd stream r into dir.
//
// Everything is first written into a staging directory inside dir. Only
// after the whole stream checked out (every frame checksum, the tar end
// marker, every name safe) is the commit planned: which staged entries
// move into place, which entries of dir they replace (only with
// Overwrite) and whether every move is allowed. Any conflict is reported
// before anything moves. The commit itself is journaled, sets replaced
// entries aside instead of deleting them, and is undone completely if any
// step fails; the directories then get their modes and times. On any
// failure dir is left as it was (its own modification time best effort)
// and the directories Extract created for it are removed. Ownership is
// restored when running as root.
//
// A run killed during the commit leaves its journal behind; Recover,
// called by the next run, rolls it back or finishes it.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	return extract(ctx, dir, opts, func(log *slog.Logger, fn entryFunc) (Stats, streamInfo, error) {
		return readArchive(ctx, r, opts.Concurrency, log, opts.limits, nil, fn)
	})
}

// readFunc reads a whole archive, calling fn for each entry to restore.
type readFunc func(log *slog.Logger, fn entryFunc) (Stats, streamInfo, error)

// extract is Extract with the archive read by read: from a tar+zstd
// stream, or from the frames an index selects (ExtractIndexed).
func extract(ctx context.Context, dir string, opts ExtractOptions, read readFunc) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !validToken(opts.Token) {
		return Stats{}, fmt.Errorf("extract: token %q is not 1 to 64 lower-case letters and digits", opts.Token)
	}
	created, err := makeDirs(dir)
	if err != nil {
		return Stats{}, err
	}
	removeCreated := func() {
		for i := len(created) - 1; i >= 0; i-- {
			if os.Remove(created[i]) != nil {
				break
			}
		}
	}
	tfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		tfd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		removeCreated()
		return Stats{}, fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
	}
	defer unix.Close(tfd)
	before, err := statFD(tfd)
	if err != nil {
		removeCreated()
		return Stats{}, fmt.Errorf("%w: %s: %w", ErrTarget, dir, err)
	}
	staging := StagingPrefix + opts.Token
	if err := unix.Mkdirat(tfd, staging, 0o700); err != nil {
		removeCreated()
		return Stats{}, fmt.Errorf("%w: creating %s: %w", ErrTarget, filepath.Join(dir, staging), err)
	}
	x := &extractor{asRoot: os.Geteuid() == 0, dirs: &dirList{}}
	sfd := -1
	// abort removes the staging directory and puts dir's time back.
	abort := func() {
		x.closeCursors()
		if sfd >= 0 {
			unix.Close(sfd)
		}
		if err := removeAll(tfd, staging); err != nil {
			log.Error("could not remove the staging directory; delete it by hand", "path", filepath.Join(dir, staging), "error", err)
		}
		if len(created) > 0 {
			removeCreated()
			return
		}
		// Best effort: needs ownership of dir, which a job may not have.
		_ = fdUtimes(tfd, stampOf(&before))
	}
	sfd, err = openDir(tfd, staging)
	if err == nil {
		x.stage, err = newCursor(sfd, true)
	}
	if err == nil {
		x.links, err = newCursor(sfd, false)
	}
	if err != nil {
		abort()
		return Stats{}, fmt.Errorf("%w: %s: %w", ErrTarget, filepath.Join(dir, staging), err)
	}
	x.w = newFileWriter(opts.Progress)
	fn := x.entry
	var sel *selection
	if opts.Paths != nil {
		sel = &selection{paths: opts.Paths, x: x, log: log, pending: map[string]dirHeader{}}
		fn = sel.entry
	}
	st, info, err := read(log, fn)
	// Every file must be written and closed before the staging
	// directory is moved or removed.
	if werr := x.w.wait(); err == nil {
		err = werr
	}
	x.closeCursors()
	if err == nil {
		err = ctx.Err()
		if err != nil {
			err = context.Cause(ctx)
		}
	}
	if err == nil && sel != nil {
		err = sel.finish()
	}
	if err != nil {
		abort()
		return st, err
	}
	if info.unchecked > 0 {
		log.Warn("the snapshot's zstd frames carry no content checksum, so damage inside them cannot be detected; restoring it anyway (it was written by another tool)",
			"frames", info.frames, "without_checksum", info.unchecked)
	}
	c := &commit{
		dir: dir, tfd: tfd, sfd: sfd, staging: staging, token: opts.Token,
		overwrite: opts.Overwrite, sync: !opts.noSync, log: log, asRoot: x.asRoot, euid: os.Geteuid(),
		hook: opts.testHook, crash: opts.testCrash,
		before: opts.BeforeCommit, after: opts.AfterCommit, rootState: stateOf(&before),
	}
	err = c.run(ctx, x.dirs)
	switch {
	case err == nil:
		unix.Close(sfd)
		if err := removeAll(tfd, staging); err != nil {
			log.Warn("could not remove the staging directory after the restore; delete it by hand (backups ignore it)", "path", filepath.Join(dir, staging), "error", err)
		}
		return st, nil
	case c.crashed, c.kept:
		// Staging holds the journal the next run needs.
		unix.Close(sfd)
		return st, err
	}
	abort()
	return st, err
}

// makeDirs creates dir and its missing parents, and returns the ones it
// created, outermost first, so that a failed restore can remove them.
func makeDirs(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("%w: %s is not a directory", ErrTarget, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrTarget, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue // made by someone else meanwhile: not ours to remove
		}
		if err != nil {
			for j := len(created) - 1; j >= 0; j-- {
				os.Remove(created[j])
			}
			return nil, fmt.Errorf("%w: %w", ErrTarget, err)
		}
		created = append(created, missing[i])
	}
	return created, nil
}

// dirMeta is applied to directories after their contents are in place,
// because a read-only directory cannot be filled and writing into a
// directory changes its modification time.
type dirMeta struct {
	name     string
	times    stamp
	mode     uint32
	uid, gid uint32
	depth    int32
}

// dirList keeps dirMeta in fixed-size chunks, so that growing never
// copies it: its memory is what the validator counts against
// MaxDirMetadata.
type dirList struct {
	chunks [][]dirMeta
	n      int
}

const dirChunk = 4096

func (l *dirList) add(d dirMeta) {
	if l.n%dirChunk == 0 {
		l.chunks = append(l.chunks, make([]dirMeta, 0, dirChunk))
	}
	c := &l.chunks[len(l.chunks)-1]
	*c = append(*c, d)
	l.n++
}

func (l *dirList) at(i int) *dirMeta { return &l.chunks[i/dirChunk][i%dirChunk] }

// sort.Interface, deepest first, then by name so that siblings are
// together.
func (l *dirList) Len() int { return l.n }
func (l *dirList) Less(i, j int) bool {
	a, b := l.at(i), l.at(j)
	if a.depth != b.depth {
		return a.depth > b.depth
	}
	return a.name < b.name
}
func (l *dirList) Swap(i, j int) { a, b := l.at(i), l.at(j); *a, *b = *b, *a }

type extractor struct {
	stage  *cursor // at the parent of the entry being written
	links  *cursor // at the parent of a hard link's target
	asRoot bool
	w      *fileWriter
	dirs   *dirList
}

func (x *extractor) closeCursors() {
	if x.stage != nil {
		x.stage.close()
	}
	if x.links != nil {
		x.links.close()
	}
}

// splitName splits a cleaned name into its directory ("" at the top) and
// its last component.
func splitName(name string) (string, string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func (x *extractor) entry(h *tar.Header, name string, body io.Reader) error {
	dir, base := splitName(name)
	if err := x.stage.goTo(dir); err != nil {
		return targetErr(name, err)
	}
	fd := x.stage.fd
	ts := stamp{timespec(atimeOf(h)), timespec(h.ModTime)}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(fd, base, 0o700); err != nil && err != unix.EEXIST {
			return targetErr(name, err)
		}
		x.dirs.add(dirMeta{name: name, times: ts, mode: modeBits(h.Mode, x.asRoot), uid: uint32(h.Uid), gid: uint32(h.Gid), depth: int32(strings.Count(name, "/"))})
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, fd, base); err != nil {
			return targetErr(name, err)
		}
		if x.asRoot {
			if err := unix.Fchownat(fd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return targetErr(name, err)
			}
		}
		return targetErr(name, unix.UtimesNanoAt(fd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW))
	case tar.TypeLink:
		target, _ := cleanName(h.Linkname) // checked by the validator
		tdir, tbase := splitName(target)
		tfd := fd
		if tdir != dir {
			if err := x.links.goTo(tdir); err != nil {
				return targetErr(name, err)
			}
			tfd = x.links.fd
		}
		return targetErr(name, unix.Linkat(tfd, tbase, fd, base, 0))
	default: // regular file
		return x.file(h, name, fd, base, ts, body)
	}
}

func (x *extractor) file(h *tar.Header, name string, dirfd int, base string, ts stamp, body io.Reader) error {
	ffd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return targetErr(name, err)
	}
	f := os.NewFile(uintptr(ffd), base)
	mode := modeBits(h.Mode, x.asRoot)
	finish := func() error {
		err := targetErr(name, f.Truncate(h.Size))
		if err == nil && h.Size > 0 {
			// Start writing the file back now, without waiting: the
			// final syncfs then finds little left to do. Best effort:
			// some filesystems do not support it.
			_ = unix.SyncFileRange(ffd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		}
		if err == nil && x.asRoot {
			err = targetErr(name, unix.Fchown(ffd, h.Uid, h.Gid))
		}
		if err == nil {
			// After chown, which clears set-id bits.
			err = targetErr(name, unix.Fchmod(ffd, mode))
		}
		if err == nil {
			err = targetErr(name, futimens(ffd, &ts))
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = targetErr(name, cerr)
		}
		return err
	}
	return x.w.copyFile(f, name, body, h.Size, finish)
}

func targetErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrTarget, shortName(name), err)
}

// modeBits converts tar mode bits. Set-id bits are kept only for root,
// as tar does: a non-root restore would hand out another user's rights.
func modeBits(m int64, asRoot bool) uint32 {
	mode := uint32(m & 0o1777)
	if asRoot {
		mode |= uint32(m & 0o6000)
	}
	return mode
}

func atimeOf(h *tar.Header) time.Time {
	if h.AccessTime.IsZero() {
		return h.ModTime
	}
	return h.AccessTime
}
