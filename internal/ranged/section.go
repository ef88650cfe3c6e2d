package ranged

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Section opens the n bytes at off with one fetch and, when the body is
// cut short mid-read, fetches the rest from where it stopped, up to
// rangeAttempts times without progress. A body that ends cleanly before n
// bytes is the end of the object (the store clipped the range), not an
// error. The first fetch happens before Section returns, so that a
// missing key or refused credentials come back from the call itself.
func Section(ctx context.Context, off, n int64, fetch Fetch) (io.ReadCloser, error) {
	s := &section{ctx: ctx, off: off, left: n, fetch: fetch}
	if n == 0 {
		return s, nil
	}
	body, err := fetch(ctx, off, n)
	if err != nil {
		return nil, err
	}
	s.body = body
	return s, nil
}

type section struct {
	ctx      context.Context
	off      int64 // next byte to hand out
	left     int64
	fetch    Fetch
	body     io.ReadCloser
	failures int // consecutive failed attempts without progress
	err      error
}

func (s *section) Read(p []byte) (int, error) {
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.left == 0 {
			return 0, io.EOF
		}
		if s.body == nil {
			if err := s.reopen(); err != nil {
				s.err = err
				return 0, err
			}
		}
		if int64(len(p)) > s.left {
			p = p[:s.left]
		}
		n, err := s.body.Read(p)
		s.off += int64(n)
		s.left -= int64(n)
		if n > 0 {
			s.failures = 0
		}
		switch {
		case err == nil || (n > 0 && err != io.EOF):
			if err != nil {
				s.drop(err)
			}
			return n, nil
		case err == io.EOF:
			s.left = 0 // the object ends here
			return n, nil
		default:
			s.drop(err)
			if n > 0 {
				return n, nil
			}
		}
	}
}

// drop closes a body that failed and counts the failure.
func (s *section) drop(err error) {
	s.body.Close()
	s.body = nil
	s.failures++
	if s.ctx.Err() != nil {
		s.err = context.Cause(s.ctx)
		return
	}
	if s.failures >= rangeAttempts {
		if !errors.Is(err, store.ErrTransfer) {
			err = fmt.Errorf("%w: %w", store.ErrTransfer, err)
		}
		s.err = fmt.Errorf("bytes from %d: range cut short %d times: %w", s.off, s.failures, err)
	}
}

func (s *section) reopen() error {
	select {
	case <-time.After(time.Duration(s.failures*s.failures) * 250 * time.Millisecond):
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
	body, err := s.fetch(s.ctx, s.off, s.left)
	if err != nil {
		if s.ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrAccess) && !errors.Is(err, store.ErrTransfer) {
			err = fmt.Errorf("%w: %w", store.ErrTransfer, err)
		}
		return err
	}
	s.body = body
	return nil
}

func (s *section) Close() error {
	if s.body != nil {
		err := s.body.Close()
		s.body = nil
		return err
	}
	return nil
}
