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
	"sync/atomic"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// WriteOptions tune Write.
type WriteOptions struct {
	// Level is a key of Levels; empty means "fastest".
	Level string
	// Concurrency is the number of compression goroutines; 0 means
	// GOMAXPROCS.
	Concurrency int
	// Logger receives warnings about skipped and changing files.
	Logger *slog.Logger
	// Progress, if set, is advanced by the source bytes archived.
	Progress *atomic.Int64

	// Test hooks: change a file before it is opened, or between its
	// header and its content, as live captures and rotations do.
	beforeOpen  func(rel string)
	afterHeader func(rel string)
	// noReadAhead turns the read-ahead off, to measure what it buys.
	noReadAhead bool
}

// Scan walks dir as Write would and counts what it would store, so that
// callers know the size before streaming (part sizes, progress ETA).
func Scan(ctx context.Context, dir string) (Stats, error) {
	var st Stats
	err := walk(ctx, dir, nil, func(_, _ string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			st.Dirs++
		case d.Type()&fs.ModeSymlink != 0:
			st.Symlinks++
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return nil // vanished; Write will say so
			}
			st.Files++
			st.Bytes += fi.Size()
		default:
			st.Skipped++
		}
		return nil
	})
	return st, err
}

// walk calls fn for every entry under dir in lexical order, skipping the
// root itself and lost+found at the root. Entries that vanish during the
// walk are skipped with a warning; other errors wrap ErrSource.
func walk(ctx context.Context, dir string, log *slog.Logger, fn func(path, rel string, d fs.DirEntry) error) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrSource, dir)
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				if log != nil {
					log.Warn("skipped an entry that vanished during the backup", "path", path)
				}
				return nil
			}
			return fmt.Errorf("%w: %w", ErrSource, err)
		}
		if path == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSource, err)
		}
		rel = filepath.ToSlash(rel)
		if rel == lostFound && d.IsDir() {
			return filepath.SkipDir
		}
		return fn(path, rel, d)
	})
}

// Write streams dir as tar+zstd into w. Errors reading the tree wrap
// ErrSource; errors from w are returned as they are.
func Write(ctx context.Context, w io.Writer, dir string, opts WriteOptions) (Stats, error) {
	level, err := encoderLevel(opts.Level)
	if err != nil {
		return Stats{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	zw, err := newFrameWriter(w, level, frameSize(level), opts.Concurrency)
	if err != nil {
		return Stats{}, err
	}
	aw := &archiver{
		tw:       tar.NewWriter(zw),
		log:      log,
		progress: opts.Progress,
		links:    make(map[fileID]string),
		buf:      make([]byte, 1<<20),
		before:   opts.beforeOpen,
		after:    opts.afterHeader,
	}
	if !opts.noReadAhead {
		aw.ra = startReadAhead(ctx, dir, hintFile)
		defer aw.ra.stop()
	}
	err = walk(ctx, dir, log, aw.add)
	if err == nil {
		err = aw.tw.Close()
	}
	// Both wait for the frames in flight, a few MiB each.
	if err != nil {
		zw.Abort()
		return aw.st, err
	}
	return aw.st, zw.Close()
}

type fileID struct{ dev, ino uint64 }

type archiver struct {
	tw       *tar.Writer
	log      *slog.Logger
	progress *atomic.Int64
	links    map[fileID]string // first name of each multiply-linked file
	buf      []byte
	st       Stats
	before   func(rel string)
	after    func(rel string)
	ra       *readAhead // nil when off
}

func (a *archiver) add(path, rel string, d fs.DirEntry) error {
	switch t := d.Type(); {
	case t.IsDir():
		fi, err := d.Info()
		if err != nil {
			return a.vanished(rel, err)
		}
		a.st.Dirs++
		return a.writeHeader(header(fi, rel+"/", tar.TypeDir))
	case t&fs.ModeSymlink != 0:
		fi, err := d.Info()
		if err != nil {
			return a.vanished(rel, err)
		}
		target, err := os.Readlink(path)
		if err != nil {
			return a.vanished(rel, err)
		}
		h := header(fi, rel, tar.TypeSymlink)
		h.Linkname = target
		a.st.Symlinks++
		return a.writeHeader(h)
	case t.IsRegular():
		err := a.addFile(path, rel)
		if a.ra != nil {
			a.ra.fileDone()
		}
		return err
	default:
		a.skip(rel, t)
		return nil
	}
}

func (a *archiver) skip(rel string, t fs.FileMode) {
	a.st.Skipped++
	a.log.Warn("skipped a special file: only regular files, directories and links are archived", "path", rel, "type", t.Type().String())
}

// vanished turns a missing entry into a warning (capture tools rotate files
// all the time) and anything else into a source error.
func (a *archiver) vanished(rel string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		a.st.Skipped++
		a.log.Warn("skipped an entry that vanished during the backup", "path", rel)
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrSource, rel, err)
}

func (a *archiver) addFile(path, rel string) error {
	if a.before != nil {
		a.before(rel)
	}
	// O_NONBLOCK: if the file was swapped for a FIFO since the directory
	// was read, open must not block. O_NOFOLLOW: nor for a symlink.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return a.vanished(rel, fs.ErrNotExist)
		}
		return a.vanished(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSource, rel, err)
	}
	if !fi.Mode().IsRegular() {
		a.skip(rel, fi.Mode())
		return nil
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Nlink > 1 {
		id := fileID{uint64(sys.Dev), sys.Ino}
		if first, ok := a.links[id]; ok {
			h := header(fi, rel, tar.TypeLink)
			h.Linkname = first
			h.Size = 0
			a.st.HardLinks++
			return a.writeHeader(h)
		}
		a.links[id] = rel
	}
	h := header(fi, rel, tar.TypeReg)
	if err := a.writeHeader(h); err != nil {
		return err
	}
	a.st.Files++
	if a.after != nil {
		a.after(rel)
	}
	return a.copyContent(f, rel, h.Size)
}

// copyContent writes exactly size bytes of f: the header already promised
// them. Capture files change while they are read; a file that shrank is
// padded with zeros, one that grew is cut at size, and both are reported.
func (a *archiver) copyContent(f *os.File, rel string, size int64) error {
	var n int64
	for n < size {
		chunk := a.buf[:min(int64(len(a.buf)), size-n)]
		m, err := f.Read(chunk)
		if m > 0 {
			if _, werr := a.tw.Write(chunk[:m]); werr != nil {
				return werr
			}
			n += int64(m)
			a.st.Bytes += int64(m)
			if a.progress != nil {
				a.progress.Add(int64(m))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s: %w", ErrSource, rel, err)
		}
	}
	if n < size {
		clear(a.buf)
		for left := size - n; left > 0; {
			m := min(left, int64(len(a.buf)))
			if _, err := a.tw.Write(a.buf[:m]); err != nil {
				return err
			}
			left -= m
		}
		a.st.Changed++
		a.log.Warn("file shrank while it was archived; padded with zeros to the size it had when its header was written",
			"path", rel, "header_size", size, "read", n)
		return nil
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > size {
		a.st.Changed++
		a.log.Warn("file grew while it was archived; stored the size it had when its header was written",
			"path", rel, "stored", size, "size_now", fi.Size())
	}
	return nil
}

func (a *archiver) writeHeader(h *tar.Header) error {
	return a.tw.WriteHeader(h)
}

// header builds a PAX header by hand rather than with tar.FileInfoHeader,
// which looks user and group names up: numeric ids are what a restore
// into another pod can use.
func header(fi fs.FileInfo, name string, typ byte) *tar.Header {
	h := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     tarMode(fi.Mode()),
		ModTime:  fi.ModTime(),
		Format:   tar.FormatPAX, // keeps nanosecond mtimes and long names
	}
	if typ == tar.TypeReg {
		h.Size = fi.Size()
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(sys.Uid), int(sys.Gid)
	}
	return h
}

func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// FrameSize is the size of the zstd frames Write makes at level (a key of
// Levels): the compressor holds (workers + 2) × 2 of them.
func FrameSize(level string) int64 {
	l, err := encoderLevel(level)
	if err != nil {
		l = zstd.SpeedBestCompression // the largest
	}
	return int64(frameSize(l))
}

// frameSize is the size of the independent zstd frames: 4 MiB keeps the
// fast levels' ratio (their window is 4 MiB anyway); the slower levels
// look further back and get 8 MiB.
func frameSize(l zstd.EncoderLevel) int {
	if l <= zstd.SpeedDefault {
		return 4 << 20
	}
	return 8 << 20
}
