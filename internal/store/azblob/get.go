package azblob

import (
	"context"
	"fmt"
	"io"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

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
