package gcs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/storage"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// List pages through the objects under prefix. The temporary parts of
// uploads are left out: they are no snapshots. The generation of each
// key is remembered, so that Delete removes that generation only.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	seen := map[string]int64{}
	err := s.each(ctx, prefix, func(a *storage.ObjectAttrs) error {
		if snapshotOf(a.Name) != "" {
			return nil
		}
		seen[a.Name] = a.Generation
		objs = append(objs, store.Object{Key: a.Name, Size: a.Size, Modified: a.Updated})
		return nil
	})
	if err != nil {
		return nil, s.classify(ctx, "listing", prefix+"*", err)
	}
	s.mu.Lock()
	for k, g := range seen {
		s.seen[k] = g
	}
	s.mu.Unlock()
	return objs, nil
}

// listPage is the number of names a List request asks for: the most GCS
// returns.
const listPage = 1000

// each calls fn for every object under prefix, following page tokens.
func (s *Store) each(ctx context.Context, prefix string, fn func(*storage.ObjectAttrs) error) error {
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Created", "Generation"}); err != nil {
		return err
	}
	it := s.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = listPage
	for {
		a, err := it.Next()
		if errors.Is(err, iteratorDone) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
}

// Delete removes keys one by one (retention deletes a handful per run),
// each guarded by the generation the last List saw: a newer object of
// the same name, written since, is never removed (it is skipped with a
// warning). A key no List returned is deleted whatever its generation.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, key := range keys {
		s.mu.Lock()
		gen := s.seen[key]
		s.mu.Unlock()
		cctx, cancel := s.control(ctx)
		err := s.deleteGeneration(cctx, key, gen)
		cancel()
		switch {
		case err == nil:
			s.mu.Lock()
			delete(s.seen, key)
			s.mu.Unlock()
		case isPrecondition(err):
			s.log.WarnContext(ctx, "not deleted: the object was replaced since it was listed", "key", key, "listed_generation", gen)
		default:
			return s.classify(ctx, "deleting", key, err)
		}
	}
	return nil
}

// SweepIncomplete deletes the temporary parts under prefix that uploads
// of interrupted runs left (a killed pod cannot clean up) and that were
// created before olderThan, when match accepts the snapshot key they
// belong to (nil accepts all), and returns those snapshot keys, once
// each. Retention calls it with the job's prefix and snapshot names, so
// that nobody else's objects are touched and an upload in progress is
// left alone.
func (s *Store) SweepIncomplete(ctx context.Context, prefix string, olderThan time.Time, match func(key string) bool) ([]string, error) {
	type temp struct {
		name string
		gen  int64
	}
	var found []temp
	keys := map[string]bool{}
	var order []string
	err := s.each(ctx, prefix, func(a *storage.ObjectAttrs) error {
		key := snapshotOf(a.Name)
		if key == "" || !a.Created.Before(olderThan) || (match != nil && !match(key)) {
			return nil
		}
		found = append(found, temp{a.Name, a.Generation})
		if !keys[key] {
			keys[key] = true
			order = append(order, key)
		}
		return nil
	})
	if err != nil {
		return nil, s.classify(ctx, fmt.Sprintf("listing the temporary parts under %q in", prefix), "", err)
	}
	for _, t := range found {
		cctx, cancel := s.control(ctx)
		err := s.deleteGeneration(cctx, t.name, t.gen)
		cancel()
		if err != nil && !isPrecondition(err) {
			return nil, s.classify(ctx, "deleting the temporary part", t.name, err)
		}
	}
	for _, k := range order {
		s.log.InfoContext(ctx, "deleted the temporary parts of an interrupted upload", "key", k)
	}
	return order, nil
}
