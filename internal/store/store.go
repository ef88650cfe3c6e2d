// Package store defines what the job needs of a snapshot store.
//
// Each provider lives in its own sub-package (file, s3, azblob, gcs) and
// implements Store; every one is laid out alike (see storetest's package
// documentation for how to add one). Providers translate their own
// failures into the sentinel errors below so that the command can turn
// them into exit codes without knowing which provider produced them.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	// GetRange opens the n bytes of key that start at offset off, with one
	// native range request (resumed where it stopped if the body is cut).
	// The range is clipped to the object: a range partly past the end
	// gives the bytes up to the end, a range that starts at or past the
	// end gives an empty reader, and n == 0 gives an empty reader; none of
	// these is an error, so the caller checks how many bytes it got. A
	// missing key gives an error wrapping ErrNotFound (also for n == 0 and
	// for ranges past the end); a negative off or n is an error. Errors
	// from the returned reader wrap ErrTransfer when the store failed.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)

	// List returns every object whose key starts with prefix, in any order.
	List(ctx context.Context, prefix string) ([]Object, error)

	// Delete removes the given keys. Deleting a missing key is not an error.
	// Keys the store refuses to delete because a retention lock still
	// holds them (S3 Object Lock) are reported in a *LockedError; the
	// other keys are deleted all the same.
	Delete(ctx context.Context, keys []string) error

	// String names the store for logs, e.g. "s3://bucket (eu-west-1)".
	// It never includes secrets.
	String() string
}

// Locked is one object a retention lock keeps from being deleted.
type Locked struct {
	Key string
	// Until is when the lock expires; zero for a lock without an end
	// (a legal hold).
	Until time.Time
}

// LockedError is Delete's answer when some keys could not be deleted
// because a retention lock holds them. That is the store doing what it
// was set up to do, not a failure: retention counts them as kept. Other
// failures of the same Delete are in Others (nil when there were none),
// which Unwrap returns, so errors.Is on a LockedError sees only them.
type LockedError struct {
	Locked []Locked
	Others error
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("%d objects are retained by a lock", len(e.Locked))
	if e.Others != nil {
		msg += "; " + e.Others.Error()
	}
	return msg
}

func (e *LockedError) Unwrap() error { return e.Others }

// CheckRange refuses a range GetRange cannot mean.
func CheckRange(key string, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("reading %s: invalid range: offset %d, length %d", key, off, n)
	}
	return nil
}

// Options are what every provider's New takes besides its own settings.
// Zero values pick the defaults below.
type Options struct {
	// PartSize is SNAPSHOT_PART_SIZE: the part or block size of uploads
	// (Put raises it for the size hint: PartLimits.Parts) and the range
	// size of downloads.
	PartSize int64
	// Concurrency is SNAPSHOT_UPLOAD_CONCURRENCY: parts in flight during
	// an upload (unless PutOptions.Concurrency says) and ranges in flight
	// during a download.
	Concurrency int
	// Logger receives what the store does that an operator should know
	// (credentials used, cleanups); nil discards it.
	Logger *slog.Logger
	// Version is the tool's version, stored in each object's metadata.
	Version string
	// StallTimeout is SNAPSHOT_IO_TIMEOUT: a connection on which no byte
	// moved in either direction for this long is dropped, and the request
	// retried.
	StallTimeout time.Duration
}

// Defaults of Options, the same as those of the variables.
const (
	DefaultPartSize     = 16 << 20
	DefaultConcurrency  = 4
	DefaultStallTimeout = 60 * time.Second
)

// WithDefaults fills the zero fields of o with the defaults. Values that
// are set but cannot work are left to the provider to refuse or bound.
func (o Options) WithDefaults() Options {
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
