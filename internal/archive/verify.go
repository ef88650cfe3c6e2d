package archive

import (
	"archive/tar"
	"context"
	"io"
	"log/slog"
)

// Verify reads the tar+zstd stream r to its end without writing anything:
// every frame checksum, every header, the end marker, and the same safety
// rules Extract applies. A stream that passes restores.
func Verify(ctx context.Context, r io.Reader, concurrency int, log *slog.Logger) (Stats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// readArchive drains every body itself.
	return readArchive(ctx, r, concurrency, log, func(*tar.Header, string, io.Reader) error { return nil })
}
