package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
)

// maxWindow bounds the memory a hostile frame header can make the decoder
// allocate. Write uses windows of at most 8 MiB.
const maxWindow = 128 << 20

// entryFunc handles one validated entry. name is cleaned and relative;
// body reads the entry's content and its errors are already classified.
// It returns errNotSelected for an entry it leaves out on purpose, which
// the statistics then do not count.
type entryFunc func(h *tar.Header, name string, body io.Reader) error

// errNotSelected: the entry was validated but not restored.
var errNotSelected = errors.New("entry not selected")

// streamInfo is what the reader learnt about the zstd framing.
type streamInfo struct {
	frames    int64 // data frames
	unchecked int64 // data frames without a content checksum
}

// maxSkipWarnings is how many skipped entries are named one by one; the
// rest are counted in one last warning, so that a hostile archive of a
// million skipped names cannot flood the log.
const maxSkipWarnings = 20

// readArchive decodes a tar+zstd stream from r, validates every entry
// against the rules of an extraction (see validator) and calls fn for
// each entry to restore. It succeeds only when every zstd frame checksum
// matched and the tar end marker was read: a stream cut at an entry or
// frame boundary is corrupt, not short.
//
// Errors from r are returned as they are (they are the store's); all
// other decoding problems wrap ErrCorrupt or ErrUnsafe. progress, if set,
// is advanced by the content bytes read.
// entryOffsets is where the entry handed to an entryFunc lies in the tar
// stream: its first header block and its content.
type entryOffsets struct {
	header, data int64
	total        int64 // the stream's length, once it is read to the end
}

func readArchive(ctx context.Context, r io.Reader, concurrency int, log *slog.Logger, lim limits, progress *atomic.Int64, fn entryFunc) (Stats, streamInfo, error) {
	return readArchiveAt(ctx, r, concurrency, log, lim, progress, nil, fn)
}

// readArchiveAt is readArchive that also sets *at before each call of fn.
func readArchiveAt(ctx context.Context, r io.Reader, concurrency int, log *slog.Logger, lim limits, progress *atomic.Int64, at *entryOffsets, fn entryFunc) (Stats, streamInfo, error) {
	var info streamInfo
	src := &sourceReader{r: r}
	frames := newFrameInspector(src)
	zr, err := newFrameDecoder(frames, DecodeWorkers(concurrency))
	if err != nil {
		return Stats{}, info, err
	}
	defer zr.Close()
	st, err := readTar(ctx, zr, src.failure, log, lim, progress, at, fn)
	if err != nil {
		return st, info, err
	}
	if n, unchecked, ok := frames.counts(); ok {
		info = streamInfo{frames: n, unchecked: unchecked}
	}
	return st, info, nil
}

// readTar is readArchiveAt's loop over an already decoded tar stream r.
// srcErr reports a failure of the store below r, which is returned as it
// is rather than as corruption.
func readTar(ctx context.Context, r io.Reader, srcErr func() error, log *slog.Logger, lim limits, progress *atomic.Int64, at *entryOffsets, fn entryFunc) (Stats, error) {
	var st Stats
	pos := &countReader{r: r}
	end := &endReader{r: pos}
	tr := tar.NewReader(end)
	var prevSize int64 // of the entry before, whose padding Next reads first
	v := newValidator(lim)
	fail := func(err error) (Stats, error) {
		if serr := srcErr(); serr != nil {
			return st, serr
		}
		if cerr := ctx.Err(); cerr != nil {
			return st, context.Cause(ctx)
		}
		return st, err
	}
	skipped := 0
	skip := func(msg, name string, args ...any) {
		st.Skipped++
		if skipped++; skipped <= maxSkipWarnings {
			log.Warn(msg, append([]any{"path", shortName(name)}, args...)...)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return st, context.Cause(ctx)
		}
		end.mark()
		before := pos.n
		h, err := tr.Next()
		if err == io.EOF {
			if !end.sawEndMarker() {
				return fail(fmt.Errorf("%w: stream ends after %d entries without the tar end marker (truncated)", ErrCorrupt, st.Entries()))
			}
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			return fail(fmt.Errorf("%w: entry %s: %w", ErrUnsafe, quote(h.Name), err))
		}
		if err != nil {
			return fail(corrupt(err))
		}
		vd, err := v.check(h)
		if err != nil {
			return fail(err)
		}
		if at != nil {
			at.header, at.data = before+(512-prevSize%512)%512, pos.n
		}
		prevSize = h.Size
		body := &bodyReader{r: tr, progress: progress}
		switch vd.act {
		case actRestore:
			err := fn(h, vd.name, body)
			if err == errNotSelected {
				break
			}
			if err != nil {
				return fail(err)
			}
			switch h.Typeflag {
			case tar.TypeDir:
				st.Dirs++
			case tar.TypeSymlink:
				st.Symlinks++
			case tar.TypeLink:
				st.HardLinks++
			default:
				st.Files++
				st.Bytes += h.Size
			}
		case actSkipType:
			skip("skipped an entry of a type that is never restored", vd.name, "type", string(h.Typeflag))
			if err := skipHeaderOnlyBody(h, end); err != nil {
				return fail(err)
			}
		case actSkipName:
			skip("skipped an entry a restore never writes", vd.name, "reason", vd.reason)
		}
		// The entry's remaining bytes must be read now so that mark()
		// sees only padding and headers.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fail(err)
		}
	}
	// Whatever follows the end marker must be zero padding, and the rest
	// of the stream must still pass its frame checksums.
	if _, err := io.Copy(zeroWriter{}, pos); err != nil {
		return fail(corrupt(err))
	}
	if at != nil {
		at.total = pos.n
	}
	if serr := srcErr(); serr != nil {
		return st, serr
	}
	if skipped > maxSkipWarnings {
		log.Warn("skipped more entries than were named", "named", maxSkipWarnings, "skipped", skipped)
	}
	return st, nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// skipHeaderOnlyBody passes over the content of a device or FIFO entry
// whose header gives it a size. POSIX leaves such a size unspecified;
// GNU tar, listing an archive, passes over that many bytes, and so must
// we, or they would be read as the next header. archive/tar assumes such
// entries have no content and reads nothing, so the bytes are taken from
// the stream below it: it reads exactly the blocks it needs.
func skipHeaderOnlyBody(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil
	}
	if h.Size <= 0 {
		return nil
	}
	n := (h.Size + 511) &^ 511
	if m, err := io.CopyN(io.Discard, r, n); err != nil {
		if err == io.EOF {
			return corruptf("%s: content ends after %d of %d bytes", quote(h.Name), m, h.Size)
		}
		return corrupt(err)
	}
	return nil
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func corrupt(err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// sourceReader remembers failures of the underlying stream: those are
// transfer problems, not corruption, whatever the decoder makes of them.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// failure is safe to call once the decoder has stopped reading, which it
// has whenever it returned an error or EOF to us.
func (s *sourceReader) failure() error { return s.err }

// bodyReader classifies errors met while reading an entry's content, and
// counts it.
type bodyReader struct {
	r        io.Reader
	progress *atomic.Int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && b.progress != nil {
		b.progress.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		err = corrupt(err)
	}
	return n, err
}

// endReader lets readArchive tell a real end of archive (two zero blocks)
// from a stream that merely stops between entries, which archive/tar
// reports the same way.
type endReader struct {
	r       io.Reader
	since   int64 // bytes read since mark
	allZero bool  // every byte since mark was zero
}

func (e *endReader) mark() { e.since, e.allZero = 0, true }

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if n > 0 {
		e.since += int64(n)
		if e.allZero && !isZero(p[:n]) {
			e.allZero = false
		}
	}
	return n, err
}

// sawEndMarker: since the last entry's content, only zeros were read, and
// at least the two 512-byte blocks that end an archive.
func (e *endReader) sawEndMarker() bool { return e.allZero && e.since >= 1024 }

var zeros = make([]byte, 64<<10)

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

type zeroWriter struct{}

func (zeroWriter) Write(p []byte) (int, error) {
	if !isZero(p) {
		return 0, errors.New("data after the tar end marker")
	}
	return len(p), nil
}
