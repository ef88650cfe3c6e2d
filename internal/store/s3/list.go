package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// List pages through ListObjectsV2 under prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	p := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.classify(ctx, fmt.Sprintf("listing %q in", prefix), "", err)
		}
		for _, o := range page.Contents {
			objs = append(objs, store.Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return objs, nil
}

// deleteBatch is DeleteObjects' limit of keys per request.
const deleteBatch = 1000

// Delete removes keys with DeleteObjects, 1000 per request. Keys that are
// already gone count as deleted; every other per-key failure is reported.
// Stores without DeleteObjects get one DeleteObject per key.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	var failed []string
	var kind error = store.ErrTransfer
	for start := 0; start < len(keys); start += deleteBatch {
		batch := keys[start:min(start+deleteBatch, len(keys))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i := range batch {
			ids[i] = types.ObjectIdentifier{Key: &batch[i]}
		}
		out, err := s.client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{
			Bucket: &s.bucket,
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil && notImplemented(err) {
			if err := s.deleteEach(ctx, batch); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return s.classify(ctx, fmt.Sprintf("deleting %d objects from", len(batch)), "", err)
		}
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			if code == "NoSuchKey" {
				continue
			}
			if accessCodes[code] {
				kind = store.ErrAccess
			}
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", aws.ToString(e.Key), code, aws.ToString(e.Message)))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	shown := failed[:min(len(failed), 5)]
	more := ""
	if len(failed) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(failed)-len(shown))
	}
	return fmt.Errorf("%w: %d of %d objects in s3://%s were not deleted: %s%s",
		kind, len(failed), len(keys), s.bucket, strings.Join(shown, ", "), more)
}

func (s *Store) deleteOne(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	return err
}

func (s *Store) deleteEach(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := s.deleteOne(ctx, k); err != nil {
			if err = s.classify(ctx, "deleting", k, err); errors.Is(err, store.ErrNotFound) {
				continue
			}
			return err
		}
	}
	return nil
}

// SweepIncomplete aborts the multipart uploads under prefix that were
// initiated before olderThan and whose key match accepts (nil accepts
// all), and returns their keys. Retention calls it with the job's prefix
// and snapshot names so that uploads of interrupted runs (a killed pod
// cannot abort) stop being billed, and nobody else's are touched.
func (s *Store) SweepIncomplete(ctx context.Context, prefix string, olderThan time.Time, match func(key string) bool) ([]string, error) {
	var aborted []string
	p := awss3.NewListMultipartUploadsPaginator(s.client, &awss3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return aborted, s.classify(ctx, fmt.Sprintf("listing the incomplete uploads under %q in", prefix), "", err)
		}
		for _, u := range page.Uploads {
			if u.Initiated == nil || !u.Initiated.Before(olderThan) {
				continue
			}
			key := aws.ToString(u.Key)
			if match != nil && !match(key) {
				continue
			}
			if err := s.abortWithRetries(ctx, key, aws.ToString(u.UploadId)); err != nil {
				return aborted, s.classify(ctx, "aborting the incomplete upload of", key, err)
			}
			s.log.InfoContext(ctx, "aborted incomplete upload", "key", key, "initiated", u.Initiated.UTC().Format(time.RFC3339))
			aborted = append(aborted, key)
		}
	}
	return aborted, nil
}
