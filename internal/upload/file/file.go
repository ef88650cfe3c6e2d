// Package file stores snapshots as files under a directory: a second
// volume, an NFS export, or a local folder for demos and tests.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/snapshot-job/snapshot-job/internal/upload"
)

// tempPrefix starts the names of files being written. List hides them and
// they never match a snapshot name, so a reader never sees a partial
// snapshot.
const tempPrefix = ".partial-"

// Store keeps objects as files below Root; a key's '/' separated parts
// are directories.
type Store struct {
	root string
}

// New returns a store rooted at dir. It does not touch the filesystem;
// Check does.
func New(dir string) *Store { return &Store{root: filepath.Clean(dir)} }

func (s *Store) String() string { return "file://" + s.root }

// Check verifies that the root is a directory the job can write to.
func (s *Store) Check(ctx context.Context) error {
	fi, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("%w: store directory %s: %w (create it, or fix SNAPSHOT_FILE_DIR)", upload.ErrAccess, s.root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: store directory %s is not a directory", upload.ErrAccess, s.root)
	}
	f, err := os.CreateTemp(s.root, tempPrefix+"check-")
	if err != nil {
		return fmt.Errorf("%w: store directory %s is not writable: %w", upload.ErrAccess, s.root, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, tempPrefix) {
			return "", fmt.Errorf("invalid key %q", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put writes r to a temporary file beside the final name, syncs it, and
// then hard-links it into place: link(2) fails if the name exists, so an
// existing snapshot is never replaced, even by a concurrent job. Where the
// filesystem has no hard links, it falls back to a check and a rename.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, _ upload.PutOptions) (int64, error) {
	dst, err := s.path(key)
	if err != nil {
		return 0, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("%w: %s", upload.ErrExists, key)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, storeErr(key, err)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix)
	if err != nil {
		return 0, storeErr(key, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(fileWriter{tmp}, ctxReader{ctx, r})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return n, context.Cause(ctx)
		}
		var we *writeError
		if errors.As(err, &we) {
			return n, storeErr(key, we.err)
		}
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, storeErr(key, err)
	}
	if err := tmp.Close(); err != nil {
		return n, storeErr(key, err)
	}
	if err := publish(tmp.Name(), dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, fmt.Errorf("%w: %s", upload.ErrExists, key)
		}
		return n, storeErr(key, err)
	}
	done = true
	syncDir(dir)
	return n, nil
}

func publish(tmp, dst string) error {
	err := os.Link(tmp, dst)
	if err == nil {
		return os.Remove(tmp)
	}
	if errors.Is(err, fs.ErrExist) || !linkUnsupported(err) {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fs.ErrExist
	}
	return os.Rename(tmp, dst)
}

func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EXDEV)
}

// syncDir makes the new name durable; some filesystems (NFS) refuse
// fsync on a directory, which is not worth failing a stored snapshot for.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// ctxReader stops a copy when ctx ends, and marks write errors apart from
// read errors (io.Copy returns either).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

type writeError struct{ err error }

func (w *writeError) Error() string { return w.err.Error() }

func storeErr(key string, err error) error {
	return fmt.Errorf("%w: writing %s: %w", upload.ErrTransfer, key, err)
}

// Get opens the file of key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, upload.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, upload.Object{}, fmt.Errorf("%w: %s: %w", upload.ErrNotFound, key, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, upload.Object{}, fmt.Errorf("%w: %s", upload.ErrNotFound, key)
	}
	if err != nil {
		return nil, upload.Object{}, fmt.Errorf("%w: %s: %w", upload.ErrTransfer, key, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, upload.Object{}, fmt.Errorf("%w: %s is not a regular file", upload.ErrNotFound, key)
	}
	return readErrs{f, key}, upload.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// readErrs marks read failures as transfer errors, as a network store's
// would be.
type readErrs struct {
	f   *os.File
	key string
}

func (r readErrs) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: reading %s: %w", upload.ErrTransfer, r.key, err)
	}
	return n, err
}

func (r readErrs) Close() error { return r.f.Close() }

// List walks the directory of prefix. Temporary files are left out.
func (s *Store) List(ctx context.Context, prefix string) ([]upload.Object, error) {
	start := s.root
	if prefix != "" {
		start = filepath.Join(s.root, filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
	}
	var objs []upload.Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if strings.HasPrefix(d.Name(), tempPrefix) || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		rel, _ := filepath.Rel(s.root, p)
		objs = append(objs, upload.Object{Key: filepath.ToSlash(rel), Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: listing %s: %w", upload.ErrTransfer, start, err)
	}
	return objs, nil
}

// Delete removes the files of keys.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, k := range keys {
		p, err := s.path(k)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: deleting %s: %w", upload.ErrTransfer, k, err)
		}
	}
	return nil
}

// Leftovers lists temporary files under prefix, for tests: a failed Put
// must not leave any.
func (s *Store) Leftovers(prefix string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(s.root, filepath.FromSlash(prefix)), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}
