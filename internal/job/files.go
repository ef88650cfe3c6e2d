package job

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/ranged"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// fileLine is one line of the files verb's JSON lines output.
type fileLine struct {
	Path  string    `json:"path"`
	Type  string    `json:"type"`
	Size  int64     `json:"size"`
	Mode  string    `json:"mode"` // octal, as ls and chmod write it
	MTime time.Time `json:"mtime"`
	Link  string    `json:"link,omitempty"`
}

// Files prints the entries of one snapshot from its index, which it reads
// from the end of the object with ranged reads: a text table, or one JSON
// object per line when asJSON. A snapshot without an index is read whole,
// and the log says so.
func (r *Runner) Files(ctx context.Context, asJSON bool) (Result, error) {
	start := time.Now()
	res := Result{Verb: "files"}
	if err := r.Store.Check(ctx, store.Read); err != nil {
		return res, err
	}
	obj, err := r.object(ctx)
	if err != nil {
		return res, err
	}
	res.Key = obj.Key
	out := bufio.NewWriterSize(r.Stdout, 64<<10)
	var print func(*archive.Entry) error
	if asJSON {
		enc := json.NewEncoder(out)
		print = func(e *archive.Entry) error {
			return enc.Encode(fileLine{Path: e.Name, Type: e.TypeName(), Size: e.Size, Mode: fmt.Sprintf("%04o", e.Mode), MTime: e.ModTime.UTC(), Link: e.Link})
		}
	} else {
		// Fixed columns rather than a tabwriter, which would hold every
		// line of a million-entry snapshot until the end.
		fmt.Fprintf(out, "%-8s  %-4s  %14s  %-20s  %s\n", "TYPE", "MODE", "SIZE", "MTIME", "PATH")
		print = func(e *archive.Entry) error {
			name := printable(e.Name)
			if e.Type == tar.TypeSymlink || e.Type == tar.TypeLink {
				name += " -> " + printable(e.Link)
			}
			_, err := fmt.Fprintf(out, "%-8s  %04o  %14d  %-20s  %s\n", e.TypeName(), e.Mode, e.Size, e.ModTime.UTC().Format(time.RFC3339), name)
			return err
		}
	}
	rg, ranger, size, err := r.ranger(ctx, obj)
	if err != nil {
		return res, err
	}
	var n int64
	ix, err := archive.OpenIndex(ctx, ranger, size)
	indexed := err == nil
	switch {
	case err == nil:
		n, err = ix.Entries(ctx, print)
	case errors.Is(err, archive.ErrNoIndex):
		r.Log.Warn("the snapshot has no index (an earlier version wrote it): reading all of it to list its files", "key", obj.Key, "bytes", obj.Size)
		n, err = r.streamFiles(ctx, obj.Key, &rg.read, print)
	}
	if err == nil {
		err = out.Flush()
	}
	res.ObjectBytes = rg.read.Load()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("listing the files of %s: %w", obj.Key, err)
	}
	res.Outcome = fmt.Sprintf("%d entries", n)
	res.Entries = n
	r.Log.Info("listed the files of a snapshot", "key", obj.Key, "entries", n, "indexed", indexed,
		"bytes_fetched", res.ObjectBytes, "object_bytes", obj.Size, "seconds", time.Since(start).Seconds())
	return res, nil
}

func (r *Runner) streamFiles(ctx context.Context, key string, read *atomic.Int64, print func(*archive.Entry) error) (int64, error) {
	rc, _, err := r.openKey(ctx, key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	st, err := archive.StreamEntries(ctx, counter{rc, read}, archive.VerifyOptions{Logger: r.Log}, print)
	return st.Entries(), err
}

// object resolves SNAPSHOT_RESTORE_KEY to the object and its size, which
// the ranged reads from its end need, without reading any of it.
func (r *Runner) object(ctx context.Context) (store.Object, error) {
	if r.Config.Restore.Key == "latest" {
		snaps, err := r.snapshots(ctx)
		if err != nil {
			return store.Object{}, err
		}
		if len(snaps) == 0 {
			_, err := r.resolve(ctx) // words the error as restore does
			return store.Object{}, err
		}
		return snaps[0], nil
	}
	key := r.Config.Restore.Key
	dir := ""
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		dir = key[:i+1]
	}
	objs, err := r.Store.List(ctx, dir)
	if err != nil {
		return store.Object{}, err
	}
	for _, o := range objs {
		if o.Key == key {
			return o, nil
		}
	}
	return store.Object{}, fmt.Errorf("%w: %s in %s", ErrKeyNotFound, path.Base(key), r.Store)
}

// storeRanger reads ranges of one object and counts the bytes fetched. A
// range longer than partSize (a partial restore's run of frames) is
// fetched as parts, up to concurrency at once, as a full restore's Get
// is, so that one large folder is not held to one connection's pace.
type storeRanger struct {
	s           store.Store
	key         string
	partSize    int64
	concurrency int
	read        atomic.Int64
}

func (g *storeRanger) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	if g.partSize > 0 && g.concurrency > 1 && n > g.partSize {
		rc = ranged.NewReader(ctx, n, g.partSize, g.concurrency, func(ctx context.Context, o, m int64) (io.ReadCloser, error) {
			return g.s.GetRange(ctx, g.key, off+o, m)
		})
	} else {
		var err error
		if rc, err = g.s.GetRange(ctx, g.key, off, n); err != nil {
			return nil, err
		}
	}
	return struct {
		io.Reader
		io.Closer
	}{counter{rc, &g.read}, rc}, nil
}

// ranger serves ranges of the tar+zstd stream of obj: the object's own,
// or, for an encrypted snapshot, its plaintext's through age's 64 KiB
// chunks, each authenticated on its own. rg counts the bytes fetched.
func (r *Runner) ranger(ctx context.Context, obj store.Object) (*storeRanger, archive.Ranger, int64, error) {
	rg := &storeRanger{s: r.Store, key: obj.Key, partSize: int64(r.Config.PartSize), concurrency: r.Config.UploadConcurrency}
	if !snapname.Encrypted(obj.Key) {
		return rg, rg, obj.Size, nil
	}
	ids, err := r.identities()
	if err != nil {
		return nil, nil, 0, err
	}
	plain, n, err := archive.DecryptRanger(ctx, rg, obj.Size, ids)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("opening %s: %w", obj.Key, err)
	}
	return rg, plain, n, nil
}

// printable quotes a name that holds control characters, which would
// break the table's lines.
func printable(s string) string {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}
