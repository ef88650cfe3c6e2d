// Package store defines what the job needs of a snapshot store.
//
// Each provider lives in its own sub-package (file, s3, azblob) and
// implements Store. Providers translate their own failures into the
// sentinel errors below so that the command can turn them into exit codes
// without knowing which provider produced them.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Sentinel errors. Providers wrap them with %w and add what happened,
// naming the bucket, key or endpoint involved.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: Put refused to replace an existing object.
	ErrExists = errors.New("object already exists")
	// ErrAccess: credentials rejected, access denied, or the bucket or
	// container does not exist. Retrying does not help.
	ErrAccess = errors.New("storage access denied")
	// ErrTransfer: the store could not be reached or kept failing after
	// retries (network, 5xx, timeouts). Retrying later may help.
	ErrTransfer = errors.New("transfer failed")
)

// Object describes a stored object.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Access is what a run needs of a store: reading verbs (restore, verify,
// list) must work on a store mounted read-only or with read-only
// credentials.
type Access int

const (
	// Read: list and read objects.
	Read Access = iota + 1
	// Write: also create and delete objects.
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("access(%d)", int(a))
}

// PutOptions tune one Put.
type PutOptions struct {
	// SizeHint is an upper estimate of the bytes that will be read, or -1
	// when unknown. Providers with a part-count limit raise their part size
	// from it.
	SizeHint int64
	// Concurrency is the number of parts in flight, and PartSize the part
	// size before PartSize raises it for SizeHint, as the command planned
	// them within its memory limit. Zero keeps the store's own.
	Concurrency int
	PartSize    int64
	// Metadata is stored with the object where the provider supports it.
	// Keys are lower-case ASCII words joined by '-'.
	Metadata map[string]string
}

// Store is a flat namespace of immutable objects.
//
// Keys use '/' as separator. Prefixes passed to List are empty or end in '/'.
type Store interface {
	// Check verifies, before any work starts, that the store exists and the
	// credentials are accepted for access. It returns an error wrapping
	// ErrAccess or ErrTransfer. Checking Read never writes anything.
	Check(ctx context.Context, access Access) error

	// Put stores everything read from r under key and returns the number of
	// bytes stored. The object becomes visible only once complete: if r
	// fails, ctx is cancelled or the store fails, nothing is left behind,
	// not even billed leftovers. Put never replaces an existing object; it
	// returns an error wrapping ErrExists instead.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (int64, error)

	// Get opens key for reading. The reader may fetch ahead; Close releases
	// it. A missing key gives an error wrapping ErrNotFound. Errors from the
	// returned reader wrap ErrTransfer when the store failed.
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)

	// List returns every object whose key starts with prefix, in any order.
	List(ctx context.Context, prefix string) ([]Object, error)

	// Delete removes the given keys. Deleting a missing key is not an error.
	Delete(ctx context.Context, keys []string) error

	// String names the store for logs, e.g. "s3://bucket (eu-west-1)".
	// It never includes secrets.
	String() string
}

// PartLimits are a provider's bounds on the parts of one object. Zero
// fields mean no bound.
type PartLimits struct {
	MaxParts    int64
	MinPartSize int64
	MaxPartSize int64
}

// PartSize applies PartSize with these limits.
func (l PartLimits) PartSize(estimate, configured int64) int64 {
	return PartSize(estimate, l.MaxParts, l.MinPartSize, l.MaxPartSize, configured)
}

// PartSize is the one rule for the part size of an upload of about
// estimate bytes (<= 0: unknown): configured, raised so that estimate plus
// a 10 % margin (files that grow during the backup, framing beyond the
// estimate) fits in partLimit parts, rounded up to a whole MiB and
// kept within [minPart, maxPart]. A zero partLimit or maxPart is no bound.
// Providers' Put and the command's memory plan both call it, so that the
// memory planned is the memory used.
func PartSize(estimate, partLimit, minPart, maxPart, configured int64) int64 {
	size := configured
	if estimate > 0 && partLimit > 0 {
		need := estimate + estimate/10
		size = max(size, (need+partLimit-1)/partLimit)
	}
	const mib = 1 << 20
	size = (size + mib - 1) / mib * mib
	size = max(size, minPart)
	if maxPart > 0 {
		size = min(size, maxPart)
	}
	return size
}
