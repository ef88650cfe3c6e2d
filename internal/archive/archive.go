// Package archive turns a directory tree into a tar stream compressed with
// zstd and back.
//
// Write walks a tree in sorted order and streams it; Verify reads a stream
// end to end without touching the disk; Extract restores one into a staging
// directory inside the target and, only once the whole stream has checked
// out, commits it into place all or nothing (Recover finishes or undoes a
// commit a killed run left). Memory use does not depend on the snapshot's
// size nor on what a hostile archive holds: see limits.go.
package archive

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Error kinds, each mapped to one exit code by the command.
var (
	// ErrSource: the tree to archive is missing or unreadable (exit 4).
	ErrSource = errors.New("source unreadable")
	// ErrTarget: the restore target cannot be written (exit 4).
	ErrTarget = errors.New("restore target not writable")
	// ErrCorrupt: the stream fails a checksum, is truncated or is not
	// tar+zstd (exit 7).
	ErrCorrupt = errors.New("archive corrupt")
	// ErrUnsafe: the archive would write outside the target or through a
	// link (exit 7).
	ErrUnsafe = errors.New("archive unsafe")
	// ErrNoMatch: a restore limited to some paths found no entry that
	// matches them (exit 8, nothing to restore); nothing was written.
	ErrNoMatch = errors.New("no entry of the snapshot matches SNAPSHOT_RESTORE_PATHS")
)

// Levels are the accepted compression level names.
var Levels = map[string]zstd.EncoderLevel{
	"fastest": zstd.SpeedFastest,
	"default": zstd.SpeedDefault,
	"better":  zstd.SpeedBetterCompression,
	"best":    zstd.SpeedBestCompression,
}

func encoderLevel(name string) (zstd.EncoderLevel, error) {
	if name == "" {
		return zstd.SpeedFastest, nil
	}
	l, ok := Levels[name]
	if !ok {
		return 0, fmt.Errorf("unknown compression level %q", name)
	}
	return l, nil
}

// Stats counts what a Write, Verify or Extract saw.
type Stats struct {
	Files     int64 // regular files
	Dirs      int64
	Symlinks  int64
	HardLinks int64
	Skipped   int64 // sockets, FIFOs, devices, vanished files
	Excluded  int64 // left out on purpose: excluded directories, reserved names
	Changed   int64 // files whose size changed while they were read
	Bytes     int64 // content bytes of regular files
}

// Entries is the number of entries stored.
func (s Stats) Entries() int64 { return s.Files + s.Dirs + s.Symlinks + s.HardLinks }
