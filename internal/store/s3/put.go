package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Limits are S3's bounds on a multipart upload: 10,000 parts of 5 MiB to
// 5 GiB.
func Limits() store.PartLimits {
	return store.PartLimits{MaxParts: MaxParts, MinPartSize: minPartSize, MaxPartSize: maxPartSize}
}

// Put streams r into key with a multipart upload (a single PutObject when
// it fits in one part). See store.Store for the guarantees; how they are
// kept here:
//   - never overwrite: a HeadObject first (so an existing key fails before
//     the archive is read), and If-None-Match: * on the final request so
//     that a writer racing us cannot be overwritten either. Stores that
//     answer 501 to the header get the request again without it (the
//     HeadObject check then stands alone) and are remembered.
//   - nothing left behind: the manager leaves parts on error and the
//     upload is aborted here on a fresh context, with retries, because the
//     caller's context may be the thing that was cancelled.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	if err := s.refuseExisting(ctx, key); err != nil {
		return 0, err
	}
	partSize, concurrency := Limits().Parts(opts, s.partSize, s.concurrency)
	token, err := newToken()
	if err != nil {
		return 0, err
	}
	meta := maps.Clone(opts.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	if s.version != "" && meta["tool-version"] == "" {
		meta["tool-version"] = s.version
	}
	meta[tokenKey] = token

	src := &sourceReader{r: r}
	in := &awss3.PutObjectInput{
		Bucket:      &s.bucket,
		Key:         &key,
		Body:        src, // not seekable: the manager streams it part by part
		Metadata:    meta,
		ContentType: aws.String(contentType(key)),
	}
	if s.sse != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(s.sse)
		if s.sseKMSKeyID != "" {
			in.SSEKMSKeyId = &s.sseKMSKeyID
		}
	}
	if s.storageClass != "" {
		in.StorageClass = types.StorageClass(s.storageClass)
	}
	if s.cond.supported() {
		in.IfNoneMatch = aws.String("*")
	}
	if s.lockMode != "" {
		in.ObjectLockMode = s.lockMode
		in.ObjectLockRetainUntilDate = aws.Time(time.Now().Add(s.lockFor).UTC())
		// S3 takes a retention only with an integrity checksum on every
		// request that carries data (Content-MD5 or x-amz-checksum-*);
		// the manager sends the algorithm on CreateMultipartUpload and a
		// checksum with each UploadPart. Unlocked uploads keep what the
		// client was set up with, which some S3-compatible stores need.
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
	}
	tr := &putTracker{s: s, key: key, started: time.Now()}
	checksums := s.client.Options().RequestChecksumCalculation
	up := manager.NewUploader(tr, func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = concurrency
		u.LeavePartsOnError = true
		u.RequestChecksumCalculation = checksums
	})
	s.log.DebugContext(ctx, "upload starting", "key", key, "part_size", partSize, "concurrency", concurrency,
		"size_hint", opts.SizeHint, "conditional_write", in.IfNoneMatch != nil)
	_, err = up.Upload(ctx, in)
	if err == nil {
		s.log.DebugContext(ctx, "upload complete", "key", key, "bytes", src.n, "parts", tr.parts.Load(),
			"seconds", time.Since(tr.started).Seconds())
		return src.n, nil
	}
	return s.failedPut(ctx, key, token, tr, src, err)
}

func contentType(key string) string {
	if strings.HasSuffix(key, ".zst") {
		return "application/zstd"
	}
	return "application/octet-stream"
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// refuseExisting fails with ErrExists when key is already stored.
func (s *Store) refuseExisting(ctx context.Context, key string) error {
	_, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err == nil {
		return fmt.Errorf("%w: %s", store.ErrExists, s.objectName(key))
	}
	err = s.classify(ctx, "", key, err)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("checking that %s does not exist yet: %w", s.objectName(key), err)
}

// objectName names key in messages, or the bucket for "".
func (s *Store) objectName(key string) string {
	if key == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + key
}

// failedPut cleans up after a failed upload and says why it failed.
func (s *Store) failedPut(ctx context.Context, key, token string, tr *putTracker, src *sourceReader, upErr error) (int64, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupBudget)
	defer cancel()
	interrupted := ctx.Err() != nil
	name := s.objectName(key)

	// A final request whose answer was lost (cancelled while in flight, or
	// retried by the SDK and then refused by If-None-Match because the
	// first attempt had worked) may have stored the object after all.
	if tr.finalSent.Load() && src.err == nil {
		if owned, err := s.ownsObject(cctx, key, token); err == nil && owned {
			if !interrupted {
				s.log.InfoContext(ctx, "upload completed although its last request failed", "key", key, "error", upErr)
				return src.n, nil
			}
			if err := s.deleteOne(cctx, key); err != nil {
				s.log.ErrorContext(ctx, "could not delete the object of an interrupted upload", "key", key, "error", err)
			} else {
				s.log.InfoContext(ctx, "deleted the object of an interrupted upload", "key", key)
			}
		}
	}

	var abortErr error
	for _, id := range tr.uploadIDs(cctx) {
		if err := s.abortWithRetries(cctx, key, id); err != nil {
			abortErr = err
			s.log.ErrorContext(ctx, "could not abort a failed multipart upload; pruning removes it after 24 h",
				"key", key, "upload_id", id, "error", err)
		} else {
			s.log.DebugContext(ctx, "aborted multipart upload", "key", key, "upload_id", id)
		}
	}
	note := ""
	if abortErr != nil {
		note = fmt.Sprintf(" (its incomplete multipart upload could not be aborted: %v)", abortErr)
	}
	switch {
	case src.err != nil:
		return 0, fmt.Errorf("upload to %s abandoned%s: %w", name, note, src.err)
	case interrupted:
		err := ctx.Err()
		if cause := context.Cause(ctx); cause != nil && cause != err {
			return 0, fmt.Errorf("upload to %s stopped (%v)%s: %w", name, cause, note, err)
		}
		return 0, fmt.Errorf("upload to %s stopped%s: %w", name, note, err)
	}
	return 0, fmt.Errorf("uploading %s%s: %w", name, note, s.classify(ctx, "", key, upErr))
}

// ownsObject reports whether key exists and carries token.
func (s *Store) ownsObject(ctx context.Context, key, token string) (bool, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		if errors.Is(s.classify(ctx, "", key, err), store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return out.Metadata[tokenKey] == token, nil
}

// abortWithRetries aborts one multipart upload. The SDK already retries
// each request; the loop adds retries across longer outages within ctx.
func (s *Store) abortWithRetries(ctx context.Context, key, id string) error {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * time.Second):
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			}
		}
		_, err = s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &id})
		if err == nil || apiCode(err) == "NoSuchUpload" || httpStatus(err) == http.StatusNotFound {
			return nil
		}
	}
	return err
}

// sourceReader counts the bytes read and keeps the source's own error
// apart from the store's.
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// condWrites remembers whether the store accepts If-None-Match on writes.
type condWrites struct{ unsupported atomic.Bool }

func (c *condWrites) supported() bool { return !c.unsupported.Load() }

func notImplemented(err error) bool {
	return httpStatus(err) == http.StatusNotImplemented || apiCode(err) == "NotImplemented"
}

// putTracker sits between the manager and the client: it records what
// was sent (for the cleanup) and retries final requests without
// If-None-Match on stores that do not implement it.
type putTracker struct {
	s       *Store
	key     string
	started time.Time

	mu         sync.Mutex
	createSent bool
	ids        []string
	finalSent  atomic.Bool
	parts      atomic.Int64
}

var _ manager.UploadAPIClient = (*putTracker)(nil)

// uploadIDs returns the multipart uploads to abort. When the answer to
// CreateMultipartUpload was lost, the upload is found by listing.
func (t *putTracker) uploadIDs(ctx context.Context) []string {
	t.mu.Lock()
	ids, sent := t.ids, t.createSent
	t.mu.Unlock()
	if len(ids) > 0 || !sent {
		return ids
	}
	s := t.s
	p := awss3.NewListMultipartUploadsPaginator(s.client, &awss3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &t.key})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			s.log.WarnContext(ctx, "could not list multipart uploads to clean up", "key", t.key, "error", err)
			return nil
		}
		for _, u := range page.Uploads {
			// Keys carry a timestamp, so an upload of this key started
			// since this Put (minus clock skew) is this Put's.
			if aws.ToString(u.Key) == t.key && aws.ToTime(u.Initiated).After(t.started.Add(-5*time.Minute)) {
				ids = append(ids, aws.ToString(u.UploadId))
			}
		}
	}
	return ids
}

func (t *putTracker) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	t.mu.Lock()
	t.createSent = true
	t.mu.Unlock()
	out, err := t.s.client.CreateMultipartUpload(ctx, in, opts...)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		t.ids = append(t.ids, aws.ToString(out.UploadId))
	case httpStatus(err) != 0 && httpStatus(err) < 500:
		// The store answered and refused: no upload to look for.
		t.createSent = false
	}
	return out, err
}

func (t *putTracker) UploadPart(ctx context.Context, in *awss3.UploadPartInput, opts ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	out, err := t.s.client.UploadPart(ctx, in, opts...)
	if err == nil {
		t.parts.Add(1)
	}
	return out, err
}

func (t *putTracker) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	return t.s.client.AbortMultipartUpload(ctx, in, opts...)
}

func (t *putTracker) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	t.finalSent.Store(true)
	out, err := t.s.client.PutObject(ctx, in, opts...)
	if err == nil || in.IfNoneMatch == nil || !notImplemented(err) {
		return out, err
	}
	body, ok := in.Body.(io.Seeker)
	if !ok {
		return out, err
	}
	if err := t.unconditional(ctx); err != nil {
		return nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	again := *in
	again.IfNoneMatch = nil
	return t.s.client.PutObject(ctx, &again, opts...)
}

func (t *putTracker) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	t.finalSent.Store(true)
	out, err := t.s.client.CompleteMultipartUpload(ctx, in, opts...)
	if err == nil || in.IfNoneMatch == nil || !notImplemented(err) {
		return out, err
	}
	if err := t.unconditional(ctx); err != nil {
		return nil, err
	}
	again := *in
	again.IfNoneMatch = nil
	return t.s.client.CompleteMultipartUpload(ctx, &again, opts...)
}

// unconditional records that the store rejects If-None-Match and checks
// again, just before the unconditional write, that the key is still free.
func (t *putTracker) unconditional(ctx context.Context) error {
	if t.s.cond.unsupported.CompareAndSwap(false, true) {
		t.s.log.WarnContext(ctx, "the store does not implement conditional writes (If-None-Match); relying on a check before writing",
			"store", t.s.String())
	}
	return t.s.refuseExisting(ctx, t.key)
}
