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
	// index must list no other.
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
