package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Get opens the file of key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, store.Object{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, store.Object{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	if err != nil {
		return nil, store.Object{}, s.classify(ctx, "reading", key, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, store.Object{}, fmt.Errorf("%w: %s is not a regular file", store.ErrNotFound, key)
	}
	return readErrs{s, ctx, f, key}, store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// readErrs marks read failures as transfer errors, as a network store's
// would be.
type readErrs struct {
	s   *Store
	ctx context.Context
	f   *os.File
	key string
}

func (r readErrs) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.classify(r.ctx, "reading", r.key, err)
	}
	return n, err
}

func (r readErrs) Close() error { return r.f.Close() }

// GetRange reads the range with pread on the file of key.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	rc, obj, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(readErrs)
	n = max(0, min(n, obj.Size-off))
	return sectionErrs{readErrs: f, r: io.NewSectionReader(f.f, off, n)}, nil
}

type sectionErrs struct {
	readErrs
	r *io.SectionReader
}

func (r sectionErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.classify(r.ctx, "reading", r.key, err)
	}
	return n, err
}
