package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// classify turns err, from doing op ("reading", "listing", ...) on key,
// into an error wrapping the sentinel its cause calls for, worded "<op>
// <key>: ...": permissions and read-only mounts are access problems that
// retrying does not fix; anything else (I/O errors, a full disk, a stale
// NFS handle) may pass. Key is an object key, or a quoted prefix for a
// listing; files have no request about the store as a whole.
func (s *Store) classify(_ context.Context, op, key string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %s %s: %w%s", store.ErrAccess, op, key, err, userHint(op != "reading" && op != "listing"))
	}
	return fmt.Errorf("%w: %s %s: %w", store.ErrTransfer, op, key, err)
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
