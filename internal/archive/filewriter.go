package archive

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// fileWriter writes file contents on its own goroutine, so that
// decompressing and parsing the next bytes overlaps with the write system
// calls of the previous ones: restore is otherwise a chain in which each
// step waits for the one before.
//
// Chunks of one file arrive in order, followed by a finish function
// (set length, owner, mode, close, times). The first error stops all
// further writing; every file is still closed.
type fileWriter struct {
	ops      chan writeOp
	free     chan []byte
	done     chan struct{}
	progress *atomic.Int64 // content bytes written; nil: not counted

	mu  sync.Mutex
	err error
}

type writeOp struct {
	f      *os.File
	name   string
	chunk  []byte       // content at the file's current offset
	finish func() error // after the last chunk; closes f
}

// chunkSize and chunks bound the memory in flight: 4 MiB.
const (
	chunkSize = 1 << 20
	chunks    = 4
)

func newFileWriter(progress *atomic.Int64) *fileWriter {
	w := &fileWriter{
		ops:      make(chan writeOp, chunks),
		free:     make(chan []byte, chunks),
		done:     make(chan struct{}),
		progress: progress,
	}
	for range chunks {
		w.free <- make([]byte, chunkSize)
	}
	go w.run()
	return w
}

func (w *fileWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *fileWriter) run() {
	defer close(w.done)
	for op := range w.ops {
		failed := w.failure() != nil
		var err error
		switch {
		case op.chunk != nil:
			if !failed {
				err = writeChunk(op.f, op.name, op.chunk)
				if err == nil && w.progress != nil {
					w.progress.Add(int64(len(op.chunk)))
				}
			}
			w.free <- op.chunk[:cap(op.chunk)]
		case failed:
			op.f.Close()
		default:
			err = op.finish()
		}
		if err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}
}

// copyFile hands size bytes of body to the writer goroutine for f, then
// finish. It returns the writer's first error as soon as it is known.
func (w *fileWriter) copyFile(f *os.File, name string, body io.Reader, size int64, finish func() error) error {
	var read int64
	for read < size {
		if err := w.failure(); err != nil {
			w.ops <- writeOp{f: f, name: name, finish: finish} // closes f
			return err
		}
		buf := <-w.free
		n, err := io.ReadFull(body, buf[:min(int64(len(buf)), size-read)])
		if n > 0 {
			w.ops <- writeOp{f: f, name: name, chunk: buf[:n]}
		} else {
			w.free <- buf
		}
		read += int64(n)
		if err != nil && read < size {
			w.ops <- writeOp{f: f, name: name, finish: func() error { return f.Close() }}
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return corruptf("%s: content ends after %d of %d bytes", name, read, size)
			}
			return err // already classified by bodyReader
		}
	}
	w.ops <- writeOp{f: f, name: name, finish: finish}
	return nil
}

// wait lets every queued write finish and returns the first error.
func (w *fileWriter) wait() error {
	close(w.ops)
	<-w.done
	return w.failure()
}

// writeChunk writes chunk at f's offset, seeking over runs of zeros
// instead of writing them, so that sparse files stay sparse and
// zero-filled captures do not fill the volume. The file's length is set
// at the end (finish), which makes a trailing hole real.
func writeChunk(f *os.File, name string, chunk []byte) error {
	const block = 64 << 10
	for len(chunk) > 0 {
		m := min(len(chunk), block)
		if isZero(chunk[:m]) {
			if _, err := f.Seek(int64(m), io.SeekCurrent); err != nil {
				return targetErr(name, err)
			}
		} else {
			// Write runs of non-zero blocks in one call.
			for m < len(chunk) && !isZero(chunk[m:min(len(chunk), m+block)]) {
				m = min(len(chunk), m+block)
			}
			if _, err := f.Write(chunk[:m]); err != nil {
				return targetErr(name, err)
			}
		}
		chunk = chunk[m:]
	}
	return nil
}
