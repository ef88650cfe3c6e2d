package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Bounds of the parallel decoder.
const (
	// maxParallelFrame is the largest content a frame may declare to be
	// decoded in parallel: snapshot-job's frames hold 4 or 8 MiB. A frame
	// that declares more, or no size at all (zstd -, bsdtar), and
	// everything after it, goes through one streaming decoder as before,
	// whose memory is its window (maxWindow), whatever the frame claims.
	maxParallelFrame = 8 << 20
	// maxParallelCompressed bounds the bytes of such a frame: incompressible
	// data is stored in raw blocks of up to 128 KiB with a 3-byte header
	// each, so a frame of maxParallelFrame needs less. A longer frame is
	// streamed, as above.
	maxParallelCompressed = maxParallelFrame + maxParallelFrame/1024 + 64
	// MaxDecodeWorkers caps the frames decoded at once: past it restore
	// is bound by the disk, and each worker holds two frames.
	MaxDecodeWorkers = 8
)

// DecodeWorkers is the number of frames restore and verify decode at
// once with concurrency (0: GOMAXPROCS).
func DecodeWorkers(concurrency int) int {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	return min(max(concurrency, 1), MaxDecodeWorkers)
}

// DecodeMemory is what decoding holds with workers frames at once:
// workers + 2 frames in flight, each its compressed bytes and its
// content (16 MiB and a little for 8 MiB frames, counted as 17), whatever
// the stream holds: a frame that does not fit goes to the streaming
// decoder, whose window (up to 8 MiB as Write makes them) fits in the
// same room.
func DecodeMemory(workers int) int64 {
	return int64(workers+2) * 17 << 20
}

// frameDecoder decodes a zstd stream whose frames are independent, as
// snapshot-job writes them, on several cores: a splitter reads one frame
// at a time (following RFC 8878's layout, without decoding), workers
// decode frames with DecodeAll (which checks each frame's content
// checksum), and Read returns their contents in stream order. At most
// workers + 2 frames are in flight. Skippable frames (the seek table,
// the index) are passed over.
//
// A frame that does not fit the bounds above makes the rest of the
// stream go through a single streaming decoder, so any valid zstd stream
// decodes, in bounded memory, the way it did before.
type frameDecoder struct {
	order   chan *dframe // frames in stream order; its capacity bounds them
	work    chan *dframe
	done    chan struct{}
	closeMu sync.Once

	cur    *dframe
	buf    []byte // the rest of cur's content
	stream *zstd.Decoder
	err    error
	free   chan []byte // recycled content buffers
	freeIn chan []byte // recycled compressed buffers
}

type dframe struct {
	in    []byte
	out   []byte
	err   error // from reading the source or decoding
	ready chan struct{}
	tail  io.Reader // non-nil: stream the rest from here
}

func newFrameDecoder(r io.Reader, workers int) (*frameDecoder, error) {
	workers = max(workers, 1)
	d := &frameDecoder{
		order:  make(chan *dframe, workers+1),
		work:   make(chan *dframe, workers),
		done:   make(chan struct{}),
		free:   make(chan []byte, workers+2),
		freeIn: make(chan []byte, workers+2),
	}
	for range workers {
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxWindow),
			zstd.WithDecoderMaxMemory(maxParallelFrame),
		)
		if err != nil {
			return nil, err
		}
		go d.worker(dec)
	}
	go d.split(r)
	return d, nil
}

func (d *frameDecoder) worker(dec *zstd.Decoder) {
	defer dec.Close()
	for {
		select {
		case f := <-d.work:
			var dst []byte
			select {
			case dst = <-d.free:
			default:
			}
			f.out, f.err = dec.DecodeAll(f.in, dst[:0])
			if f.err == nil && int64(len(f.out)) != declaredSize(f.in) {
				f.err = fmt.Errorf("zstd frame declares %d bytes of content but holds %d", declaredSize(f.in), len(f.out))
			}
			select {
			case d.freeIn <- f.in[:0]:
			default:
			}
			f.in = nil
			close(f.ready)
		case <-d.done:
			return
		}
	}
}

// send queues f in order; false when the decoder was closed.
func (d *frameDecoder) send(f *dframe) bool {
	select {
	case d.order <- f:
		return true
	case <-d.done:
		return false
	}
}

// fail queues an error as the next frame.
func (d *frameDecoder) fail(err error) {
	f := &dframe{err: err, ready: make(chan struct{})}
	close(f.ready)
	d.send(f)
}

// split reads r frame by frame.
func (d *frameDecoder) split(r io.Reader) {
	defer close(d.order)
	var hdr [18]byte
	for {
		n, err := io.ReadFull(r, hdr[:4])
		if err == io.EOF {
			return
		}
		if err != nil {
			d.fail(truncated(err, n == 0))
			return
		}
		magic := binary.LittleEndian.Uint32(hdr[:4])
		if magic&skippableMagicMask == skippableMagic {
			if _, err := io.ReadFull(r, hdr[4:8]); err != nil {
				d.fail(truncated(err, false))
				return
			}
			size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
			if m, err := io.CopyN(io.Discard, r, size); err != nil {
				d.fail(truncated(err, m == 0 && size == 0))
				return
			}
			continue
		}
		if magic != zstdMagic {
			d.fail(errors.New("invalid input: not a zstd frame (magic number mismatch)"))
			return
		}
		if _, err := io.ReadFull(r, hdr[4:5]); err != nil {
			d.fail(truncated(err, false))
			return
		}
		hl := 5 + int(frameHeaderRest(hdr[4]))
		if _, err := io.ReadFull(r, hdr[5:hl]); err != nil {
			d.fail(truncated(err, false))
			return
		}
		if size := declaredSize(hdr[:hl]); size < 0 || size > maxParallelFrame {
			d.streamRest(hdr[:hl], r)
			return
		}
		var in []byte
		select {
		case in = <-d.freeIn:
		default:
			// Full size at once: growing would copy, and pages never
			// written take no memory.
			in = make([]byte, 0, maxParallelCompressed)
		}
		in = append(in, hdr[:hl]...)
		in, tooBig, err := readBlocks(r, in, hdr[4]&0x04 != 0)
		if err != nil {
			d.fail(err)
			return
		}
		if tooBig {
			d.streamRest(in, r)
			return
		}
		f := &dframe{in: in, ready: make(chan struct{})}
		if !d.send(f) {
			return
		}
		select {
		case d.work <- f:
		case <-d.done:
			return
		}
	}
}

// streamRest hands what was read of the current frame and the rest of r
// to one streaming decoder.
func (d *frameDecoder) streamRest(read []byte, r io.Reader) {
	f := &dframe{tail: io.MultiReader(bytes.NewReader(bytes.Clone(read)), r), ready: make(chan struct{})}
	close(f.ready)
	d.send(f)
}

// readBlocks appends a frame's blocks and checksum to in. tooBig: the
// frame passed maxParallelCompressed; in then holds what was read.
func readBlocks(r io.Reader, in []byte, checksum bool) (_ []byte, tooBig bool, _ error) {
	var bh [3]byte
	for {
		if _, err := io.ReadFull(r, bh[:]); err != nil {
			return in, false, truncated(err, false)
		}
		in = append(in, bh[:]...)
		h := uint32(bh[0]) | uint32(bh[1])<<8 | uint32(bh[2])<<16
		last, typ, size := h&1 != 0, h>>1&3, int(h>>3)
		switch typ {
		case 1: // RLE
			size = 1
		case 3:
			return in, false, errors.New("invalid input: reserved zstd block type")
		}
		if last && checksum {
			size += 4
		}
		if len(in)+size > maxParallelCompressed {
			return in, true, nil
		}
		n := len(in)
		in = append(in, make([]byte, size)...)
		if _, err := io.ReadFull(r, in[n:]); err != nil {
			return in, false, truncated(err, false)
		}
		if last {
			return in, false, nil
		}
	}
}

func truncated(err error, atBoundary bool) error {
	if atBoundary && err == io.EOF {
		return io.EOF
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("zstd stream truncated inside a frame")
	}
	return err // the source's own: a transfer problem
}

// frameHeaderRest is the number of frame header bytes after the frame
// header descriptor d (RFC 8878, 3.1.1.1): window descriptor, dictionary
// id, frame content size.
func frameHeaderRest(d byte) int64 {
	fcsFlag, single, dictFlag := d>>6, d&0x20 != 0, d&0x03
	var rest int64
	if !single {
		rest++
	}
	rest += [4]int64{0, 1, 2, 4}[dictFlag]
	switch fcsFlag {
	case 0:
		if single {
			rest++
		}
	case 1:
		rest += 2
	case 2:
		rest += 4
	case 3:
		rest += 8
	}
	return rest
}

// declaredSize is the frame content size of the frame header at the
// start of h, or -1 when the frame does not declare one.
func declaredSize(h []byte) int64 {
	d := h[4]
	fcsFlag, single, dictFlag := d>>6, d&0x20 != 0, d&0x03
	off := 5 + [4]int{0, 1, 2, 4}[dictFlag]
	if !single {
		off++
	}
	switch fcsFlag {
	case 0:
		if single {
			return int64(h[off])
		}
		return -1
	case 1:
		return int64(binary.LittleEndian.Uint16(h[off:])) + 256
	case 2:
		return int64(binary.LittleEndian.Uint32(h[off:]))
	}
	v := binary.LittleEndian.Uint64(h[off:])
	if v > 1<<62 {
		return -1 // beyond any cap: streamed, and bounded there
	}
	return int64(v)
}

func (d *frameDecoder) Read(p []byte) (int, error) {
	for {
		if d.err != nil {
			return 0, d.err
		}
		if d.stream != nil {
			n, err := d.stream.Read(p)
			if err != nil {
				d.err = err
			}
			return n, err
		}
		if len(d.buf) > 0 {
			n := copy(p, d.buf)
			d.buf = d.buf[n:]
			return n, nil
		}
		if d.cur != nil && d.cur.out != nil {
			select {
			case d.free <- d.cur.out:
			default:
			}
		}
		d.cur = nil
		f, ok := <-d.order
		if !ok {
			d.err = io.EOF
			continue
		}
		<-f.ready
		switch {
		case f.err != nil:
			d.err = f.err
		case f.tail != nil:
			dec, err := zstd.NewReader(f.tail, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow))
			if err != nil {
				d.err = err
				continue
			}
			d.stream = dec
		default:
			d.cur, d.buf = f, f.out
		}
	}
}

// Close stops the workers and the splitter (which ends once its source
// read returns: the caller closes the source).
func (d *frameDecoder) Close() error {
	d.closeMu.Do(func() {
		close(d.done)
		if d.stream != nil {
			d.stream.Close()
		}
	})
	return nil
}
