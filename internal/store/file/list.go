package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// walk calls fn for each regular file under the directory of prefix with
// its key. A missing directory holds nothing.
func (s *Store) walk(ctx context.Context, prefix string, fn func(key string, d fs.DirEntry) error) error {
	start, err := s.dir(prefix)
	if err != nil {
		return err
	}
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return fs.SkipAll
			}
			return s.classify(ctx, "listing", fmt.Sprintf("%q", prefix), err)
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), d)
	})
}

// List walks the directory of prefix. Temporary files are left out.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	err := s.walk(ctx, prefix, func(key string, d fs.DirEntry) error {
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		objs = append(objs, store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// SweepIncomplete removes the temporary files under prefix that runs
// killed mid-Put left (SIGKILL, OOM, a node lost), last written
// before olderThan, whose final key match accepts (nil accepts all), and
// returns those keys. A file whose name does not parse back to a key is
// never touched.
func (s *Store) SweepIncomplete(ctx context.Context, prefix string, olderThan time.Time, match func(key string) bool) ([]string, error) {
	var removed []string
	err := s.walk(ctx, prefix, func(rel string, d fs.DirEntry) error {
		base, ok := partialBase(d.Name())
		if !ok {
			return nil
		}
		key := path.Join(path.Dir(rel), base)
		if path.Dir(rel) == "." {
			key = base
		}
		if !strings.HasPrefix(key, prefix) || (match != nil && !match(key)) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(olderThan) {
			return nil
		}
		if err := os.Remove(filepath.Join(s.root, filepath.FromSlash(rel))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.classify(ctx, "removing the incomplete upload of", key, err)
		}
		s.log.InfoContext(ctx, "removed incomplete upload", "key", key, "file", rel,
			"modified", fi.ModTime().UTC().Format(time.RFC3339))
		removed = append(removed, key)
		return nil
	})
	return removed, err
}

// Delete removes the files of keys.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, k := range keys {
		p, err := s.path(k)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.classify(ctx, "deleting", k, err)
		}
	}
	return nil
}
