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
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExtractOptions tune Extract.
type ExtractOptions struct {
	// Overwrite lets entries of the archive replace entries of the same
	// name already in the target; other entries of the target stay. When
	// false the target is expected to be empty (see Empty).
	Overwrite bool
	// Concurrency is the number of decompression goroutines; 0 means
	// GOMAXPROCS.
	Concurrency int
	// Logger receives warnings and the cleanup of stale staging dirs.
	Logger *slog.Logger

	// noSync skips the final syncfs, which fuzzing cannot afford.
	noSync bool
}

// Empty reports whether dir holds nothing but lost+found and staging
// directories left by interrupted restores. A missing dir is empty.
func Empty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	for _, e := range entries {
		if !ignoredInTarget(e.Name()) {
			return false, nil
		}
	}
	return true, nil
}

func ignoredInTarget(name string) bool {
	return name == lostFound || strings.HasPrefix(name, StagingPrefix)
}

// Extract restores the tar+zstd stream r into dir.
//
// Everything is first written into a staging directory inside dir. Only
// after the whole stream checked out (every frame checksum, the tar end
// marker, every name safe) are the entries moved into place and the
// directories given their modes and times (read-only ones last). On any
// failure the staging directory is removed and dir is left as it was,
// modification time included. Ownership is restored when running as root.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, err := os.Stat(dir)
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	removeStaleStaging(dir, log)
	before, err := os.Stat(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	staging, err := os.MkdirTemp(dir, StagingPrefix)
	if err != nil {
		return Stats{}, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	x := &extractor{staging: staging, asRoot: os.Geteuid() == 0, w: newFileWriter()}
	undo := func() {
		if x.root != nil {
			x.root.Close()
		}
		if err := os.RemoveAll(staging); err != nil {
			log.Error("could not remove the staging directory; delete it by hand", "path", staging, "error", err)
		}
		if created {
			_ = os.Remove(dir)
			return
		}
		// Best effort: needs ownership of dir, which a job may not have.
		_ = os.Chtimes(dir, atime(before), before.ModTime())
	}
	x.root, err = os.OpenRoot(staging)
	if err != nil {
		undo()
		return Stats{}, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	st, err := readArchive(ctx, r, opts.Concurrency, log, x.entry)
	// Every file must be written and closed before the staging
	// directory is moved or removed.
	if werr := x.w.wait(); err == nil {
		err = werr
	}
	if err != nil {
		undo()
		return st, err
	}
	if err := x.commit(dir, opts.Overwrite, !opts.noSync); err != nil {
		undo()
		return st, err
	}
	x.root.Close()
	if err := os.RemoveAll(staging); err != nil {
		log.Warn("could not remove the empty staging directory", "path", staging, "error", err)
	}
	return st, nil
}

func removeStaleStaging(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), StagingPrefix) {
			p := filepath.Join(dir, e.Name())
			log.Warn("removing the staging directory of an interrupted restore", "path", p)
			if err := os.RemoveAll(p); err != nil {
				log.Warn("could not remove it", "path", p, "error", err)
			}
		}
	}
}

// dirMeta is applied to directories after their contents are in place,
// because a read-only directory cannot be filled and writing into a
// directory changes its modification time.
type dirMeta struct {
	name     string
	mode     fs.FileMode
	mtime    time.Time
	atime    time.Time
	uid, gid int
}

type extractor struct {
	staging string
	root    *os.Root
	asRoot  bool
	w       *fileWriter
	dirs    []dirMeta
}

func (x *extractor) entry(h *tar.Header, name string, body io.Reader) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o700); err != nil {
			return targetErr(name, err)
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return targetErr(name, err)
		}
		x.dirs = append(x.dirs, dirMeta{name: name, mode: fileMode(h.Mode, x.asRoot), mtime: h.ModTime, atime: h.AccessTime, uid: h.Uid, gid: h.Gid})
		return nil
	case tar.TypeSymlink:
		if err := x.root.Symlink(h.Linkname, name); err != nil {
			return targetErr(name, err)
		}
		if x.asRoot {
			if err := x.root.Lchown(name, h.Uid, h.Gid); err != nil {
				return targetErr(name, err)
			}
		}
		return x.lutimes(name, h)
	case tar.TypeLink:
		target, _ := cleanName(h.Linkname) // checked by the validator
		if err := x.root.Link(target, name); err != nil {
			return targetErr(name, err)
		}
		return nil
	default: // regular file
		return x.file(h, name, body)
	}
}

func (x *extractor) file(h *tar.Header, name string, body io.Reader) error {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return targetErr(name, err)
	}
	finish := func() error {
		err := targetErr(name, f.Truncate(h.Size))
		if err == nil && h.Size > 0 {
			// Start writing the file back now, without waiting: the
			// final syncfs then finds little left to do. Best effort:
			// some filesystems do not support it.
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		}
		if err == nil && x.asRoot {
			err = targetErr(name, f.Chown(h.Uid, h.Gid))
		}
		if err == nil {
			// After chown, which clears set-id bits.
			err = targetErr(name, f.Chmod(fileMode(h.Mode, x.asRoot)))
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = targetErr(name, cerr)
		}
		if err != nil {
			return err
		}
		return targetErr(name, x.root.Chtimes(name, atimeOf(h), h.ModTime))
	}
	return x.w.copyFile(f, name, body, h.Size, finish)
}

func (x *extractor) lutimes(name string, h *tar.Header) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atimeOf(h).UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	// The validator guarantees every parent is a real directory created
	// by this extraction, so the path cannot lead elsewhere.
	p := filepath.Join(x.staging, filepath.FromSlash(name))
	return targetErr(name, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// commit moves the staged tree into dir, then applies directory metadata
// deepest first.
func (x *extractor) commit(dir string, overwrite, sync bool) error {
	entries, err := os.ReadDir(x.staging)
	if err != nil {
		return targetErr(".", err)
	}
	for _, e := range entries {
		if err := merge(filepath.Join(x.staging, e.Name()), filepath.Join(dir, e.Name()), overwrite); err != nil {
			return err
		}
	}
	target, err := os.OpenRoot(dir)
	if err != nil {
		return targetErr(".", err)
	}
	defer target.Close()
	slices.SortFunc(x.dirs, func(a, b dirMeta) int { return strings.Count(b.name, "/") - strings.Count(a.name, "/") })
	for _, d := range x.dirs {
		if x.asRoot {
			if err := target.Lchown(d.name, d.uid, d.gid); err != nil {
				return targetErr(d.name, err)
			}
		}
		if err := target.Chmod(d.name, d.mode); err != nil {
			return targetErr(d.name, err)
		}
		at := d.atime
		if at.IsZero() {
			at = d.mtime
		}
		if err := target.Chtimes(d.name, at, d.mtime); err != nil {
			return targetErr(d.name, err)
		}
	}
	if !sync {
		return nil
	}
	// One syncfs makes the whole restore durable at the cost of a single
	// call, instead of an fsync per file.
	f, err := os.Open(dir)
	if err != nil {
		return targetErr(".", err)
	}
	defer f.Close()
	return targetErr(".", unix.Syncfs(int(f.Fd())))
}

// merge moves src to dst. Directories present on both sides are merged;
// otherwise an existing dst is replaced only with overwrite.
func merge(src, dst string, overwrite bool) error {
	di, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return targetErr(dst, os.Rename(src, dst))
	}
	if err != nil {
		return targetErr(dst, err)
	}
	si, err := os.Lstat(src)
	if err != nil {
		return targetErr(src, err)
	}
	if si.IsDir() && di.IsDir() {
		entries, err := os.ReadDir(src)
		if err != nil {
			return targetErr(src, err)
		}
		for _, e := range entries {
			if err := merge(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), overwrite); err != nil {
				return err
			}
		}
		return nil
	}
	if !overwrite {
		return fmt.Errorf("%w: %s already exists (set SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite to replace it)", ErrTarget, dst)
	}
	if err := os.RemoveAll(dst); err != nil {
		return targetErr(dst, err)
	}
	return targetErr(dst, os.Rename(src, dst))
}

func targetErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrTarget, name, err)
}

// fileMode converts tar mode bits. Set-id bits are kept only for root,
// as tar does: a non-root restore would hand out another user's rights.
func fileMode(m int64, asRoot bool) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if asRoot {
		if m&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if m&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
	}
	return mode
}

func atimeOf(h *tar.Header) time.Time {
	if h.AccessTime.IsZero() {
		return h.ModTime
	}
	return h.AccessTime
}

func atime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Unix())
	}
	return fi.ModTime()
}
