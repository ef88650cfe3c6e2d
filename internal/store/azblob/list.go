package azblob

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// List returns every blob under prefix, following continuation markers.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Metadata: true}}
	if s.listPage > 0 {
		opts.MaxResults = &s.listPage
	}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	pager := s.client.NewListBlobsFlatPager(opts)
	var objs []store.Object
	for pager.More() {
		page, err := pager.NextPage(s.control(ctx))
		if err != nil {
			return nil, s.classify(ctx, "listing", prefix+"*", err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil || item.Properties == nil || discardMarked(item.Metadata) {
				continue
			}
			objs = append(objs, store.Object{
				Key:      *item.Name,
				Size:     deref(item.Properties.ContentLength),
				Modified: deref(item.Properties.LastModified),
			})
		}
	}
	return objs, nil
}

// Delete removes keys one by one; retention deletes a handful per run.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, key := range keys {
		_, err := s.client.NewBlobClient(key).Delete(s.control(ctx), &blob.DeleteOptions{
			DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude),
		})
		if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
			return s.classify(ctx, "deleting", key, err)
		}
	}
	return nil
}
