package azblob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Block limits of the service (x-ms-version 2019-12-12 and later).
const (
	MaxBlocks    = 50000
	MaxBlockSize = 4000 << 20
)

// Limits are Azure's bounds on a block blob: 50,000 blocks of up to
// 4000 MiB.
func Limits() store.PartLimits {
	return store.PartLimits{MaxParts: MaxBlocks, MaxPartSize: MaxBlockSize}
}

// Metadata keys snapshot-job adds to every blob. Azure needs C#
// identifiers, so they use '_' where PutOptions keys use '-'.
const (
	metaVersion = "snapshot_job_version"
	metaUpload  = "snapshot_job_upload" // random ID of the Put that wrote the blob
	metaDiscard = "snapshot_job_discard"
)

var identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// metadataToAzure maps PutOptions keys ("source-bytes") to Azure's
// ("source_bytes"). Keys or values Azure would refuse are dropped with a
// warning: metadata must never fail a backup.
func (s *Store) metadataToAzure(in map[string]string, uploadID string) map[string]*string {
	out := map[string]*string{metaUpload: to.Ptr(uploadID)}
	if s.version != "" {
		out[metaVersion] = to.Ptr(s.version)
	}
	for k, v := range in {
		ak := strings.ReplaceAll(k, "-", "_")
		if !identifierRE.MatchString(ak) || !printableASCII(v) {
			s.log.Warn("metadata entry not stored: Azure takes identifier keys and printable ASCII values", "key", k)
			continue
		}
		out[ak] = to.Ptr(v)
	}
	return out
}

func printableASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func metaValue(md map[string]*string, key string) string {
	for k, v := range md {
		if strings.EqualFold(k, key) && v != nil {
			return *v
		}
	}
	return ""
}

func discardMarked(md map[string]*string) bool { return metaValue(md, metaDiscard) != "" }

var ifNoneMatchAny = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}

// Put stages r as blocks, concurrency at a time, and commits them at the
// end with If-None-Match: *. Memory is concurrency+1 blocks: one being
// filled while the others travel. On any failure the staged blocks are
// discarded on a fresh context, so nothing is left that Azure would bill.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	bb := s.client.NewBlockBlobClient(key)
	// Refuse before uploading: the conditional commit would refuse too,
	// but only after hours of transfer.
	if _, err := bb.GetProperties(s.control(ctx), nil); err == nil {
		return 0, s.existsErr(key)
	} else if err := s.classify(ctx, "checking", key, err); !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	uploadID := newUploadID()
	blockSize, concurrency := Limits().Parts(opts, s.partSize, s.concurrency)
	md := s.metadataToAzure(opts.Metadata, uploadID)
	s.log.Debug("azure upload", "key", key, "block_size", blockSize, "concurrency", concurrency)

	ids, total, err := s.stage(ctx, bb, key, r, uploadID, blockSize, concurrency)
	committing := false
	if err == nil {
		committing = true
		err = s.commit(ctx, bb, key, ids, md, uploadID)
		if err == nil {
			return total, nil
		}
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// A reader stopped by the same cancellation reports its own
		// error; the command must still see a cancellation.
		err = fmt.Errorf("%w: %w", store.ContextError(ctx), err)
	}
	if len(ids) > 0 && !errors.Is(err, store.ErrExists) {
		// A commit that went through consumed the staged blocks: once
		// its blob is gone there is nothing left to discard.
		if !committing || !s.removeOwn(ctx, bb, key, uploadID) {
			s.discard(ctx, bb, key)
		}
	}
	return 0, err
}

// removeOwn deletes the blob of this upload if a commit whose answer never
// came (the run was stopped, the connection dropped) went through after
// all: an interrupted backup must leave nothing visible. The upload ID in
// the blob's metadata tells ours from another writer's, and the delete is
// conditional on the ETag read. A commit still travelling may land a
// little later, so it looks a few times. It reports whether it found the
// blob.
func (s *Store) removeOwn(ctx context.Context, bb *blockblob.Client, key, uploadID string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.tm.cleanup)
	defer cancel()
	for round := range 3 {
		if round > 0 {
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return false
			}
		}
		p, err := bb.GetProperties(s.control(ctx), nil)
		if err != nil || metaValue(p.Metadata, metaUpload) != uploadID {
			continue
		}
		_, err = bb.Delete(s.control(ctx), &blob.DeleteOptions{
			AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: p.ETag}},
		})
		if err != nil {
			s.log.Error("the interrupted upload was committed and could not be deleted; delete it by hand",
				"key", key, "container", s.container, "err", oneLine(err.Error()))
		} else {
			s.log.Warn("deleted the blob of an interrupted upload whose commit went through", "key", key)
		}
		return true
	}
	return false
}

// stage reads r block by block and stages each block in the background.
// It returns the IDs of every block it started, even on error, so that
// the caller knows whether there is anything to discard.
//
// A failure or cancellation stops new blocks but lets those in flight
// finish: a block aborted mid-request may still land on the server after
// the discard, and would then stay behind. After a cancellation they get
// tm.cancelGrace (a pod has 30 s between SIGTERM and SIGKILL) before they
// are aborted too.
func (s *Store) stage(ctx context.Context, bb *blockblob.Client, key string, r io.Reader, uploadID string, blockSize int64, concurrency int) ([]string, int64, error) {
	reqCtx, stopRequests := store.GraceContext(ctx, s.tm.cancelGrace)
	defer stopRequests()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		stageErr error
		stop     = make(chan struct{}) // closed on the first failed block
	)
	free := make(chan []byte, concurrency+1)
	for range concurrency + 1 {
		free <- nil // allocated on first use so small snapshots stay small
	}
	slots := make(chan struct{}, concurrency)
	var (
		ids     []string
		total   int64
		readErr error
	)
read:
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			break read
		case <-ctx.Done():
			break read
		}
		if int64(cap(buf)) < blockSize {
			buf = make([]byte, blockSize)
		}
		n, err := io.ReadFull(r, buf[:blockSize])
		if n > 0 {
			if len(ids) == MaxBlocks {
				readErr = fmt.Errorf("azblob: %s: the snapshot needs more than %d blocks of %d MiB: raise SNAPSHOT_PART_SIZE", key, MaxBlocks, blockSize>>20)
				break
			}
			select {
			case slots <- struct{}{}:
			case <-stop:
				break read
			case <-ctx.Done():
				break read
			}
			id := blockID(uploadID, len(ids))
			ids = append(ids, id)
			total += int64(n)
			wg.Add(1)
			go func(b []byte) {
				defer wg.Done()
				_, err := bb.StageBlock(s.data(reqCtx, int64(len(b)), s.tm.retries), id, streaming.NopCloser(bytes.NewReader(b)), nil)
				<-slots
				free <- b[:0]
				if err != nil {
					mu.Lock()
					if stageErr == nil {
						stageErr = s.classify(ctx, "uploading a block of", key, err)
						close(stop)
					}
					mu.Unlock()
				}
			}(buf[:n])
		} else {
			free <- buf
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("azblob: reading the data for %s: %w", key, err)
			break
		}
	}
	wg.Wait()
	switch {
	case readErr != nil:
		return ids, 0, readErr
	case stageErr != nil:
		return ids, 0, stageErr
	case ctx.Err() != nil:
		return ids, 0, fmt.Errorf("azblob: uploading %s: %w", s.where(key), store.ContextError(ctx))
	}
	return ids, total, nil
}

// commit makes the blob visible, only if no blob has that name.
func (s *Store) commit(ctx context.Context, bb *blockblob.Client, key string, ids []string, md map[string]*string, uploadID string) error {
	opts := &blockblob.CommitBlockListOptions{
		Metadata:         md,
		Tier:             s.tier,
		AccessConditions: ifNoneMatchAny,
	}
	if strings.HasSuffix(key, ".zst") {
		opts.HTTPHeaders = &blob.HTTPHeaders{BlobContentType: to.Ptr("application/zstd")}
	}
	_, err := bb.CommitBlockList(s.withRetry(ctx, s.tm.commitTry, s.tm.retries), ids, opts)
	if err == nil {
		return nil
	}
	if isConflict(err) {
		// A retried commit whose first try succeeded but whose answer was
		// lost also ends here: the blob is then ours.
		if p, perr := bb.GetProperties(s.control(ctx), nil); perr == nil && metaValue(p.Metadata, metaUpload) == uploadID {
			return nil
		}
		return s.existsErr(key)
	}
	return s.classify(ctx, "committing", key, err)
}

func isConflict(err error) bool {
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return true
	}
	var re *azcore.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusConflict || re.StatusCode == http.StatusPreconditionFailed)
}

func (s *Store) existsErr(key string) error {
	return fmt.Errorf("%w: %s already exists; snapshot-job never overwrites a blob", store.ErrExists, s.where(key))
}

// discard drops the blocks a failed Put staged. Azure keeps uncommitted
// blocks, billed, for a week and has no call to delete them, but a commit
// replaces them all: so commit an empty list (only if the name is still
// free) and delete that empty blob at once, by its ETag so that nothing
// else can be deleted. List hides the blob for that instant through its
// discard mark. A cancelled Put aborts blocks mid-request, and the server
// may still store one of them after the commit: so look again and repeat.
// It runs on a fresh context: the Put's may be cancelled.
func (s *Store) discard(ctx context.Context, bb *blockblob.Client, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.tm.cleanup)
	defer cancel()
	for round := 1; ; round++ {
		if err := s.discardOnce(ctx, bb, key); err != nil {
			s.log.Warn("could not discard the blocks of a failed upload; Azure drops them after 7 days",
				"key", key, "container", s.container, "err", oneLine(err.Error()))
			return
		}
		left, err := s.hasUncommitted(ctx, key)
		if err == nil && !left {
			s.log.Debug("discarded the blocks of a failed upload", "key", key, "rounds", round)
			return
		}
		if err != nil || round == 3 {
			s.log.Warn("blocks of a failed upload may be left; Azure drops them after 7 days", "key", key, "container", s.container)
			return
		}
		select {
		case <-time.After(time.Duration(round) * 250 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

func (s *Store) discardOnce(ctx context.Context, bb *blockblob.Client, key string) error {
	resp, err := bb.CommitBlockList(s.control(ctx), nil, &blockblob.CommitBlockListOptions{
		Metadata:         map[string]*string{metaDiscard: to.Ptr("true")},
		AccessConditions: ifNoneMatchAny,
	})
	if err != nil {
		return s.classify(ctx, "discarding the blocks of", key, err)
	}
	_, err = bb.Delete(s.control(ctx), &blob.DeleteOptions{
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: resp.ETag}},
	})
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("an empty placeholder blob is left behind, delete it: %w", s.classify(ctx, "deleting", key, err))
	}
	return nil
}

// hasUncommitted reports whether key has staged blocks (and no committed
// data), as List Blobs with include=uncommittedblobs shows them.
func (s *Store) hasUncommitted(ctx context.Context, key string) (bool, error) {
	pager := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:  &key,
		Include: container.ListBlobsInclude{UncommittedBlobs: true},
	})
	for pager.More() {
		page, err := pager.NextPage(s.control(ctx))
		if err != nil {
			return false, err
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name != nil && *item.Name == key {
				return true, nil
			}
		}
	}
	return false, nil
}

// newUploadID tells this Put's blocks and blob apart from any other.
func newUploadID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// blockID is the same length for every block of every upload, as Azure
// requires of all blocks of one blob.
func blockID(uploadID string, i int) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s-%08d", uploadID, i))
}
