package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// WriteOptions tune Write (and Scan, which applies the same rules).
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
	// Exclude lists directories (absolute paths) to leave out of the
	// snapshot wherever the walk meets them, matched by device and inode
	// so that neither a symlink nor a bind mount brings one back in.
	// Each one met is reported with a warning. A path that does not exist
	// yet is looked for again as the walk goes on. The root itself being
	// one fails with ErrSource.
	Exclude []string
	// Reserved, if set, is called with the relative, slash-separated path
	// of each entry skipped because its name starts with ReservedPrefix,
	// in the walk's order, from the goroutine that called Write or Scan.
	Reserved func(rel string)
	// BeforeEnd, if set, is called once the whole tree is archived and
	// before the tar end marker is written. Its error is returned as it
	// is and the stream is left without an end marker, so that no reader
	// takes it for a complete snapshot and a store does not complete it.
	BeforeEnd func() error

	// Test hooks, for what a live volume does at random moments and a
	// test must do at one exact moment: change a file before it is
	// opened, or between its header and its content, as captures and
	// rotations do; see what the read-ahead hints instead of hinting it
	// (a no-op hint is no read-ahead); count the directories the walk
	// opens, which no system interface reports for one walk.
	beforeOpen  func(rel string)
	afterHeader func(rel string)
	hint        func(rel string)
	openedDir   func(rel string)
	// noIndex leaves the index out (nor are the files' checksums
	// computed), for the benchmark of what the index costs a backup.
	noIndex bool
}

// Scan walks dir by the rules of Write with opts (the symlinked root,
// Exclude, reserved names, lost+found; Reserved is called likewise) and
// counts what Write would store, each multiply-linked file once, so that
// callers know the size before streaming (part sizes, progress ETA). It
// logs nothing: Write reports what it skips.
func Scan(ctx context.Context, dir string, opts WriteOptions) (Stats, error) {
	root, ex, err := openRoot(dir, opts.Exclude)
	if err != nil {
		return Stats{}, err
	}
	defer root.release()
	var st Stats
	links := map[fileID]struct{}{}
	w := &walker{ctx: ctx, opts: walkOptions{statFiles: true, openedDir: opts.openedDir}, excl: ex}
	w.emit = func(e *entry) error {
		switch e.kind {
		case entDir:
			st.Dirs++
		case entSymlink:
			st.Symlinks++
		case entFile:
			if e.st.Nlink > 1 {
				id := idOf(&e.st)
				if _, ok := links[id]; ok {
					st.HardLinks++
					return nil
				}
				links[id] = struct{}{}
			}
			st.Files++
			st.Bytes += e.st.Size
		case entExcluded:
			st.Excluded++
		case entReserved:
			st.Excluded++
			if opts.Reserved != nil {
				opts.Reserved(e.rel)
			}
		default:
			st.Skipped++
		}
		return nil
	}
	return st, w.walk(root)
}

// Write streams dir as tar+zstd into w. Errors reading the tree wrap
// ErrSource; errors from w and from opts.BeforeEnd are returned as they
// are.
func Write(ctx context.Context, w io.Writer, dir string, opts WriteOptions) (Stats, error) {
	level, err := encoderLevel(opts.Level)
	if err != nil {
		return Stats{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, ex, err := openRoot(dir, opts.Exclude)
	if err != nil {
		return Stats{}, err
	}
	zw, err := newFrameWriter(w, level, frameSize(level), opts.Concurrency)
	if err != nil {
		root.release()
		return Stats{}, err
	}
	var iw *indexWriter
	if !opts.noIndex {
		if iw, err = newIndexWriter(); err != nil {
			root.release()
			zw.Abort()
			return Stats{}, err
		}
	}
	cw := &countWriter{w: zw}
	aw := &archiver{
		tw:       tar.NewWriter(cw),
		cw:       cw,
		zw:       zw,
		index:    iw,
		log:      log,
		progress: opts.Progress,
		links:    make(map[fileID]string),
		buf:      make([]byte, 1<<20),
		reserved: opts.Reserved,
		before:   opts.beforeOpen,
		after:    opts.afterHeader,
	}
	hint := hintFile
	if opts.hint != nil {
		hint = func(e *entry) { opts.hint(e.rel) }
	}
	p := startPipeline(ctx, root, ex, walkOptions{openedDir: opts.openedDir}, hint)
	err = aw.consume(ctx, p)
	p.stop()
	if err == nil && opts.BeforeEnd != nil {
		err = opts.BeforeEnd()
	}
	if err == nil {
		err = aw.tw.Close()
	}
	var index []byte
	if err == nil && iw != nil {
		index, err = iw.frame(cw.n)
	}
	// Both wait for the frames in flight, a few MiB each.
	if err != nil {
		zw.Abort()
		return aw.st, err
	}
	return aw.st, zw.Finish(index)
}

// countWriter counts the tar stream's bytes: the offsets the index
// records.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// entryOverhead is what an entry takes in the tar stream beside its
// content, at most for ordinary names: its header block and a PAX header
// of two blocks.
const entryOverhead = 3 * 512

// begin pads the previous entry, lets the frame writer cut a frame before
// an entry of size content bytes, and returns where its header starts.
func (a *archiver) begin(name string, size int64) (int64, error) {
	if err := a.tw.Flush(); err != nil {
		return 0, err
	}
	if a.zw != nil { // nil: a tar stream without compression (benchmarks)
		// A directory near the top (a node's folder, or one level
		// below) starts a frame: what one folder's partial restore
		// fetches then holds nothing of its neighbours.
		shallow := strings.HasSuffix(name, "/") && strings.Count(name, "/") <= 2
		a.zw.boundary(entryOverhead+int64(len(name))+(size+511)&^511, shallow)
	}
	return a.cw.n, nil
}

// record adds the entry just written, whose header started at off, to the
// index.
func (a *archiver) record(h *tar.Header, off int64, crc uint32) {
	if a.index == nil {
		return
	}
	a.index.add(&Entry{
		Name:         strings.TrimSuffix(h.Name, "/"),
		Type:         h.Typeflag,
		Mode:         h.Mode,
		Size:         h.Size,
		ModTime:      h.ModTime,
		Uid:          h.Uid,
		Gid:          h.Gid,
		Link:         h.Linkname,
		HeaderOffset: off,
		DataOffset:   a.dataOff,
		CRC32C:       crc,
	})
}

// writeHeader writes h as a new entry and records it in the index; a
// regular file's content follows with copyContent, which records it.
func (a *archiver) writeHeader(h *tar.Header) error {
	off, err := a.begin(h.Name, h.Size)
	if err != nil {
		return err
	}
	if err := a.tw.WriteHeader(h); err != nil {
		return err
	}
	a.dataOff = a.cw.n
	if h.Typeflag == tar.TypeReg {
		a.hdrOff, a.pending = off, h
		return nil
	}
	a.record(h, off, 0)
	return nil
}

type archiver struct {
	tw       *tar.Writer
	cw       *countWriter
	zw       *frameWriter
	index    *indexWriter
	hdrOff   int64       // where the header of the file being written starts
	dataOff  int64       // where the content of the entry being written starts
	pending  *tar.Header // the file being written, recorded once its content is
	crc      uint32      // of the file being written
	log      *slog.Logger
	progress *atomic.Int64
	links    map[fileID]string // first name of each multiply-linked file
	buf      []byte
	st       Stats
	reserved func(rel string)
	before   func(rel string)
	after    func(rel string)
	paths    int   // entries written, against MaxNames
	dirMeta  int64 // what a restore will keep of the directories, against MaxDirMetadata
}

// consume archives the pipeline's entries in order, until the walk ends
// or an entry fails; then the walk's own error, if any.
func (a *archiver) consume(ctx context.Context, p *pipeline) error {
	for e := range p.entries {
		// The walk may be done already; the archiver's part need not be.
		if ctx.Err() != nil {
			p.done(e)
			return context.Cause(ctx)
		}
		if e.kind == entFile {
			p.take(e)
		}
		err := a.add(e)
		p.done(e)
		if err != nil {
			return err
		}
	}
	return p.err
}

func (a *archiver) add(e *entry) error {
	if err := a.withinBounds(e); err != nil {
		return err
	}
	switch e.kind {
	case entDir:
		a.st.Dirs++
		return a.writeHeader(header(&e.st, e.rel+"/", tar.TypeDir))
	case entSymlink:
		h := header(&e.st, e.rel, tar.TypeSymlink)
		h.Linkname = e.target
		a.st.Symlinks++
		return a.writeHeader(h)
	case entFile:
		return a.addFile(e)
	case entSpecial:
		a.skip(e.rel, e.typ)
	case entVanished:
		a.vanished(e.rel)
	case entReplaced:
		a.replaced(e.rel)
	case entExcluded:
		a.st.Excluded++
		a.log.Warn("left an excluded directory out of the snapshot", "path", e.rel, "excluded", e.excluded)
	case entReserved:
		a.st.Excluded++
		a.log.Debug("skipped an entry of the job's own", "path", e.rel)
		if a.reserved != nil {
			a.reserved(e.rel)
		}
	}
	return nil
}

// withinBounds refuses, before it is written, an entry that would make
// the archive one that restore refuses (limits.go): a backup that cannot
// be restored is worse than one that fails.
func (a *archiver) withinBounds(e *entry) error {
	switch e.kind {
	case entDir, entSymlink, entFile:
	default:
		return nil
	}
	a.paths++
	if a.paths > MaxNames {
		return fmt.Errorf("%w: the source holds more than %d files, directories and links (MaxNames), more than a restore accepts; back up its subdirectories as separate snapshots", ErrSource, MaxNames)
	}
	if e.kind == entSymlink && len(e.target) > MaxSymlinkTarget {
		return fmt.Errorf("%w: symlink %s has a target of %d bytes; a restore accepts at most %d", ErrSource, shortPath(e.rel), len(e.target), MaxSymlinkTarget)
	}
	if e.kind == entDir {
		a.dirMeta += int64(len(e.rel)) + dirMetaOverhead
		if a.dirMeta > MaxDirMetadata {
			return fmt.Errorf("%w: the source's directories need more than %d MiB to restore (MaxDirMetadata: their names plus %d bytes each); back up its subdirectories as separate snapshots", ErrSource, MaxDirMetadata>>20, dirMetaOverhead)
		}
	}
	return nil
}

func (a *archiver) skip(rel string, t fs.FileMode) {
	a.st.Skipped++
	a.log.Warn("skipped a special file: only regular files, directories and links are archived", "path", rel, "type", t.Type().String())
}

// vanished and replaced are warnings, not errors: capture tools rotate
// files all the time.
func (a *archiver) vanished(rel string) {
	a.st.Skipped++
	a.log.Warn("skipped an entry that vanished during the backup", "path", rel)
}

func (a *archiver) replaced(rel string) {
	a.st.Skipped++
	a.log.Warn("skipped an entry that was replaced by another kind of file during the backup", "path", rel)
}

func (a *archiver) addFile(e *entry) error {
	if a.before != nil {
		a.before(e.rel)
	}
	// Relative to the directory the walk listed it in. O_NONBLOCK: if the
	// file was swapped for a FIFO since the directory was read, open must
	// not block. O_NOFOLLOW: nor lead through a symlink.
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(e.dir.fd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		a.vanished(e.rel)
		return nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENXIO): // now a symlink, a socket
		a.replaced(e.rel)
		return nil
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrSource, shortPath(e.rel), err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSource, shortPath(e.rel), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG { // swapped since the listing
		a.replaced(e.rel)
		return nil
	}
	if st.Nlink > 1 {
		id := idOf(&st)
		if first, ok := a.links[id]; ok {
			h := header(&st, e.rel, tar.TypeLink)
			h.Linkname = first
			a.st.HardLinks++
			return a.writeHeader(h)
		}
		a.links[id] = e.rel
	}
	h := header(&st, e.rel, tar.TypeReg)
	if err := a.writeHeader(h); err != nil {
		return err
	}
	a.st.Files++
	if a.after != nil {
		a.after(e.rel)
	}
	a.crc = 0
	if err := a.copyContent(fd, e.rel, h.Size); err != nil {
		return err
	}
	a.record(a.pending, a.hdrOff, a.crc)
	a.pending = nil
	return nil
}

// copyContent writes exactly size bytes of f: the header already promised
// them. Capture files change while they are read; a file that shrank is
// padded with zeros, one that grew is cut at size, and both are reported.
func (a *archiver) copyContent(fd int, rel string, size int64) error {
	var n int64
	for n < size {
		chunk := a.buf[:min(int64(len(a.buf)), size-n)]
		m, err := retryEINTR(func() (int, error) { return unix.Read(fd, chunk) })
		if m > 0 {
			if _, werr := a.tw.Write(chunk[:m]); werr != nil {
				return werr
			}
			if a.index != nil {
				a.crc = crc32.Update(a.crc, castagnoli, chunk[:m])
			}
			n += int64(m)
			a.st.Bytes += int64(m)
			if a.progress != nil {
				a.progress.Add(int64(m))
			}
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s: %w", ErrSource, shortPath(rel), err)
		}
		if m == 0 {
			break
		}
	}
	if n < size {
		clear(a.buf)
		for left := size - n; left > 0; {
			m := min(left, int64(len(a.buf)))
			if _, err := a.tw.Write(a.buf[:m]); err != nil {
				return err
			}
			a.crc = crc32.Update(a.crc, castagnoli, a.buf[:m])
			left -= m
		}
		a.st.Changed++
		a.log.Warn("file shrank while it was archived; padded with zeros to the size it had when its header was written",
			"path", rel, "header_size", size, "read", n)
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Size > size {
		a.st.Changed++
		a.log.Warn("file grew while it was archived; stored the size it had when its header was written",
			"path", rel, "stored", size, "size_now", st.Size)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header builds a PAX header by hand rather than with tar.FileInfoHeader,
// which looks user and group names up: numeric ids are what a restore
// into another pod can use.
func header(st *unix.Stat_t, name string, typ byte) *tar.Header {
	h := &tar.Header{
		Typeflag: typ,
		Name:     name,
		// Permissions, setuid, setgid and sticky: tar's mode bits are
		// the kernel's.
		Mode:    int64(st.Mode & 0o7777),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		Format:  tar.FormatPAX, // keeps nanosecond mtimes and long names
	}
	if typ == tar.TypeReg {
		h.Size = st.Size
	}
	return h
}

// EstimateSize is an upper estimate of the stream Write makes of a tree
// that Scan counted as s: the content, a header block and a PAX block
// per entry plus padding, and zstd's worst-case growth on incompressible
// data. Stores size their parts from it before the stream starts.
func EstimateSize(s Stats) int64 {
	tar := s.Bytes + (s.Entries()+s.Skipped)*1536 + 1024
	return tar + tar/64 + 1<<20
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
