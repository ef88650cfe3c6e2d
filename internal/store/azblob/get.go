package azblob

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/snapshot-job/snapshot-job/internal/ranged"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Get opens key for reading with parallel ranged downloads.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	bc := s.client.NewBlobClient(key)
	p, err := bc.GetProperties(s.control(ctx), nil)
	if err != nil {
		return nil, store.Object{}, s.classify(ctx, "reading", key, err)
	}
	if p.AccessTier != nil && blob.AccessTier(*p.AccessTier) == blob.AccessTierArchive {
		return nil, store.Object{}, fmt.Errorf("%w: blob %q in container %q of storage account %q is in the Archive tier: rehydrate it (set its tier to Hot or Cool and wait) before reading it", store.ErrAccess, key, s.container, s.account)
	}
	obj := store.Object{Key: key, Size: deref(p.ContentLength), Modified: deref(p.LastModified)}
	// If-Match pins every range to the version whose size was read.
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: p.ETag}}
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		resp, err := bc.DownloadStream(s.data(ctx, n, s.tm.rangeRetries), &blob.DownloadStreamOptions{
			Range:            blob.HTTPRange{Offset: off, Count: n},
			AccessConditions: cond,
		})
		if err != nil {
			return nil, s.classify(ctx, "downloading", key, err)
		}
		return resp.Body, nil
	}
	return ranged.NewReader(ctx, obj.Size, s.partSize, s.concurrency, fetch), obj, nil
}

// GetRange reads the range with one DownloadStream of that offset and
// count. A range that starts past the end is answered 416, which here is
// an empty range of a blob that exists.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	bc := s.client.NewBlobClient(key)
	if n == 0 {
		if _, err := bc.GetProperties(s.control(ctx), nil); err != nil {
			return nil, s.classify(ctx, "reading", key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var cond *blob.AccessConditions // pinned after the first answer, so a resumed range reads the same blob
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		resp, err := bc.DownloadStream(s.data(ctx, n, s.tm.rangeRetries), &blob.DownloadStreamOptions{
			Range:            blob.HTTPRange{Offset: off, Count: n},
			AccessConditions: cond,
		})
		if err != nil {
			if bloberror.HasCode(err, bloberror.InvalidRange) {
				return io.NopCloser(strings.NewReader("")), nil
			}
			return nil, s.classify(ctx, "downloading", key, err)
		}
		if cond == nil && resp.ETag != nil {
			cond = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: resp.ETag}}
		}
		return resp.Body, nil
	}
	return ranged.Section(ctx, off, n, fetch)
}
