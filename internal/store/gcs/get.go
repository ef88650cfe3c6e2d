package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/ranged"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Get reads key with ranged reads of the part size, Concurrency of them
// in flight, handed out in order by ranged.NewReader. Every range is
// pinned to the generation whose size was read, so an object replaced
// mid-download fails instead of mixing two objects. snapshot-job never
// sets Content-Encoding; an object that has one (uploaded with gzip
// encoding by another tool) is refused, as GCS would decompress it and
// ignore the ranges.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	cctx, cancel := s.control(ctx)
	a, err := s.bucket.Object(key).Attrs(cctx)
	cancel()
	if err != nil {
		return nil, store.Object{}, s.classify(ctx, "reading", key, err)
	}
	if a.ContentEncoding != "" {
		return nil, store.Object{}, s.encodedErr(key, a.ContentEncoding)
	}
	obj := store.Object{Key: key, Size: a.Size, Modified: a.Updated}
	o := s.bucket.Object(key).Generation(a.Generation)
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		rctx, cancel := context.WithTimeout(ctx, s.dataTimeout(n))
		r, err := o.NewRangeReader(rctx, off, n)
		if err != nil {
			cancel()
			err = s.classify(ctx, "reading", key, err)
			if errors.Is(err, store.ErrNotFound) {
				err = fmt.Errorf("%w: gcs: reading %s: it was replaced or deleted during the download (generation %d is gone)", store.ErrTransfer, s.objectName(key), a.Generation)
			}
			return nil, err
		}
		return &cancelCloser{ReadCloser: r, cancel: cancel}, nil
	}
	return ranged.NewReader(ctx, obj.Size, s.partSize, s.concurrency, fetch), obj, nil
}

// encodedErr refuses an object stored with a Content-Encoding.
func (s *Store) encodedErr(key, encoding string) error {
	return fmt.Errorf("%w: gcs: reading %s: the object has Content-Encoding %q, so GCS would decompress it and ignore ranged reads: clear it (gcloud storage objects update %s --clear-content-encoding)",
		store.ErrAccess, s.objectName(key), encoding, s.objectName(key))
}

// cancelCloser ends the range's time bound when the range is closed.
type cancelCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelCloser) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// GetRange reads the n bytes of key from off with native range reads,
// resumed where the body was cut (ranged.Section), every read after the
// first pinned to the generation the first one read. See store.Store for
// how ranges past the end read.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		// No read can be empty; the attributes still tell a missing key.
		cctx, cancel := s.control(ctx)
		_, err := s.bucket.Object(key).Attrs(cctx)
		cancel()
		if err != nil {
			return nil, s.classify(ctx, "reading", key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var gen int64 // pinned after the first answer, so a resumed range reads the same object
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		o := s.bucket.Object(key)
		if gen != 0 {
			o = o.Generation(gen)
		}
		rctx, cancel := context.WithTimeout(ctx, s.dataTimeout(n))
		r, err := o.NewRangeReader(rctx, off, n)
		if err != nil {
			cancel()
			if status(err) == http.StatusRequestedRangeNotSatisfiable {
				return io.NopCloser(strings.NewReader("")), nil
			}
			err = s.classify(ctx, "reading", key, err)
			if gen != 0 && errors.Is(err, store.ErrNotFound) {
				err = fmt.Errorf("%w: gcs: reading %s: it was replaced or deleted during the read (generation %d is gone)", store.ErrTransfer, s.objectName(key), gen)
			}
			return nil, err
		}
		if r.Attrs.ContentEncoding != "" {
			r.Close()
			cancel()
			return nil, s.encodedErr(key, r.Attrs.ContentEncoding)
		}
		if gen == 0 {
			gen = r.Attrs.Generation
		}
		return &cancelCloser{ReadCloser: r, cancel: cancel}, nil
	}
	return ranged.Section(ctx, off, n, fetch)
}
