// Package volume makes the runs that share a snapshot volume visible to
// each other through the volume itself, which is all that pods on
// different nodes have in common.
package volume

import (
	"errors"

	"github.com/snapshot-job/snapshot-job/internal/archive"
)

// ErrBusy: another run holds the volume, a restore is extracting into it
// or was interrupted while moving files in (exit 9; a retry later helps).
var ErrBusy = errors.New("volume busy")

// LockName is the lock file a restore keeps in its target directory.
const LockName = archive.ReservedPrefix + "lock"
