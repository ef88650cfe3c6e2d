package archive

import (
	"io"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
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

	// table records every frame written, for the seek table; only the
	// writer goroutine appends to it until done is closed.
	table []seekEntry

	// afterLarge: the entry being written fills frames of its own, so
	// the next one starts a new frame.
	afterLarge bool
	folderCuts int

	mu  sync.Mutex
	err error
}

type frame struct {
	in, out []byte
	sum     uint32 // low 32 bits of the XXH64 of in
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

// boundary is called before an entry of next bytes (headers, content and
// padding) is written. When the entry would straddle the end of the
// current frame but fits in a frame of its own, the frame is cut here, so
// that a small file is always whole in one frame. An entry larger than a
// frame gets frames of its own: one is cut before it and one after it.
// A folder (folder: a directory entry near the top of the tree) starts a
// frame too, up to maxFolderCuts times, so that a tree of a million tiny
// folders still gets full frames. Together they let a partial restore of
// a folder fetch nothing of its neighbours; the short frames cost nothing
// measurable in ratio (docs/performance.md).
func (fw *frameWriter) boundary(next int64, folder bool) {
	large := next > int64(fw.size)
	cut := fw.afterLarge || large || int64(len(fw.cur))+next > int64(fw.size)
	if folder && !cut && fw.folderCuts < maxFolderCuts {
		fw.folderCuts++
		cut = true
	}
	fw.afterLarge = large
	if len(fw.cur) > 0 && cut && fw.failure() == nil {
		fw.submit()
	}
}

// maxFolderCuts bounds the frames cut at folders.
const maxFolderCuts = 4096

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
		f.sum = uint32(xxhash.Sum64(f.in))
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
			fw.table = append(fw.table, seekEntry{csize: uint32(len(f.out)), dsize: uint32(len(f.in)), sum: f.sum})
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

// Finish is Close followed by the index frame (an encoded skippable
// frame, or nil for none) and the seek table that lists every frame
// written, the index frame included.
func (fw *frameWriter) Finish(index []byte) error {
	if err := fw.Close(); err != nil {
		return err
	}
	if index != nil {
		if _, err := fw.w.Write(index); err != nil {
			return err
		}
		fw.table = append(fw.table, seekEntry{csize: uint32(len(index)), dsize: 0, sum: uint32(xxhash.Sum64(nil))})
	}
	_, err := fw.w.Write(appendSeekTable(nil, fw.table))
	return err
}

// Abort drops what is not yet compressed and waits for the frames in
// flight; nobody wants the output any more.
func (fw *frameWriter) Abort() error {
	close(fw.inflight)
	<-fw.done
	return fw.failure()
}
