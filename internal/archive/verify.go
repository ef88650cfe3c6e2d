package archive

import (
	"archive/tar"
	"context"
	"fmt"
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
	// readArchive drains every body itself.
	st, info, err := readArchive(ctx, r, opts.Concurrency, log, lim, opts.Progress, func(*tar.Header, string, io.Reader) error { return nil })
	if err != nil {
		return st, err
	}
	if info.unchecked > 0 {
		return st, fmt.Errorf("%w: %d of its %d zstd frames carry no content checksum, so damage inside them would go unnoticed; the snapshot was written by another tool (snapshot-job writes a checksum into every frame)",
			ErrUnverifiable, info.unchecked, info.frames)
	}
	return st, nil
}
