package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/snapshot-job/snapshot-job/internal/ranged"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Get reads key with ranged GETs of the part size, Concurrency of them in
// flight, handed out in order by ranged.NewReader. Every range is
// pinned to the ETag seen by the first HeadObject, so an object replaced
// mid-download fails instead of mixing two objects.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	head, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, store.Object{}, s.classify(ctx, "reading", key, err)
	}
	obj := store.Object{Key: key, Size: aws.ToInt64(head.ContentLength), Modified: aws.ToTime(head.LastModified)}
	etag := head.ETag
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{
			Bucket:  &s.bucket,
			Key:     &key,
			Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
			IfMatch: etag,
		})
		if err != nil {
			err = s.classify(ctx, "reading", key, err)
			if errors.Is(err, store.ErrExists) { // 412: the ETag changed
				err = fmt.Errorf("reading %s: %w: %s was replaced during the download", s.objectName(key), store.ErrTransfer, s.objectName(key))
			}
			return nil, err
		}
		return out.Body, nil
	}
	return ranged.NewReader(ctx, obj.Size, s.partSize, s.concurrency, fetch), obj, nil
}

// GetRange reads the range with one GET carrying a Range header. S3
// answers a range that starts past the end with 416, which here is an
// empty range of an object that exists.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		// No byte range can be empty; HEAD still tells a missing key.
		if _, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
			return nil, s.classify(ctx, "reading", key, err)
		}
		return io.NopCloser(eofReader{}), nil
	}
	var etag *string // pinned after the first answer, so a resumed range reads the same object
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{
			Bucket:  &s.bucket,
			Key:     &key,
			Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
			IfMatch: etag,
		})
		if err != nil {
			if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable || apiCode(err) == "InvalidRange" {
				return io.NopCloser(eofReader{}), nil
			}
			err = s.classify(ctx, "reading", key, err)
			if errors.Is(err, store.ErrExists) {
				err = fmt.Errorf("reading %s: %w: %s was replaced during the download", s.objectName(key), store.ErrTransfer, s.objectName(key))
			}
			return nil, err
		}
		if etag == nil {
			etag = out.ETag
		}
		return out.Body, nil
	}
	return ranged.Section(ctx, off, n, fetch)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
