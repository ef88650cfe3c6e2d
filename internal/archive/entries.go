package archive

import (
	"archive/tar"
	"context"
	"hash/crc32"
	"io"
	"log/slog"
	"strings"
)

// StreamEntries reads a whole tar+zstd stream, with every check Verify
// makes, and hands each entry a restore would write to fn as the index
// would describe it (the offsets left zero): how the entries of a
// snapshot without an index are listed. fn must not keep the *Entry.
func StreamEntries(ctx context.Context, r io.Reader, opts VerifyOptions, fn func(*Entry) error) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var e Entry
	st, _, err := readArchive(ctx, r, opts.Concurrency, log, limits{}, opts.Progress, func(h *tar.Header, name string, body io.Reader) error {
		e = entryOf(h, name)
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
			e.Type = tar.TypeReg
			c := crc32.New(castagnoli)
			if _, err := io.Copy(c, body); err != nil {
				return err
			}
			e.CRC32C = c.Sum32()
		}
		return fn(&e)
	})
	return st, err
}

func entryOf(h *tar.Header, name string) Entry {
	return Entry{
		Name:    strings.TrimSuffix(name, "/"),
		Type:    h.Typeflag,
		Mode:    h.Mode & 0o7777,
		Size:    h.Size,
		ModTime: h.ModTime,
		Uid:     h.Uid,
		Gid:     h.Gid,
		Link:    h.Linkname,
	}
}
