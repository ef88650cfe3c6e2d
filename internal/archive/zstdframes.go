package archive

import (
	"encoding/binary"
	"io"
	"sync/atomic"
)

// frameInspector passes a zstd stream through unchanged and follows its
// frame layout (RFC 8878, section 3.1) as the bytes go by, to count the
// data frames that carry no content checksum: damage inside such a frame
// decodes to wrong bytes without any error, so a stream made of them
// cannot be verified. Skippable frames (magic 0x184D2A50 to 0x184D2A5F,
// among them the seek table of the seekable format) are passed over.
//
// It only reads headers and lengths, so its cost is a few operations per
// 128 KiB block. It validates nothing: when the bytes stop following the
// layout it stops counting, and the decoder, which reads the same bytes,
// reports the damage. onFrame, when set, is told where each frame lay and
// what its header and checksum said, which verify holds the seek table to.
type frameInspector struct {
	r io.Reader

	state   inspectState
	hdr     [18]byte // the field being collected
	have    int
	want    int
	skip    int64 // bytes to pass over in stSkip
	after   inspectState
	checked bool // the current frame has a checksum

	pos     int64 // bytes scanned
	cur     seenFrame
	onFrame func(seenFrame)

	frames, unchecked atomic.Int64
	lost              atomic.Bool // the stream left the layout
}

// seenFrame is one frame as it went by.
type seenFrame struct {
	off, size int64 // where it starts, and all its bytes
	magic     uint32
	content   int64  // a data frame's declared content size; -1: none
	checksum  uint32 // a data frame's content checksum, when checked
	checked   bool
}

type inspectState uint8

const (
	stMagic       inspectState = iota // collecting a frame's 4-byte magic
	stDescriptor                      // the frame header descriptor
	stHeaderRest                      // the rest of the frame header
	stChecksum                        // a data frame's 4-byte checksum
	stSkippable                       // a skippable frame's 4-byte size
	stBlockHeader                     // a block's 3-byte header
	stSkip                            // passing over skip bytes, then after
	stLost
)

const (
	zstdMagic          = 0xFD2FB528
	skippableMagicMask = 0xFFFFFFF0
	skippableMagic     = 0x184D2A50
)

func newFrameInspector(r io.Reader) *frameInspector {
	return &frameInspector{r: r, state: stMagic, want: 4}
}

func (f *frameInspector) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.state != stLost {
		f.scan(p[:n])
	}
	return n, err
}

// counts returns the data frames seen and those without a checksum. Safe
// once the decoder has read the stream to its end.
func (f *frameInspector) counts() (frames, unchecked int64, complete bool) {
	return f.frames.Load(), f.unchecked.Load(), !f.lost.Load()
}

func (f *frameInspector) scan(p []byte) {
	for len(p) > 0 {
		if f.state == stSkip {
			n := int64(len(p))
			if n > f.skip {
				n = f.skip
			}
			f.skip -= n
			f.pos += n
			p = p[n:]
			if f.skip == 0 {
				f.enter(f.after)
			}
			continue
		}
		n := copy(f.hdr[f.have:f.want], p)
		f.have += n
		f.pos += int64(n)
		p = p[n:]
		if f.have == f.want {
			f.field()
			if f.state == stLost {
				f.lost.Store(true)
				return
			}
		}
	}
}

// enter starts collecting the field of state s.
func (f *frameInspector) enter(s inspectState) {
	f.state, f.have = s, 0
	switch s {
	case stMagic:
		// Every frame ends here, so this is where it is complete.
		if f.onFrame != nil {
			f.cur.size = f.pos - f.cur.off
			f.onFrame(f.cur)
		}
		f.want = 4
	case stSkippable, stChecksum:
		f.want = 4
	case stDescriptor:
		f.want = 1
	case stBlockHeader:
		f.want = 3
	}
}

// skipThen passes over n bytes, then enters s.
func (f *frameInspector) skipThen(n int64, s inspectState) {
	if n == 0 {
		f.enter(s)
		return
	}
	f.state, f.skip, f.after = stSkip, n, s
}

// field handles a complete field.
func (f *frameInspector) field() {
	switch f.state {
	case stMagic:
		m := binary.LittleEndian.Uint32(f.hdr[:4])
		f.cur = seenFrame{off: f.pos - 4, magic: m, content: -1}
		switch {
		case m == zstdMagic:
			f.enter(stDescriptor)
		case m&skippableMagicMask == skippableMagic:
			f.enter(stSkippable)
		default:
			f.state = stLost
		}
	case stSkippable:
		f.skipThen(int64(binary.LittleEndian.Uint32(f.hdr[:4])), stMagic)
	case stDescriptor:
		d := f.hdr[0]
		checksum := d&0x04 != 0
		f.frames.Add(1)
		if !checksum {
			f.unchecked.Add(1)
		}
		f.checked, f.cur.checked = checksum, checksum
		// The header is collected whole, after the magic as declaredSize
		// reads it: at most 13 bytes follow the descriptor.
		f.hdr[4] = d
		f.state, f.have, f.want = stHeaderRest, 5, 5+int(frameHeaderRest(d))
	case stHeaderRest:
		f.cur.content = declaredSize(f.hdr[:f.want])
		f.enter(stBlockHeader)
	case stChecksum:
		f.cur.checksum = binary.LittleEndian.Uint32(f.hdr[:4])
		f.enter(stMagic)
	case stBlockHeader:
		h := uint32(f.hdr[0]) | uint32(f.hdr[1])<<8 | uint32(f.hdr[2])<<16
		last, typ, size := h&1 != 0, h>>1&3, int64(h>>3)
		var body int64
		switch typ {
		case 0, 2: // raw, compressed
			body = size
		case 1: // RLE: one byte repeated size times
			body = 1
		default:
			f.state = stLost
			return
		}
		next := stBlockHeader
		if last {
			next = stMagic
			if f.checked {
				f.skipThen(body, stChecksum)
				return
			}
		}
		f.skipThen(body, next)
	}
}
