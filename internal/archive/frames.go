package archive

import (
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// frameWriter compresses its input as a sequence of independent zstd
// frames of a fixed size, up to `workers` at a time, and writes them to w
// in order. Frames concatenated are one valid zstd stream (RFC 8878), so
// `zstd -d` and any decoder read the result as usual, and every frame
// carries its own content checksum.
//
// klauspost's own parallel stream mode (WithConcurrentBlocks) holds jobs
// of four windows each plus their outputs and overlaps, 130 MiB and more
// on two cores; here memory is (workers + 2) × 2 frames, 32 MiB with
// 4 MiB frames on two cores, whatever the snapshot's size.
type frameWriter struct {
	w        io.Writer
	enc      *zstd.Encoder
	size     int
	cur      []byte
	inflight chan *frame   // in order; its capacity bounds the frames in flight
	free     chan []byte   // recycled input buffers
	freeOut  chan []byte   // recycled output buffers
	done     chan struct{} // closed when the writer goroutine ends

	mu  sync.Mutex
	err error
}

type frame struct {
	in, out []byte
	ready   chan struct{}
}

func newFrameWriter(w io.Writer, level zstd.EncoderLevel, frameSize, workers int) (*frameWriter, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(windowFor(frameSize)),
	)
	if err != nil {
		return nil, err
	}
	fw := &frameWriter{
		w:        w,
		enc:      enc,
		size:     frameSize,
		inflight: make(chan *frame, workers),
		free:     make(chan []byte, workers+2),
		freeOut:  make(chan []byte, workers+2),
		done:     make(chan struct{}),
	}
	fw.cur = fw.buffer()
	go fw.writeFrames()
	return fw, nil
}

// windowFor is the largest power of two not above the frame size: a
// frame never refers back past its own start, so a larger window would
// only cost memory.
func windowFor(frameSize int) int {
	w := zstd.MinWindowSize
	for w*2 <= frameSize && w*2 <= zstd.MaxWindowSize {
		w *= 2
	}
	return w
}

func (fw *frameWriter) buffer() []byte {
	select {
	case b := <-fw.free:
		return b[:0]
	default:
		return make([]byte, 0, fw.size)
	}
}

func (fw *frameWriter) failure() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.err
}

func (fw *frameWriter) fail(err error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.err == nil {
		fw.err = err
	}
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := fw.failure(); err != nil {
			return n, err
		}
		m := copy(fw.cur[len(fw.cur):fw.size], p)
		fw.cur = fw.cur[:len(fw.cur)+m]
		p = p[m:]
		n += m
		if len(fw.cur) == fw.size {
			fw.submit()
		}
	}
	return n, nil
}

// submit starts compressing the current frame. It blocks while `workers`
// frames are in flight, which is what bounds memory.
func (fw *frameWriter) submit() {
	f := &frame{in: fw.cur, ready: make(chan struct{})}
	fw.inflight <- f
	var out []byte
	select {
	case out = <-fw.freeOut:
	default:
		// Room for the worst case, so that EncodeAll never grows it:
		// a buffer that grows leaves its smaller copies as garbage.
		out = make([]byte, 0, fw.enc.MaxEncodedSize(fw.size))
	}
	go func() {
		f.out = fw.enc.EncodeAll(f.in, out[:0])
		close(f.ready)
	}()
	fw.cur = fw.buffer()
}

// writeFrames writes finished frames in order. After a write error it
// keeps draining, so that submit never blocks forever.
func (fw *frameWriter) writeFrames() {
	defer close(fw.done)
	for f := range fw.inflight {
		<-f.ready
		if fw.failure() == nil {
			if _, err := fw.w.Write(f.out); err != nil {
				fw.fail(err)
			}
		}
		select {
		case fw.free <- f.in:
		default:
		}
		select {
		case fw.freeOut <- f.out:
		default:
		}
	}
}

// Close compresses what is left, waits for every frame to be written and
// returns the first error.
func (fw *frameWriter) Close() error {
	if len(fw.cur) > 0 && fw.failure() == nil {
		fw.submit()
	}
	return fw.Abort()
}

// Abort drops what is not yet compressed and waits for the frames in
// flight; nobody wants the output any more.
func (fw *frameWriter) Abort() error {
	close(fw.inflight)
	<-fw.done
	return fw.failure()
}
