package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"

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
		return nil, store.Object{}, fmt.Errorf("%w: gcs: reading %s: the object has Content-Encoding %q, so GCS would decompress it and ignore ranged reads: clear it (gcloud storage objects update %s --clear-content-encoding)",
			store.ErrAccess, s.objectName(key), a.ContentEncoding, s.objectName(key))
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
