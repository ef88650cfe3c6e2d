// Package file stores snapshots as files under a directory: a second
// volume, an NFS export, or a local folder for demos and tests.
package file

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Store keeps objects as files below Root; a key's '/' separated parts
// are directories.
type Store struct {
	root string
	log  *slog.Logger
}

// New returns a store rooted at cfg.Dir; opts.Logger receives what
// pruning removes (files have no parts: the other options do not apply).
// It does not touch the filesystem; Check does.
func New(_ context.Context, cfg Config, opts store.Options) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: SNAPSHOT_FILE_DIR is required with SNAPSHOT_CLOUD_PROVIDER=file", setting.ErrInvalid)
	}
	return &Store{root: filepath.Clean(cfg.Dir), log: opts.WithDefaults().Logger}, nil
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

// checkSegments refuses names that would leave the store or name the
// same file two ways: empty, "." or ".." segments.
func checkSegments(what string, segments []string) error {
	for _, part := range segments {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%w: %s: segments between '/' must not be empty, '.' or '..'", setting.ErrInvalid, what)
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
			return "", fmt.Errorf("%w: key %q: a segment starting with %q names a file being written", setting.ErrInvalid, key, tempPrefix)
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
