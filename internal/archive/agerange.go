package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
)

// age's payload: 64 KiB chunks of plaintext, each sealed with a 16-byte
// tag (age-encryption.org/v1, "Payload").
const (
	ageChunk    = 64 << 10
	ageChunkEnc = ageChunk + 16
)

// DecryptRanger serves ranges of the plaintext of the age file of size
// bytes that r serves, as Ranger: the tar+zstd stream of an encrypted
// snapshot, for OpenIndex and ExtractIndexed. It returns the plaintext's
// size. Each range is fetched with one ranged read of the chunks that
// hold it, streamed, and authenticated chunk by chunk as it is read:
// age's random access (DecryptReaderAt) would otherwise read each 64 KiB
// chunk with a request of its own. Errors are classified as DecryptAt's.
func DecryptRanger(ctx context.Context, r Ranger, size int64, ids Identities) (Ranger, int64, error) {
	src := &chunkSource{ctx: ctx, r: r}
	plain, n, err := DecryptAt(src, size, ids)
	if err != nil {
		return nil, 0, err
	}
	chunks := max((n+ageChunk-1)/ageChunk, 1)
	return &ageRanger{src: src, plain: plain, size: n, payload: size - (n + chunks*16)}, n, nil
}

type ageRanger struct {
	src     *chunkSource
	plain   io.ReaderAt
	size    int64 // of the plaintext
	payload int64 // where the first chunk starts in the age file
}

func (a *ageRanger) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	off = min(max(off, 0), a.size)
	n = min(n, a.size-off)
	if n <= 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	first, last := off/ageChunk, (off+n-1)/ageChunk
	cOff := a.payload + first*ageChunkEnc
	cEnd := a.payload + (last+1)*ageChunkEnc // the last chunk may be shorter: clipped by the store
	body, err := a.src.r.ReadRange(ctx, cOff, cEnd-cOff)
	if err != nil {
		return nil, err
	}
	w := a.src.open(cOff, body)
	return &plainRange{r: io.NewSectionReader(a.plain, off, n), w: w, src: a.src}, nil
}

// plainRange reads one range's plaintext through age, which reads its
// chunks from the range's window.
type plainRange struct {
	r   io.Reader
	w   *window
	src *chunkSource
}

func (p *plainRange) Read(b []byte) (int, error) {
	// Whole chunks at a time, so that age asks for each chunk once.
	if len(b) > ageChunk {
		b = b[:len(b)/ageChunk*ageChunk]
	}
	return p.r.Read(b)
}

func (p *plainRange) Close() error {
	p.src.close(p.w)
	return p.w.body.Close()
}

// chunkSource is the ReaderAt age decrypts from: a read at the position
// an open range's body has reached (or a little after it) is served from
// that body; any other read is a ranged read of its own.
type chunkSource struct {
	ctx context.Context
	r   Ranger

	mu   sync.Mutex
	wins []*window
}

// window is one streamed range of the age file.
type window struct {
	mu   sync.Mutex
	pos  int64 // offset of the body's next byte
	body io.ReadCloser
	dead bool // a read failed: out of step, no more reads from it
}

// maxSkip is how far ahead of a window's position a read may start and
// still be served from it: age skips the chunk it holds decrypted.
const maxSkip = 2 * ageChunkEnc

func (c *chunkSource) open(off int64, body io.ReadCloser) *window {
	w := &window{pos: off, body: body}
	c.mu.Lock()
	c.wins = append(c.wins, w)
	c.mu.Unlock()
	return w
}

func (c *chunkSource) close(w *window) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.wins {
		if x == w {
			c.wins = append(c.wins[:i], c.wins[i+1:]...)
			return
		}
	}
}

func (c *chunkSource) find(off int64) *window {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.wins {
		w.mu.Lock()
		ok := !w.dead && off >= w.pos && off-w.pos <= maxSkip
		w.mu.Unlock()
		if ok {
			return w
		}
	}
	return nil
}

func (c *chunkSource) ReadAt(p []byte, off int64) (int, error) {
	if w := c.find(off); w != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.dead && off >= w.pos {
			if _, err := io.CopyN(io.Discard, w.body, off-w.pos); err != nil {
				w.dead = true
				return 0, unexpected(err)
			}
			n, err := io.ReadFull(w.body, p)
			w.pos = off + int64(n)
			w.dead = err != nil
			return n, unexpected(err)
		}
	}
	body, err := c.r.ReadRange(c.ctx, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.ReadFull(body, p)
	return n, unexpected(err)
}

// unexpected turns a short read into io.EOF, which age takes for the
// end of the file (its last chunk may be shorter than the range asked).
func unexpected(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}
