package archive

import (
	"encoding/binary"
	"fmt"
)

// The seek table of the zstd seekable format (facebook/zstd,
// contrib/seekable_format/zstd_seekable_compression_format.md): a
// skippable frame at the very end of the object that lists the
// compressed and decompressed size of every frame before it, and the low
// 32 bits of each frame's XXH64, then a 9-byte footer. docs/format.md
// has the layout byte by byte.
const (
	seekTableMagic   = 0x184D2A5E // skippable frame magic of the seek table
	indexFrameMagic  = 0x184D2A5A // skippable frame magic of the entry index
	seekFooterMagic  = 0x8F92EAB1
	seekFooterSize   = 9
	seekEntrySize    = 12 // with checksums
	skippableHdrSize = 8
	seekChecksumFlag = 0x80
	seekReservedBits = 0x7C // must be zero

	// maxFrames bounds the frames one seek table may list: 12 bytes each
	// in memory, 12 MiB at the bound, and 4 TiB of 4 MiB frames.
	maxFrames = 1 << 20
)

type seekEntry struct {
	csize, dsize, sum uint32
}

// appendSeekTable appends the seek table skippable frame for frames.
func appendSeekTable(b []byte, frames []seekEntry) []byte {
	b = binary.LittleEndian.AppendUint32(b, seekTableMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frames)*seekEntrySize+seekFooterSize))
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, f.csize)
		b = binary.LittleEndian.AppendUint32(b, f.dsize)
		b = binary.LittleEndian.AppendUint32(b, f.sum)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frames)))
	b = append(b, seekChecksumFlag)
	return binary.LittleEndian.AppendUint32(b, seekFooterMagic)
}

// parseFooter reads the footer (the last 9 bytes of the object) and
// returns the number of frames and the whole table's size, skippable
// header included. ok is false when the object has no seek table at all
// (an object written before there was one).
func parseFooter(foot []byte) (frames int, tableSize int64, checksums, ok bool, err error) {
	if len(foot) != seekFooterSize || binary.LittleEndian.Uint32(foot[5:]) != seekFooterMagic {
		return 0, 0, false, false, nil
	}
	n := binary.LittleEndian.Uint32(foot[:4])
	desc := foot[4]
	if desc&seekReservedBits != 0 {
		return 0, 0, false, true, fmt.Errorf("%w: seek table footer has reserved bits set (%#x)", ErrCorrupt, desc)
	}
	if n > maxFrames {
		return 0, 0, false, true, fmt.Errorf("%w: seek table lists %d frames, more than the %d a snapshot may have", ErrCorrupt, n, maxFrames)
	}
	checksums = desc&seekChecksumFlag != 0
	es := int64(8)
	if checksums {
		es = seekEntrySize
	}
	return int(n), skippableHdrSize + int64(n)*es + seekFooterSize, checksums, true, nil
}

// parseSeekTable parses a whole seek table frame of n frames.
func parseSeekTable(b []byte, n int, checksums bool) ([]seekEntry, error) {
	es := 8
	if checksums {
		es = seekEntrySize
	}
	if len(b) != skippableHdrSize+n*es+seekFooterSize {
		return nil, fmt.Errorf("%w: seek table of %d bytes for %d frames", ErrCorrupt, len(b), n)
	}
	if binary.LittleEndian.Uint32(b) != seekTableMagic {
		return nil, fmt.Errorf("%w: seek table does not start with its skippable frame magic", ErrCorrupt)
	}
	if got := binary.LittleEndian.Uint32(b[4:]); int(got) != n*es+seekFooterSize {
		return nil, fmt.Errorf("%w: seek table frame claims %d bytes, its footer %d", ErrCorrupt, got, n*es+seekFooterSize)
	}
	frames := make([]seekEntry, n)
	p := b[skippableHdrSize:]
	for i := range frames {
		frames[i].csize = binary.LittleEndian.Uint32(p)
		frames[i].dsize = binary.LittleEndian.Uint32(p[4:])
		if checksums {
			frames[i].sum = binary.LittleEndian.Uint32(p[8:])
		}
		p = p[es:]
	}
	return frames, nil
}
