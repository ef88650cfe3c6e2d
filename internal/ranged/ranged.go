// Package ranged downloads an object as parallel ranged reads handed out
// in order, with bounded memory, for every store that has range requests.
package ranged

import (
	"github.com/snapshot-job/snapshot-job/internal/store"

	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Fetch returns the n bytes of an object starting at off.
type Fetch func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// rangeAttempts is how often one range is tried before the download fails.
// SDK retries cover failed requests; this covers bodies cut short mid-read,
// which SDKs hand to the caller as a plain read error.
const rangeAttempts = 4

// NewReader reads an object of size bytes as consecutive ranges of
// chunk bytes, with up to concurrency ranges in flight, and returns them in
// order. It holds at most concurrency+1 chunks in memory whatever the size.
func NewReader(ctx context.Context, size, chunk int64, concurrency int, fetch Fetch) io.ReadCloser {
	if chunk <= 0 {
		chunk = 8 << 20
	}
	if concurrency < 1 {
		concurrency = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &rangeReader{
		ctx:    ctx,
		size:   size,
		cancel: cancel,
		queue:  make(chan chan rangeResult, concurrency),
		free:   make(chan []byte, concurrency+1),
	}
	for range concurrency + 1 {
		r.free <- nil // allocated lazily so small objects stay small
	}
	r.wg.Add(1)
	go r.dispatch(ctx, size, chunk, fetch)
	return r
}

type rangeResult struct {
	buf []byte
	err error
}

type rangeReader struct {
	ctx    context.Context
	size   int64
	cancel context.CancelFunc
	queue  chan chan rangeResult
	free   chan []byte
	wg     sync.WaitGroup

	cur  []byte // unread part of the current chunk
	back []byte // the current chunk's whole buffer, returned to free when read
	read int64  // bytes handed out so far
	err  error
}

func (r *rangeReader) dispatch(ctx context.Context, size, chunk int64, fetch Fetch) {
	defer r.wg.Done()
	defer close(r.queue)
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		var buf []byte
		select {
		case buf = <-r.free:
		case <-ctx.Done():
			return
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, chunk)
		}
		buf = buf[:n]
		res := make(chan rangeResult, 1)
		select {
		case r.queue <- res:
		case <-ctx.Done():
			return
		}
		r.wg.Add(1)
		go func(off int64) {
			defer r.wg.Done()
			res <- rangeResult{buf: buf, err: fetchFull(ctx, fetch, off, buf)}
		}(off)
	}
}

// fetchFull fills buf with the range at off, retrying ranges that fail or
// come back short.
func fetchFull(ctx context.Context, fetch Fetch, off int64, buf []byte) error {
	var err error
	for attempt := range rangeAttempts {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 250 * time.Millisecond):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		err = fetchOnce(ctx, fetch, off, buf)
		if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAccess) {
			return err
		}
	}
	if !errors.Is(err, store.ErrTransfer) {
		err = fmt.Errorf("%w: %w", store.ErrTransfer, err)
	}
	return fmt.Errorf("bytes %d-%d after %d attempts: %w", off, off+int64(len(buf))-1, rangeAttempts, err)
}

func fetchOnce(ctx context.Context, fetch Fetch, off int64, buf []byte) error {
	body, err := fetch(ctx, off, int64(len(buf)))
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("range cut short: %w", err)
	}
	return nil
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.back != nil {
			r.free <- r.back
			r.back = nil
		}
		res, ok := <-r.queue
		if !ok {
			// The dispatcher also stops when ctx ends: only a complete
			// object is a clean end.
			r.err = io.EOF
			if r.read < r.size {
				r.err = fmt.Errorf("download stopped at byte %d of %d: %w", r.read, r.size, context.Cause(r.ctx))
			}
			continue
		}
		got := <-res
		if got.err != nil {
			r.err = got.err
			continue
		}
		r.cur, r.back = got.buf, got.buf
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.read += int64(n)
	return n, nil
}

// Close stops fetching and waits for requests in flight to end.
func (r *rangeReader) Close() error {
	r.cancel()
	r.wg.Wait()
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}
