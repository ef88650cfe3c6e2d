package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

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
// after a day (SweepIncomplete).
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
		return 0, s.classify(ctx, "writing", key, err)
	}
	tmp, tmpName, err := createTemp(dir, filepath.Base(dst))
	if err != nil {
		return 0, s.classify(ctx, "writing", key, err)
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
			return n, s.classify(ctx, "writing", key, we.err)
		}
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, s.classify(ctx, "writing", key, err)
	}
	if err := tmp.Close(); err != nil {
		return n, s.classify(ctx, "writing", key, err)
	}
	if err := publish(tmpName, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, fmt.Errorf("%w: %s", store.ErrExists, key)
		}
		return n, s.classify(ctx, "writing", key, err)
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
