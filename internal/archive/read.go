package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// maxWindow bounds the memory a hostile frame header can make the decoder
// allocate. Write uses windows of at most 8 MiB.
const maxWindow = 128 << 20

// entryFunc handles one validated entry. name is cleaned and relative;
// body reads the entry's content and its errors are already classified.
type entryFunc func(h *tar.Header, name string, body io.Reader) error

// readArchive decodes a tar+zstd stream from r, validates every entry
// against the rules of an extraction (no absolute names, no "..", nothing
// through a link, hard links only to earlier files) and calls fn for each.
// It succeeds only when every zstd frame checksum matched and the tar end
// marker was read: a stream cut at an entry or frame boundary is corrupt,
// not short.
//
// Errors from r are returned as they are (they are the store's); all
// other decoding problems wrap ErrCorrupt or ErrUnsafe.
func readArchive(ctx context.Context, r io.Reader, concurrency int, log *slog.Logger, fn entryFunc) (Stats, error) {
	var st Stats
	src := &sourceReader{r: r}
	zr, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(concurrency),
		zstd.WithDecoderMaxWindow(maxWindow),
	)
	if err != nil {
		return st, err
	}
	defer zr.Close()
	end := &endReader{r: zr}
	tr := tar.NewReader(end)
	v := newValidator()
	fail := func(err error) (Stats, error) {
		if serr := src.failure(); serr != nil {
			return st, serr
		}
		if cerr := ctx.Err(); cerr != nil {
			return st, context.Cause(ctx)
		}
		return st, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return st, context.Cause(ctx)
		}
		end.mark()
		h, err := tr.Next()
		if err == io.EOF {
			if !end.sawEndMarker() {
				return fail(fmt.Errorf("%w: stream ends after %d entries without the tar end marker (truncated)", ErrCorrupt, st.Entries()))
			}
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			return fail(fmt.Errorf("%w: entry %q: %w", ErrUnsafe, h.Name, err))
		}
		if err != nil {
			return fail(corrupt(err))
		}
		name, err := v.check(h)
		if err != nil {
			return fail(err)
		}
		if name == "" {
			continue // the root itself, a global header, a skipped type
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse:
			st.Files++
			st.Bytes += h.Size
		case tar.TypeDir:
			st.Dirs++
		case tar.TypeSymlink:
			st.Symlinks++
		case tar.TypeLink:
			st.HardLinks++
		default:
			st.Skipped++
			log.Warn("skipped an entry of a type that is never restored", "path", name, "type", string(h.Typeflag))
			continue
		}
		body := &bodyReader{r: tr}
		if err := fn(h, name, body); err != nil {
			return fail(err)
		}
		// The entry's remaining bytes must be read now so that mark()
		// sees only padding and headers.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fail(err)
		}
	}
	// Whatever follows the end marker must be zero padding, and the rest
	// of the stream must still pass its frame checksums.
	if _, err := io.Copy(zeroWriter{}, zr); err != nil {
		return fail(corrupt(err))
	}
	if serr := src.failure(); serr != nil {
		return st, serr
	}
	return st, nil
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

// bodyReader classifies errors met while reading an entry's content.
type bodyReader struct{ r io.Reader }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
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

// kind records what an accepted name is, to judge later entries.
type kind uint8

const (
	kindImplicitDir kind = iota + 1 // a parent no entry named yet
	kindDir
	kindFile
	kindSymlink
)

// validator applies the extraction safety rules. It keeps one small map
// entry per name: the only state that grows with the archive.
type validator struct {
	seen map[string]kind
}

func newValidator() *validator { return &validator{seen: make(map[string]kind)} }

// cleanName returns name relative and cleaned, "" for the root, or an
// ErrUnsafe error.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty entry name", ErrUnsafe)
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: entry name %q contains NUL", ErrUnsafe, name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: absolute entry name %q", ErrUnsafe, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: entry name %q leaves the target", ErrUnsafe, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// check validates h and returns its cleaned name, or "" when the entry
// is to be passed over (the root directory, PAX global headers).
func (v *validator) check(h *tar.Header) (string, error) {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return "", nil
	}
	name, err := cleanName(h.Name)
	if err != nil || name == "" {
		return "", err
	}
	// Every parent must be a directory; one that is a symlink or a file
	// would make the entry land somewhere else.
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		switch v.seen[dir] {
		case 0:
			v.seen[dir] = kindImplicitDir
		case kindSymlink:
			return "", fmt.Errorf("%w: entry %q would be written through the symlink %q", ErrUnsafe, name, dir)
		case kindFile:
			return "", fmt.Errorf("%w: entry %q would be written below the file %q", ErrUnsafe, name, dir)
		}
	}
	var k kind
	switch h.Typeflag {
	case tar.TypeDir:
		k = kindDir
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return "", fmt.Errorf("%w: symlink %q has no target", ErrCorrupt, name)
		}
		k = kindSymlink
	case tar.TypeLink:
		target, err := cleanName(h.Linkname)
		if err != nil {
			return "", fmt.Errorf("%w: hard link %q points outside the target: %w", ErrUnsafe, name, err)
		}
		if v.seen[target] != kindFile {
			return "", fmt.Errorf("%w: hard link %q points to %q, which is not a file earlier in the archive", ErrUnsafe, name, h.Linkname)
		}
		k = kindFile
	case tar.TypeReg, tar.TypeGNUSparse:
		if h.Size < 0 {
			return "", fmt.Errorf("%w: entry %q has a negative size", ErrCorrupt, name)
		}
		k = kindFile
	default:
		return name, nil // reported and skipped by the caller
	}
	switch prev := v.seen[name]; {
	case prev == 0:
	case prev == kindImplicitDir && k == kindDir:
	default:
		return "", fmt.Errorf("%w: entry %q appears twice", ErrUnsafe, name)
	}
	v.seen[name] = k
	return name, nil
}
