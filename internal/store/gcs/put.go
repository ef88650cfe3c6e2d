package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Bounds of a composite upload. GCS composes at most 32 sources a call
// and sets no limit on the components of an object; MaxParts is this
// provider's own bound, Azure's block count: parts stay small for large
// snapshots (1 TiB: 24 MiB), so the memory plan stays small, at the cost
// of one request per part and a compose per 32 (1 TiB: about 1,600).
const (
	MaxParts     = 50000
	minPartSize  = 5 << 20
	maxPartSize  = 5 << 30
	maxSources   = 32
	tokenKey     = "upload-token"
	versionKey   = "tool-version"
	contentTypeZ = "application/zstd"
)

// Limits are this provider's bounds on the parts of one object.
func Limits() store.PartLimits {
	return store.PartLimits{MaxParts: MaxParts, MinPartSize: minPartSize, MaxPartSize: maxPartSize}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Put stores r under key; see store.Store for the guarantees. How they are
// kept here:
//   - never overwrite: the key is looked up first (so an existing key
//     fails before the archive is read), and every write that creates the
//     snapshot (the single upload, the final compose) carries the
//     DoesNotExist precondition, which also makes retrying it safe.
//   - invisible until complete: the parts are temporary objects with
//     hidden names (List never shows them); the snapshot's name appears
//     only with the final compose.
//   - nothing left behind: on any failure the parts are deleted on a
//     fresh context; what a killed pod leaves, pruning sweeps after 24 h.
//
// With one part in flight the snapshot is one resumable upload: no
// parts, no compose.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	if err := s.refuseExisting(ctx, key); err != nil {
		return 0, err
	}
	partSize, concurrency := Limits().Parts(opts, s.partSize, s.concurrency)
	token := newToken()
	u := &upload{
		s: s, key: key, token: token, partSize: partSize, concurrency: concurrency,
		md: s.metadata(opts.Metadata, token), started: time.Now(),
	}
	s.log.DebugContext(ctx, "upload starting", "key", key, "part_size", partSize, "concurrency", concurrency, "size_hint", opts.SizeHint)
	src := &sourceReader{r: r}
	var n int64
	var err error
	if concurrency == 1 {
		n, err = u.stream(ctx, src)
	} else {
		n, err = u.composite(ctx, src)
	}
	if err == nil {
		s.log.DebugContext(ctx, "upload complete", "key", key, "bytes", n, "parts", u.parts.Load(), "seconds", time.Since(u.started).Seconds())
		return n, nil
	}
	return 0, u.fail(ctx, src, err)
}

// upload is one Put.
type upload struct {
	s           *Store
	key, token  string
	partSize    int64
	concurrency int
	md          map[string]string
	started     time.Time

	finalSent atomic.Bool // the request that creates key was sent
	parts     atomic.Int64

	mu   sync.Mutex
	temp map[string]int64 // temporary objects written: name → generation
}

func (s *Store) metadata(in map[string]string, token string) map[string]string {
	md := maps.Clone(in)
	if md == nil {
		md = map[string]string{}
	}
	if s.version != "" && md[versionKey] == "" {
		md[versionKey] = s.version
	}
	md[tokenKey] = token
	return md
}

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func contentType(key string) string {
	if strings.HasSuffix(key, ".zst") {
		return contentTypeZ
	}
	return "application/octet-stream"
}

// refuseExisting fails with ErrExists when key is already stored.
func (s *Store) refuseExisting(ctx context.Context, key string) error {
	cctx, cancel := s.control(ctx)
	defer cancel()
	_, err := s.bucket.Object(key).Attrs(cctx)
	if err == nil {
		return s.existsErr(key)
	}
	if err := s.classify(ctx, "checking", key, err); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (s *Store) existsErr(key string) error {
	return fmt.Errorf("%w: %s already exists; snapshot-job never overwrites an object", store.ErrExists, s.objectName(key))
}

// Temporary objects are named after the snapshot, hidden (a leading '.')
// next to it: ".<base>.<token>.p00001" for parts and ".<base>.<token>.c1-00001"
// for the intermediate objects of a compose tree. The sweep reads the
// snapshot's name and the upload's token back from them.
var tempRE = regexp.MustCompile(`^\.(.+)\.([0-9a-f]{16})\.(p|c[0-9]+-)([0-9]{5,})$`)

func tempName(key, token, kind string, i int) string {
	dir, base := path.Split(key)
	return fmt.Sprintf("%s.%s.%s.%s%05d", dir, base, token, kind, i)
}

func tempPrefix(key, token string) string {
	dir, base := path.Split(key)
	return dir + "." + base + "." + token + "."
}

// snapshotOf returns the snapshot key a temporary object belongs to, or
// "" when name is no temporary object.
func snapshotOf(name string) string {
	dir, base := path.Split(name)
	m := tempRE.FindStringSubmatch(base)
	if m == nil {
		return ""
	}
	return dir + m[1]
}

func (u *upload) recordTemp(name string, gen int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.temp == nil {
		u.temp = map[string]int64{}
	}
	u.temp[name] = gen
}

// stream sends r as one resumable upload straight to key: one request per
// part-size chunk, each retried by the client (the DoesNotExist
// precondition makes that safe); the object appears with the last chunk.
func (u *upload) stream(ctx context.Context, src *sourceReader) (int64, error) {
	s := u.s
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.bucket.Object(u.key).If(storage.Conditions{DoesNotExist: true}).NewWriter(wctx)
	w.ChunkSize = int(u.partSize)
	w.ChunkRetryDeadline = s.dataTimeout(u.partSize) * time.Duration(s.tm.attempts)
	w.ChunkTransferTimeout = s.dataTimeout(u.partSize)
	w.ContentType = contentType(u.key)
	w.Metadata = u.md
	crc := crc32.New(castagnoli)
	n, err := io.Copy(w, io.TeeReader(src, crc))
	if err != nil {
		// Cancelling before Close abandons the resumable session: GCS
		// creates no object and drops the session after a week.
		cancel()
		_ = w.Close()
		if src.err != nil {
			return 0, fmt.Errorf("gcs: reading the data for %s: %w", u.key, src.err)
		}
		return 0, s.classify(ctx, "uploading", u.key, err)
	}
	w.CRC32C, w.SendCRC32C = crc.Sum32(), true
	u.finalSent.Store(true)
	if err := w.Close(); err != nil {
		return 0, u.finalError(ctx, err)
	}
	u.parts.Add(1)
	return n, nil
}

// finalError sorts out a failed request that creates key: a retry whose
// first try went through is refused (412, or for a compose whose sources
// that try deleted, 404), and the object there is this upload's own when
// it carries its token.
func (u *upload) finalError(ctx context.Context, err error) error {
	s := u.s
	if ctx.Err() == nil {
		if a, _ := s.owns(ctx, u.key, u.token); a != nil {
			return nil
		}
	}
	if isPrecondition(err) {
		return s.existsErr(u.key)
	}
	return s.classify(ctx, "uploading", u.key, err)
}

// owns reports whether key exists and was written by the upload token.
func (s *Store) owns(ctx context.Context, key, token string) (*storage.ObjectAttrs, error) {
	cctx, cancel := s.control(ctx)
	defer cancel()
	a, err := s.bucket.Object(key).Attrs(cctx)
	if err != nil {
		return nil, err
	}
	if a.Metadata[tokenKey] != token {
		return nil, nil
	}
	return a, nil
}

// composite reads r part by part, stores each part as a temporary object
// in the background (concurrency at a time; memory is concurrency+1 parts:
// one being filled while the others travel), composes them into key and
// deletes them. A snapshot that fits in one part is stored with one
// request instead.
//
// A failure or cancellation stops new parts but lets those in flight
// finish (after a cancellation for at most tm.cancelGrace: a pod has
// 30 s between SIGTERM and SIGKILL), so that none lands after the
// cleanup.
func (u *upload) composite(ctx context.Context, src *sourceReader) (int64, error) {
	s := u.s
	reqCtx, stopRequests := store.GraceContext(ctx, s.tm.cancelGrace)
	defer stopRequests()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		partErr error
		stop    = make(chan struct{}) // closed on the first failed part
	)
	free := make(chan []byte, u.concurrency+1)
	for range u.concurrency + 1 {
		free <- nil // allocated on first use so small snapshots stay small
	}
	slots := make(chan struct{}, u.concurrency)
	var (
		names   []string
		sizes   []int64
		total   int64
		readErr error
		crc     uint32
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
		if int64(cap(buf)) < u.partSize {
			buf = make([]byte, u.partSize)
		}
		n, err := io.ReadFull(src, buf[:u.partSize])
		last := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !last {
			readErr = fmt.Errorf("gcs: reading the data for %s: %w", u.key, src.errOr(err))
			break
		}
		if len(names) == 0 && last {
			// The whole snapshot is in one buffer: no parts to compose.
			return u.single(ctx, buf[:n])
		}
		if n > 0 {
			if len(names) == MaxParts {
				readErr = fmt.Errorf("gcs: %s: the snapshot needs more than %d parts of %d MiB: raise SNAPSHOT_PART_SIZE", u.key, MaxParts, u.partSize>>20)
				break
			}
			select {
			case slots <- struct{}{}:
			case <-stop:
				break read
			case <-ctx.Done():
				break read
			}
			name := tempName(u.key, u.token, "p", len(names)+1)
			names = append(names, name)
			sizes = append(sizes, int64(n))
			total += int64(n)
			crc = crc32.Update(crc, castagnoli, buf[:n])
			wg.Add(1)
			go func(b []byte) {
				defer wg.Done()
				err := u.writeTemp(reqCtx, name, b)
				<-slots
				free <- b[:0]
				if err != nil {
					mu.Lock()
					if partErr == nil {
						partErr = s.classify(ctx, "uploading a part of", u.key, err)
						close(stop)
					}
					mu.Unlock()
				} else {
					u.parts.Add(1)
				}
			}(buf[:n])
		} else {
			free <- buf
		}
		if last {
			break
		}
	}
	wg.Wait()
	switch {
	case readErr != nil:
		return 0, readErr
	case partErr != nil:
		return 0, partErr
	case ctx.Err() != nil:
		return 0, fmt.Errorf("gcs: uploading %s: %w", s.objectName(u.key), store.ContextError(ctx))
	}
	if err := u.compose(ctx, names, sizes, crc); err != nil {
		return 0, err
	}
	u.deleteTemp(ctx)
	return total, nil
}

// single stores data, the whole snapshot, under key with one request.
func (u *upload) single(ctx context.Context, data []byte) (int64, error) {
	u.finalSent.Store(true)
	_, err := u.s.writeObject(ctx, u.key, data, u.md, contentType(u.key))
	if err != nil {
		return 0, u.finalError(ctx, err)
	}
	u.parts.Add(1)
	return int64(len(data)), nil
}

// writeTemp stores one part. A 412 means an earlier try of this very
// request went through (the name holds this upload's random token): the
// part is there if its size and checksum are this part's.
func (u *upload) writeTemp(ctx context.Context, name string, data []byte) error {
	a, err := u.s.writeObject(ctx, name, data, nil, "application/octet-stream")
	if err != nil && isPrecondition(err) {
		cctx, cancel := u.s.control(ctx)
		got, aerr := u.s.bucket.Object(name).Attrs(cctx)
		cancel()
		if aerr == nil && got.Size == int64(len(data)) && got.CRC32C == crc32.Checksum(data, castagnoli) {
			a, err = got, nil
		}
	}
	if err != nil {
		return err
	}
	u.recordTemp(name, a.Generation)
	return nil
}

// writeObject stores data under name with one request, only if the name
// is free, and with its CRC32C so that GCS refuses a corrupted body. The
// client cannot retry a request whose body it did not buffer; the retries
// are here, over the caller's buffer: no second copy of the part.
func (s *Store) writeObject(ctx context.Context, name string, data []byte, md map[string]string, ctype string) (*storage.ObjectAttrs, error) {
	sum := crc32.Checksum(data, castagnoli)
	var err error
	for attempt := range s.tm.attempts {
		if attempt > 0 {
			if werr := s.backoff(ctx, attempt); werr != nil {
				return nil, err
			}
		}
		actx, cancel := context.WithTimeout(ctx, s.dataTimeout(int64(len(data))))
		obj := s.bucket.Object(name).If(storage.Conditions{DoesNotExist: true}).Retryer(storage.WithPolicy(storage.RetryNever))
		w := obj.NewWriter(actx)
		w.ChunkSize = 0
		w.DisableAutoChecksum = true
		w.CRC32C, w.SendCRC32C = sum, true
		w.ContentType = ctype
		w.Metadata = md
		_, err = w.Write(data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		cancel()
		if err == nil {
			return w.Attrs(), nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		s.log.DebugContext(ctx, "retrying an upload request", "object", name, "attempt", attempt+1, "error", oneLine(err.Error()))
	}
	return nil, err
}

// backoff waits before retry attempt (1, 2, ...): tm.backoff doubled each
// time, up to tm.maxBackoff.
func (s *Store) backoff(ctx context.Context, attempt int) error {
	d := min(s.tm.backoff<<(attempt-1), s.tm.maxBackoff)
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// compose builds key from the parts: 32 sources a call, each source
// pinned to the generation written and deleted by the compose,
// intermediate objects for more than 32 parts (each level composed in
// parallel), and the final compose only if key is free. CRC32C of the whole stream lets GCS refuse a snapshot
// put together wrongly.
func (u *upload) compose(ctx context.Context, names []string, sizes []int64, crc uint32) error {
	s := u.s
	for level := 1; len(names) > maxSources; level++ {
		groups := (len(names) + maxSources - 1) / maxSources
		next := make([]string, groups)
		nextSizes := make([]int64, groups)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(u.concurrency)
		for i := range groups {
			srcs := names[i*maxSources : min((i+1)*maxSources, len(names))]
			var size int64
			for _, n := range sizes[i*maxSources : min((i+1)*maxSources, len(sizes))] {
				size += n
			}
			dst := tempName(u.key, u.token, fmt.Sprintf("c%d-", level), i+1)
			next[i], nextSizes[i] = dst, size
			g.Go(func() error {
				a, err := u.composeOnce(gctx, dst, srcs, nil, nil)
				if err != nil && (isPrecondition(err) || status(err) == http.StatusNotFound) {
					// An earlier try went through (and deleted the
					// sources): the name holds this upload's token.
					cctx, cancel := s.control(gctx)
					got, aerr := s.bucket.Object(dst).Attrs(cctx)
					cancel()
					if aerr == nil && got.Size == size {
						a, err = got, nil
					}
				}
				if err != nil {
					return s.classify(ctx, "composing the parts of", u.key, err)
				}
				u.recordTemp(dst, a.Generation)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		names, sizes = next, nextSizes
	}
	u.finalSent.Store(true)
	_, err := u.composeOnce(ctx, u.key, names, u.md, &crc)
	if err != nil {
		return u.finalError(ctx, err)
	}
	return nil
}

// composeOnce composes srcs (at their recorded generations) into dst,
// only if dst is free; the client retries it, which the precondition
// makes safe.
func (u *upload) composeOnce(ctx context.Context, dst string, srcs []string, md map[string]string, crc *uint32) (*storage.ObjectAttrs, error) {
	s := u.s
	u.mu.Lock()
	handles := make([]*storage.ObjectHandle, len(srcs))
	for i, n := range srcs {
		handles[i] = s.bucket.Object(n).Generation(u.temp[n])
	}
	u.mu.Unlock()
	c := s.bucket.Object(dst).If(storage.Conditions{DoesNotExist: true}).ComposerFrom(handles...)
	// The sources go with the compose, hard deleted: a plain delete
	// afterwards would leave them billed for the bucket's soft-delete
	// period (7 days by default) or as noncurrent versions.
	c.DeleteSourceObjects = true
	c.ContentType = contentType(dst)
	if md != nil {
		c.ContentType = contentType(u.key)
		c.Metadata = md
	}
	if crc != nil {
		c.CRC32C, c.SendCRC32C = *crc, true
	}
	cctx, cancel := s.control(ctx)
	defer cancel()
	a, err := c.Run(cctx)
	if err == nil {
		// GCS deleted them; deleteTemp's listing still finds any a
		// store that ignores deleteSourceObjects kept.
		u.mu.Lock()
		for _, n := range srcs {
			delete(u.temp, n)
		}
		u.mu.Unlock()
	}
	return a, err
}

// fail cleans up after a failed upload, on a fresh context, and says why
// it failed.
func (u *upload) fail(ctx context.Context, src *sourceReader, err error) error {
	s := u.s
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// A reader stopped by the same cancellation reports its own
		// error; the command must still see a cancellation.
		err = fmt.Errorf("%w: %w", store.ContextError(ctx), err)
	}
	if errors.Is(err, store.ErrExists) {
		u.deleteTemp(ctx)
		return err
	}
	if u.finalSent.Load() && src.err == nil {
		// A final request whose answer was lost may have stored the
		// snapshot after all: an interrupted backup must leave nothing.
		s.removeOwn(ctx, u.key, u.token)
	}
	u.deleteTemp(ctx)
	return err
}

// removeOwn deletes key if this upload wrote it, by its generation.
func (s *Store) removeOwn(ctx context.Context, key, token string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.tm.cleanup)
	defer cancel()
	a, err := s.owns(cctx, key, token)
	if err != nil || a == nil {
		return
	}
	err = s.bucket.Object(key).If(storage.Conditions{GenerationMatch: a.Generation}).Delete(cctx)
	if err != nil {
		s.log.ErrorContext(ctx, "the interrupted upload was completed and could not be deleted; delete it by hand", "key", key, "error", oneLine(err.Error()))
		return
	}
	s.log.WarnContext(ctx, "deleted the object of an interrupted upload whose last request went through", "key", key)
}

// deleteTemp deletes the temporary objects of the upload: those it wrote,
// and those a lost answer hid from it (found by listing their names).
// Failures are logged, not returned: the snapshot is stored or the
// upload failed for another reason, and pruning sweeps what is left.
func (u *upload) deleteTemp(ctx context.Context) {
	s := u.s
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.tm.cleanup)
	defer cancel()
	u.mu.Lock()
	temp := maps.Clone(u.temp)
	u.mu.Unlock()
	if temp == nil {
		temp = map[string]int64{}
	}
	it := s.bucket.Objects(cctx, &storage.Query{Prefix: tempPrefix(u.key, u.token)})
	for {
		a, err := it.Next()
		if errors.Is(err, iteratorDone) {
			break
		}
		if err != nil {
			s.log.WarnContext(ctx, "could not list the temporary parts of an upload; pruning deletes them after 24 h", "key", u.key, "error", oneLine(err.Error()))
			break
		}
		temp[a.Name] = a.Generation
	}
	if len(temp) == 0 {
		return
	}
	var failed atomic.Int64
	g := new(errgroup.Group)
	g.SetLimit(max(u.concurrency, 4))
	for name, gen := range temp {
		g.Go(func() error {
			if err := s.deleteGeneration(cctx, name, gen); err != nil {
				failed.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	if n := failed.Load(); n > 0 {
		s.log.WarnContext(ctx, "could not delete some temporary parts of an upload; pruning deletes them after 24 h", "key", u.key, "left", n)
		return
	}
	s.log.DebugContext(ctx, "deleted the temporary parts of an upload", "key", u.key, "objects", len(temp))
}

// deleteGeneration deletes name only while its generation is gen (0: any);
// a name already gone counts as deleted.
func (s *Store) deleteGeneration(ctx context.Context, name string, gen int64) error {
	o := s.bucket.Object(name)
	if gen != 0 {
		o = o.If(storage.Conditions{GenerationMatch: gen})
	}
	err := o.Delete(ctx)
	if err == nil || errors.Is(err, storage.ErrObjectNotExist) {
		return nil
	}
	return err
}

// sourceReader keeps the source's own error apart from the store's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (s *sourceReader) errOr(err error) error {
	if s.err != nil {
		return s.err
	}
	return err
}
