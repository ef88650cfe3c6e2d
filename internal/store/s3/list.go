package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// already gone count as deleted; keys an Object Lock retention or legal
// hold still protects are reported in a *store.LockedError; every other
// per-key failure is reported. Stores without DeleteObjects get one
// DeleteObject per key.
//
// With Object Lock set on a versioned bucket (S3 turns versioning on with
// Object Lock), deleting a key alone only puts a delete marker on top of
// the locked version: the snapshot would vanish from lists while staying
// stored and billed, and would never be deleted once its lock expired.
// There every version of each key is deleted instead, which the lock
// refuses until it expires.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	var ids []types.ObjectIdentifier
	if s.lockMode != "" && s.versioned {
		var err error
		if ids, err = s.versionsOf(ctx, keys); err != nil {
			return err
		}
	} else {
		ids = make([]types.ObjectIdentifier, len(keys))
		for i := range keys {
			ids[i] = types.ObjectIdentifier{Key: &keys[i]}
		}
	}
	var failed []string
	var locked []store.Locked
	var kind error = store.ErrTransfer
	refused := func(id types.ObjectIdentifier, code, msg string) {
		if code == "AccessDenied" {
			if l, ok := s.lockOf(ctx, id); ok {
				// One entry per key, whichever of its versions held.
				if i := slices.IndexFunc(locked, func(o store.Locked) bool { return o.Key == l.Key }); i >= 0 {
					if l.Until.After(locked[i].Until) {
						locked[i].Until = l.Until
					}
					return
				}
				locked = append(locked, l)
				return
			}
		}
		if accessCodes[code] {
			kind = store.ErrAccess
		}
		failed = append(failed, fmt.Sprintf("%s (%s: %s)", aws.ToString(id.Key), code, msg))
	}
	for start := 0; start < len(ids); start += deleteBatch {
		batch := ids[start:min(start+deleteBatch, len(ids))]
		out, err := s.client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{
			Bucket: &s.bucket,
			Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)},
		})
		if err != nil && notImplemented(err) {
			if err := s.deleteEach(ctx, batch, refused); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return s.classify(ctx, fmt.Sprintf("deleting %d objects from", len(batch)), "", err)
		}
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			if code == "NoSuchKey" || code == "NoSuchVersion" {
				continue
			}
			refused(types.ObjectIdentifier{Key: e.Key, VersionId: e.VersionId}, code, aws.ToString(e.Message))
		}
	}
	var others error
	if len(failed) > 0 {
		shown := failed[:min(len(failed), 5)]
		more := ""
		if len(failed) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(failed)-len(shown))
		}
		others = fmt.Errorf("%w: %d of %d objects in s3://%s were not deleted: %s%s",
			kind, len(failed), len(keys), s.bucket, strings.Join(shown, ", "), more)
	}
	if len(locked) > 0 {
		return &store.LockedError{Locked: locked, Others: others}
	}
	return others
}

// versionsOf lists every version and delete marker of keys.
func (s *Store) versionsOf(ctx context.Context, keys []string) ([]types.ObjectIdentifier, error) {
	var ids []types.ObjectIdentifier
	for _, key := range keys {
		p := awss3.NewListObjectVersionsPaginator(s.client, &awss3.ListObjectVersionsInput{Bucket: &s.bucket, Prefix: aws.String(key)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, s.classify(ctx, "listing the versions of", key, err)
			}
			for _, v := range page.Versions {
				if aws.ToString(v.Key) == key {
					ids = append(ids, types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
				}
			}
			for _, m := range page.DeleteMarkers {
				if aws.ToString(m.Key) == key {
					ids = append(ids, types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
				}
			}
		}
	}
	return ids, nil
}

// lockOf tells whether a refused delete of id is an Object Lock at work:
// a retention that has not expired, or a legal hold. S3 answers both with
// the AccessDenied of a missing permission. A failed probe counts as no
// lock, so the refusal is reported as it came.
func (s *Store) lockOf(ctx context.Context, id types.ObjectIdentifier) (store.Locked, bool) {
	l := store.Locked{Key: aws.ToString(id.Key)}
	ret, err := s.client.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: &s.bucket, Key: id.Key, VersionId: id.VersionId})
	if err == nil && ret.Retention != nil && ret.Retention.RetainUntilDate != nil && ret.Retention.RetainUntilDate.After(time.Now()) {
		l.Until = ret.Retention.RetainUntilDate.UTC()
		return l, true
	}
	hold, err := s.client.GetObjectLegalHold(ctx, &awss3.GetObjectLegalHoldInput{Bucket: &s.bucket, Key: id.Key, VersionId: id.VersionId})
	if err == nil && hold.LegalHold != nil && hold.LegalHold.Status == types.ObjectLockLegalHoldStatusOn {
		return l, true
	}
	return l, false
}

func (s *Store) deleteOne(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	return err
}

// deleteEach deletes ids one request each. A refusal that may be a lock
// goes to refused, as DeleteObjects' per-key errors do.
func (s *Store) deleteEach(ctx context.Context, ids []types.ObjectIdentifier, refused func(id types.ObjectIdentifier, code, msg string)) error {
	for _, id := range ids {
		_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: id.Key, VersionId: id.VersionId})
		if err == nil {
			continue
		}
		if code := apiCode(err); code == "AccessDenied" {
			refused(id, code, err.Error())
			continue
		}
		if err = s.classify(ctx, "deleting", aws.ToString(id.Key), err); errors.Is(err, store.ErrNotFound) {
			continue
		}
		return err
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
