// Package file stores snapshots as files under a directory: a second
// volume, an NFS export, or a local folder for demos and tests.
package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// A file being written is named tempPrefix + the final base name + "-" +
// tokenLen random hex digits, in the final file's directory. List hides
// such names and they never match a snapshot name, so a reader never
// sees a partial snapshot; the base name in it tells pruning which key a
// partial left by a killed run belonged to.
const (
	tempPrefix = ".partial-"
	tokenLen   = 16
)

// Limits: files have no parts; Put streams with a small copy buffer.
func Limits() store.PartLimits { return store.PartLimits{} }

// Store keeps objects as files below Root; a key's '/' separated parts
// are directories.
type Store struct {
	root string
	log  *slog.Logger
}

// New returns a store rooted at dir; log (nil: none) receives what
// pruning removes. It does not touch the filesystem; Check does.
func New(dir string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{root: filepath.Clean(dir), log: log}
}

func (s *Store) String() string { return "file://" + s.root }

// Check verifies that the root is a directory the job can list and, for
// Write, create files in. Checking Read writes nothing, so that restores
// work from a store mounted read-only.
func (s *Store) Check(ctx context.Context, access store.Access) error {
	fi, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("%w: store directory %s: %w (create it, or fix SNAPSHOT_FILE_DIR)", store.ErrAccess, s.root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: store directory %s is not a directory", store.ErrAccess, s.root)
	}
	d, err := os.Open(s.root)
	if err == nil {
		_, err = d.ReadDir(1)
		d.Close()
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("%w: store directory %s is not readable: %w%s", store.ErrAccess, s.root, err, userHint(false))
	}
	if access != store.Write {
		return nil
	}
	f, name, err := createTemp(s.root, "check")
	if err != nil {
		return fmt.Errorf("%w: store directory %s is not writable: %w%s", store.ErrAccess, s.root, err, userHint(true))
	}
	f.Close()
	return os.Remove(name)
}

// userHint names the job's user in permission errors: the operator fixes
// them with the pod's runAsUser, fsGroup or the volume's modes.
func userHint(write bool) string {
	h := fmt.Sprintf(" (the job runs as uid %d, gid %d: check the volume's owner and modes, or the pod's fsGroup", os.Geteuid(), os.Getegid())
	if write {
		h += "; a read-only store serves restore, verify and list only"
	}
	return h + ")"
}

// checkSegments refuses names that would leave the store or name the
// same file two ways: empty, "." or ".." segments.
func checkSegments(what string, segments []string) error {
	for _, part := range segments {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%w: %s: segments between '/' must not be empty, '.' or '..'", config.ErrInvalid, what)
		}
	}
	return nil
}

func checkKey(key string) error {
	return checkSegments(fmt.Sprintf("key %q", key), strings.Split(key, "/"))
}

// checkPrefix accepts "" and '/'-separated segments with an optional
// trailing '/'.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return checkSegments(fmt.Sprintf("prefix %q", prefix), strings.Split(strings.TrimSuffix(prefix, "/"), "/"))
}

func (s *Store) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	for _, part := range strings.Split(key, "/") {
		if strings.HasPrefix(part, tempPrefix) {
			return "", fmt.Errorf("%w: key %q: a segment starting with %q names a file being written", config.ErrInvalid, key, tempPrefix)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// dir is the directory of prefix.
func (s *Store) dir(prefix string) (string, error) {
	if err := checkPrefix(prefix); err != nil {
		return "", err
	}
	if prefix == "" {
		return s.root, nil
	}
	return filepath.Join(s.root, filepath.FromSlash(strings.TrimSuffix(prefix, "/"))), nil
}

// createTemp creates the partial file of base in dir, with mode 0666 so
// that the umask decides, as for any file a program creates (the
// snapshot's readers may be other users: os.CreateTemp's 0600 would
// shut them out). It returns the file and its path.
func createTemp(dir, base string) (*os.File, string, error) {
	for range 100 {
		b := make([]byte, tokenLen/2)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		name := filepath.Join(dir, tempPrefix+base+"-"+hex.EncodeToString(b))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", fmt.Errorf("no free temporary name in %s", dir)
}

// partialBase returns the final base name a partial file belongs to.
func partialBase(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok || len(rest) < tokenLen+2 || rest[len(rest)-tokenLen-1] != '-' {
		return "", false
	}
	if _, err := hex.DecodeString(rest[len(rest)-tokenLen:]); err != nil {
		return "", false
	}
	return rest[:len(rest)-tokenLen-1], true
}

// Put writes r to a temporary file beside the final name, syncs it, and
// then hard-links it into place: link(2) fails if the name exists, so an
// existing snapshot is never replaced, even by a concurrent job. Where the
// filesystem has no hard links, it falls back to a check and a rename.
// A run killed mid-Put leaves its temporary file; pruning removes it
// after a day (AbortIncompleteUploads).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, _ store.PutOptions) (int64, error) {
	dst, err := s.path(key)
	if err != nil {
		return 0, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("%w: %s", store.ErrExists, key)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fsErr("writing", key, err)
	}
	tmp, tmpName, err := createTemp(dir, filepath.Base(dst))
	if err != nil {
		return 0, fsErr("writing", key, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	n, err := io.Copy(fileWriter{tmp}, ctxReader{ctx, r})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return n, context.Cause(ctx)
		}
		var we *writeError
		if errors.As(err, &we) {
			return n, fsErr("writing", key, we.err)
		}
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, fsErr("writing", key, err)
	}
	if err := tmp.Close(); err != nil {
		return n, fsErr("writing", key, err)
	}
	if err := publish(tmpName, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, fmt.Errorf("%w: %s", store.ErrExists, key)
		}
		return n, fsErr("writing", key, err)
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

// fsErr classifies a filesystem error: permissions and read-only mounts
// are access problems that retrying does not fix; anything else (I/O
// errors, a full disk, a stale NFS handle) may pass.
func fsErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %s %s: %w%s", store.ErrAccess, op, key, err, userHint(op != "reading" && op != "listing"))
	}
	return fmt.Errorf("%w: %s %s: %w", store.ErrTransfer, op, key, err)
}

// Get opens the file of key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, store.Object{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, store.Object{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	if err != nil {
		return nil, store.Object{}, fsErr("reading", key, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, store.Object{}, fmt.Errorf("%w: %s is not a regular file", store.ErrNotFound, key)
	}
	return readErrs{f, key}, store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
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
		err = fsErr("reading", r.key, err)
	}
	return n, err
}

func (r readErrs) Close() error { return r.f.Close() }

// walk calls fn for each regular file under the directory of prefix with
// its key. A missing directory holds nothing.
func (s *Store) walk(ctx context.Context, prefix string, fn func(key string, d fs.DirEntry) error) error {
	start, err := s.dir(prefix)
	if err != nil {
		return err
	}
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return fs.SkipAll
			}
			return fsErr("listing", fmt.Sprintf("%q", prefix), err)
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), d)
	})
}

// List walks the directory of prefix. Temporary files are left out.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	err := s.walk(ctx, prefix, func(key string, d fs.DirEntry) error {
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		objs = append(objs, store.Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// AbortIncompleteUploads removes the temporary files under prefix that
// runs killed mid-Put left (SIGKILL, OOM, a node lost), last written
// before olderThan, whose final key match accepts (nil accepts all), and
// returns those keys. A file whose name does not parse back to a key is
// never touched.
func (s *Store) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time, match func(key string) bool) ([]string, error) {
	var removed []string
	err := s.walk(ctx, prefix, func(rel string, d fs.DirEntry) error {
		base, ok := partialBase(d.Name())
		if !ok {
			return nil
		}
		key := path.Join(path.Dir(rel), base)
		if path.Dir(rel) == "." {
			key = base
		}
		if !strings.HasPrefix(key, prefix) || (match != nil && !match(key)) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(olderThan) {
			return nil
		}
		if err := os.Remove(filepath.Join(s.root, filepath.FromSlash(rel))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fsErr("removing the incomplete upload of", key, err)
		}
		s.log.InfoContext(ctx, "removed incomplete upload", "key", key, "file", rel,
			"modified", fi.ModTime().UTC().Format(time.RFC3339))
		removed = append(removed, key)
		return nil
	})
	return removed, err
}

// Delete removes the files of keys.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, k := range keys {
		p, err := s.path(k)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fsErr("deleting", k, err)
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
