// Package upload defines what the job needs of a snapshot store.
//
// Each provider lives in its own sub-package (file, s3, azblob) and
// implements Store. Providers translate their own failures into the
// sentinel errors below so that the command can turn them into exit codes
// without knowing which provider produced them.
package upload

import (
	"context"
	"errors"
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

// PutOptions tune one Put.
type PutOptions struct {
	// SizeHint is an upper estimate of the bytes that will be read, or -1
	// when unknown. Providers with a part-count limit raise their part size
	// from it.
	SizeHint int64
	// Metadata is stored with the object where the provider supports it.
	// Keys are lower-case ASCII words joined by '-'.
	Metadata map[string]string
}

// Store is a flat namespace of immutable objects.
//
// Keys use '/' as separator. Prefixes passed to List are empty or end in '/'.
type Store interface {
	// Check verifies, before any work starts, that the store exists and the
	// credentials are accepted. It returns an error wrapping ErrAccess or
	// ErrTransfer.
	Check(ctx context.Context) error

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
