package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrNoIndex: the snapshot was written before snapshots carried an index
// (or by another tool); it can only be read whole.
var ErrNoIndex = errors.New("snapshot has no index")

// Ranger reads byte ranges of one object, as store.Store's GetRange does
// for one key: n bytes from off, clipped at the object's end. It is the
// seam an encrypted stream can sit behind.
type Ranger interface {
	ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

// tailRead is how much of the object's end the first read fetches: the
// seek table of a 2 GiB snapshot and, often, the whole index of a small
// one.
const tailRead = 64 << 10

// Index is the seek table and the location of the entry index of one
// snapshot, as OpenIndex found them.
type Index struct {
	r         Ranger
	size      int64
	frames    []seekEntry // data frames only
	tarSize   int64
	indexOff  int64 // the index frame, skippable header included
	indexSize int64
	tail      []byte // the object's bytes from tailOff on
	tailOff   int64
}

// OpenIndex finds the seek table and the index of an object of size bytes
// from its end: one ranged read of the last 64 KiB, a second one when the
// seek table is larger, and Entries streams the index with a third (none
// when the first read held it). An object without a seek table is
// ErrNoIndex; a seek table or index that does not add up is ErrCorrupt.
// Memory is 12 bytes a frame (at most 12 MiB) besides the 64 KiB.
func OpenIndex(ctx context.Context, r Ranger, size int64) (*Index, error) {
	if size < seekFooterSize {
		return nil, ErrNoIndex
	}
	ix := &Index{r: r, size: size}
	ix.tailOff = max(0, size-tailRead)
	tail, err := readRange(ctx, r, ix.tailOff, size-ix.tailOff)
	if err != nil {
		return nil, err
	}
	ix.tail = tail
	n, tableSize, sums, ok, err := parseFooter(tail[len(tail)-seekFooterSize:])
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoIndex
	}
	if tableSize > size {
		return nil, fmt.Errorf("%w: the seek table claims %d bytes of a %d-byte object", ErrCorrupt, tableSize, size)
	}
	tableOff := size - tableSize
	var table []byte
	if tableOff >= ix.tailOff {
		table = tail[tableOff-ix.tailOff:]
	} else {
		head, err := readRange(ctx, r, tableOff, ix.tailOff-tableOff)
		if err != nil {
			return nil, err
		}
		table = append(head, tail...)
		ix.tail, ix.tailOff = table, tableOff
	}
	frames, err := parseSeekTable(table, n, sums)
	if err != nil {
		return nil, err
	}
	if len(frames) < 2 {
		return nil, ErrNoIndex
	}
	last := frames[len(frames)-1]
	frames = frames[:len(frames)-1]
	var csum, dsum int64
	for i, f := range frames {
		if f.dsize == 0 {
			return nil, fmt.Errorf("%w: seek table: frame %d holds no data", ErrCorrupt, i)
		}
		csum += int64(f.csize)
		dsum += int64(f.dsize)
	}
	if last.dsize != 0 {
		return nil, ErrNoIndex // a seekable stream, but not one with an index
	}
	ix.frames, ix.tarSize = frames, dsum
	ix.indexOff, ix.indexSize = csum, int64(last.csize)
	if csum+int64(last.csize) != tableOff {
		return nil, fmt.Errorf("%w: seek table: its frames take %d bytes, but it starts at %d", ErrCorrupt, csum+int64(last.csize), tableOff)
	}
	return ix, nil
}

// Frames is the number of data frames, TarSize the length of the tar
// stream they hold and Size the object's.
func (ix *Index) Frames() int      { return len(ix.frames) }
func (ix *Index) TarSize() int64   { return ix.tarSize }
func (ix *Index) IndexSize() int64 { return ix.indexSize }

// Entries streams the index's entries to fn in the order of the tar
// stream and returns how many there were. fn must not keep the *Entry;
// its error is returned as it is.
func (ix *Index) Entries(ctx context.Context, fn func(*Entry) error) (int64, error) {
	end := ix.indexOff + ix.indexSize
	var r io.Reader
	if ix.indexOff >= ix.tailOff {
		r = bytes.NewReader(ix.tail[ix.indexOff-ix.tailOff : end-ix.tailOff])
	} else {
		body, err := ix.r.ReadRange(ctx, ix.indexOff, min(end, ix.tailOff)-ix.indexOff)
		if err != nil {
			return 0, err
		}
		defer body.Close()
		r = io.MultiReader(body, bytes.NewReader(ix.tail[:max(0, end-ix.tailOff)]))
	}
	n, err := readIndex(r, ix.indexSize, ix.tarSize, fn)
	if err != nil && ctx.Err() != nil {
		return n, context.Cause(ctx)
	}
	return n, err
}

// readRange reads exactly n bytes at off; fewer means the object is not
// as long as its size said.
func readRange(ctx context.Context, r Ranger, off, n int64) ([]byte, error) {
	body, err := r.ReadRange(ctx, off, n)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the object is shorter than its size (%d bytes from %d)", ErrCorrupt, n, off)
		}
		return nil, err
	}
	return b, nil
}
