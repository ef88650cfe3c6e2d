package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sync/atomic"
)

// ErrUnverifiable: the stream decoded and every rule held, but some of
// its zstd frames carry no content checksum, so damage inside them would
// have gone unnoticed. It counts as ErrCorrupt (exit 7): verify promises
// more than it could check.
var ErrUnverifiable error = unverifiable{}

type unverifiable struct{}

func (unverifiable) Error() string        { return "archive cannot be verified" }
func (unverifiable) Is(target error) bool { return target == ErrCorrupt }

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Concurrency is the number of decompression goroutines; 0 means
	// GOMAXPROCS.
	Concurrency int
	// Logger receives warnings about entries a restore would skip.
	Logger *slog.Logger
	// Progress, if set, is advanced by the content bytes checked.
	Progress *atomic.Int64
	// Index, if set, is the snapshot's index (OpenIndex): every entry of
	// the stream must be the index's next one, with the same name, type,
	// mode, size, time, owner, link, offsets and content CRC-32C, and the
	// index must list no other; every frame of the stream must be the
	// seek table's entry at its position, with the same compressed size,
	// decompressed size and checksum, and the index frame must be where
	// the table puts it.
	Index *Index
}

// Verify reads the tar+zstd stream r to its end without writing anything:
// every frame checksum, every header, the end marker, and the same rules
// Extract applies, with the same messages. A stream that passes restores
// (unless the target itself cannot take it). A stream in which a frame
// has no checksum fails with ErrUnverifiable after everything else was
// checked.
func Verify(ctx context.Context, r io.Reader, opts VerifyOptions) (Stats, error) {
	return verify(ctx, r, opts, limits{})
}

func verify(ctx context.Context, r io.Reader, opts VerifyOptions, lim limits) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st Stats
	var info streamInfo
	var err error
	if opts.Index != nil {
		st, info, err = verifyIndexed(ctx, r, opts, lim, log)
	} else {
		// readArchive drains every body itself.
		st, info, err = readArchive(ctx, r, opts.Concurrency, log, lim, opts.Progress, func(*tar.Header, string, io.Reader) error { return nil })
	}
	if err != nil {
		return st, err
	}
	if info.unchecked > 0 {
		return st, fmt.Errorf("%w: %d of its %d zstd frames carry no content checksum, so damage inside them would go unnoticed; the snapshot was written by another tool (snapshot-job writes a checksum into every frame)",
			ErrUnverifiable, info.unchecked, info.frames)
	}
	return st, nil
}

// verifyIndexed reads the stream and the index side by side: the index
// streams from its own ranged read through a small channel, so neither
// is held whole.
func verifyIndexed(ctx context.Context, r io.Reader, opts VerifyOptions, lim limits, log *slog.Logger) (Stats, streamInfo, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan Entry, 256)
	errc := make(chan error, 1)
	go func() {
		_, err := opts.Index.Entries(ctx, func(e *Entry) error {
			select {
			case ch <- *e:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		close(ch)
		errc <- err
	}()
	var indexErr error
	indexDone := false
	next := func() (Entry, bool) {
		e, ok := <-ch
		if !ok && !indexDone {
			indexDone, indexErr = true, <-errc
		}
		return e, ok
	}
	var at entryOffsets
	crc := crc32.New(castagnoli)
	r = newSeekCheck(r, opts.Index)
	st, info, err := readArchiveAt(ctx, r, opts.Concurrency, log, lim, opts.Progress, &at, func(h *tar.Header, name string, body io.Reader) error {
		want, ok := next()
		if !ok {
			if indexErr != nil {
				return indexErr
			}
			return corruptIndex("the tar stream holds %s, which the index does not list", quote(name))
		}
		got := entryOf(h, name)
		got.HeaderOffset, got.DataOffset = at.header, at.data
		if got.Type == tar.TypeRegA {
			got.Type = tar.TypeReg
		}
		if got.Type == tar.TypeReg {
			crc.Reset()
			if _, err := io.Copy(crc, body); err != nil {
				return err
			}
			got.CRC32C = crc.Sum32()
		}
		if d := entryDiff(&want, &got); d != "" {
			return corruptIndex("entry %s: %s", quote(name), d)
		}
		return nil
	})
	if err != nil {
		return st, info, err
	}
	if e, ok := next(); ok {
		return st, info, corruptIndex("the index lists %s, which the tar stream does not hold", quote(e.Name))
	}
	if indexErr != nil {
		return st, info, indexErr
	}
	if at.total != opts.Index.TarSize() {
		return st, info, corruptIndex("the seek table describes %d bytes of tar stream, the stream holds %d", opts.Index.TarSize(), at.total)
	}
	return st, info, nil
}

// entryDiff names the first field in which the index's entry differs from
// the stream's, or returns "".
func entryDiff(idx, tr *Entry) string {
	f := func(what string, a, b any) string {
		return fmt.Sprintf("the index says %s %v, the tar stream %v", what, a, b)
	}
	switch {
	case idx.Name != tr.Name:
		return f("name", quote(idx.Name), quote(tr.Name))
	case idx.Type != tr.Type:
		return f("type", idx.TypeName(), tr.TypeName())
	case idx.Size != tr.Size:
		return f("size", idx.Size, tr.Size)
	case idx.Mode != tr.Mode:
		return f("mode", fmt.Sprintf("%04o", idx.Mode), fmt.Sprintf("%04o", tr.Mode))
	case !idx.ModTime.Equal(tr.ModTime):
		return f("mtime", idx.ModTime.UTC(), tr.ModTime.UTC())
	case idx.Uid != tr.Uid || idx.Gid != tr.Gid:
		return f("owner", fmt.Sprintf("%d:%d", idx.Uid, idx.Gid), fmt.Sprintf("%d:%d", tr.Uid, tr.Gid))
	case idx.Link != tr.Link:
		return f("link", quote(idx.Link), quote(tr.Link))
	case idx.HeaderOffset != tr.HeaderOffset || idx.DataOffset != tr.DataOffset:
		return f("offsets", fmt.Sprintf("%d/%d", idx.HeaderOffset, idx.DataOffset), fmt.Sprintf("%d/%d", tr.HeaderOffset, tr.DataOffset))
	case idx.CRC32C != tr.CRC32C:
		return f("CRC-32C", fmt.Sprintf("%08x", idx.CRC32C), fmt.Sprintf("%08x", tr.CRC32C))
	}
	return ""
}

// seekCheck holds the frames of the stream to the seek table as they go
// by, beside the decoder, which reads through it: every data frame's
// compressed size, declared content size (which the decoder holds the
// content to) and content checksum (the low 32 bits of the XXH64 the
// decoder checks, as the table's) must be the table's entry at its
// position, and the index frame must follow the last of them where the
// table puts it, then the table itself. The first difference ends the
// read as the source's error, so it is what Verify returns.
type seekCheck struct {
	fi    *frameInspector
	ix    *Index
	n     int  // data frames seen
	index bool // the index frame was seen
	table bool // the seek table frame was seen
	err   error
}

func newSeekCheck(r io.Reader, ix *Index) *seekCheck {
	c := &seekCheck{fi: newFrameInspector(r), ix: ix}
	c.fi.onFrame = c.frame
	return c
}

func (c *seekCheck) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.fi.Read(p)
	if err == io.EOF && c.err == nil {
		c.err = c.atEnd()
	}
	if c.err != nil {
		return n, c.err
	}
	return n, err
}

func (c *seekCheck) frame(f seenFrame) {
	if c.err != nil {
		return
	}
	frames := c.ix.frames
	switch {
	case c.table:
		c.err = corruptf("seek table: the stream goes on after it (a frame at byte %d)", f.off)
	case f.magic == zstdMagic && (c.index || c.n >= len(frames)):
		c.err = corruptf("seek table: frame %d: the stream holds a data frame the table does not list (it lists %d)", c.n, len(frames))
	case f.magic == zstdMagic:
		c.err = frameDiff(c.n, frames[c.n], f)
		c.n++
	case f.magic == indexFrameMagic && !c.index:
		c.index = true
		switch {
		case c.n != len(frames):
			c.err = corruptf("seek table: frame %d: the stream holds the index frame, the table data frame %d (it lists %d)", c.n, c.n, len(frames))
		case f.off != c.ix.indexOff || f.size != c.ix.indexSize:
			c.err = corruptf("seek table: frame %d (the index): the table says %d bytes at byte %d, the stream %d bytes at byte %d",
				c.n, c.ix.indexSize, c.ix.indexOff, f.size, f.off)
		}
	case f.magic == seekTableMagic && c.index:
		c.table = true
	default:
		c.err = corruptf("seek table: frame %d: the stream holds a skippable frame (magic %#x) the table does not list", c.n, f.magic)
	}
}

// atEnd checks, once the stream ended, that no frame the table lists was
// missing. A stream that left the frame layout is the decoder's to report.
func (c *seekCheck) atEnd() error {
	if _, _, ok := c.fi.counts(); !ok {
		return nil
	}
	switch {
	case c.n != len(c.ix.frames):
		return corruptf("seek table: frame %d: the stream ends, the table lists %d data frames", c.n, len(c.ix.frames))
	case !c.index || !c.table:
		return corruptf("seek table: frame %d: the stream ends without the index frame or the seek table", c.n)
	}
	return nil
}

// frameDiff names the first field in which the seek table's entry for
// data frame i differs from the frame, or returns nil. A frame without a
// checksum has nothing to compare it to; Verify fails it as unverifiable.
func frameDiff(i int, want seekEntry, got seenFrame) error {
	f := func(what string, a, b any) error {
		return corruptf("seek table: frame %d: the table says %s %v, the stream %v", i, what, a, b)
	}
	switch {
	case int64(want.csize) != got.size:
		return f("compressed size", want.csize, got.size)
	case got.content < 0:
		return f("decompressed size", want.dsize, "none (the frame declares no content size)")
	case int64(want.dsize) != got.content:
		return f("decompressed size", want.dsize, got.content)
	case got.checked && want.sum != got.checksum:
		return f("checksum", fmt.Sprintf("%08x", want.sum), fmt.Sprintf("%08x", got.checksum))
	}
	return nil
}
