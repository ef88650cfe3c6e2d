package gcs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

var iteratorDone = iterator.Done

func (s *Store) objectName(key string) string {
	if key == "" {
		return "gs://" + s.name
	}
	return "gs://" + s.name + "/" + key
}

// accessHint says what to fix when access was refused: the roles, named.
func (s *Store) accessHint(err error) string {
	var ae *auth.Error
	if errors.As(err, &ae) {
		if s.method == MethodKey {
			return "the service-account key was refused: check that it is not deleted or disabled (gcloud iam service-accounts keys list --iam-account " + s.identity + ")"
		}
		return "no usable Google token: " + identityHint
	}
	who := "the identity"
	if s.identity != "" {
		who = s.identity
	}
	in := ""
	if s.project != "" {
		in = " (project " + s.project + ")"
	}
	return fmt.Sprintf("grant %s roles/storage.objectAdmin on bucket %s%s (create, read, list and delete objects), and roles/storage.legacyBucketReader (storage.buckets.get) for the access check; check SNAPSHOT_GCS_BUCKET", who, s.name, in)
}

// classify turns err, from doing op ("reading", "listing", ...) on key,
// into an error wrapping the sentinel its cause calls for, worded "gcs:
// <op> gs://<bucket>/<key>: ...". Key "" is a request about the bucket
// itself: there a 404 means the bucket is missing (access) rather than
// the object. A cancelled ctx wins over err, so that errors.Is(err,
// context.Canceled) holds.
func (s *Store) classify(ctx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	where := s.objectName(key)
	if ctx.Err() != nil {
		return fmt.Errorf("gcs: %s %s: %w", op, where, store.ContextError(ctx))
	}
	if errors.Is(err, store.ErrAccess) || errors.Is(err, store.ErrTransfer) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
		return err
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		if ae.Response != nil && ae.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: gcs: %s %s: Google's token service failed: %s", store.ErrTransfer, op, where, oneLine(ae.Error()))
		}
		return fmt.Errorf("%w: gcs: %s %s with %s: no token: %s; %s", store.ErrAccess, op, where, s.method, oneLine(tokenError(ae)), s.accessHint(err))
	}
	switch {
	case errors.Is(err, storage.ErrBucketNotExist):
		return fmt.Errorf("%w: gcs: %s %s: bucket %q does not exist: create it, or fix SNAPSHOT_GCS_BUCKET", store.ErrAccess, op, where, s.name)
	case errors.Is(err, storage.ErrObjectNotExist):
		return fmt.Errorf("%w: gcs: %s %s: no such object", store.ErrNotFound, op, where)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return store.WithRequestID(s.responseError(op, key, where, ge), ge.Header.Get("X-Guploader-Uploadid"), "")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Errorf("%w: gcs: %s %s: %s does not resolve: check SNAPSHOT_GCS_ENDPOINT", store.ErrAccess, op, where, dnsErr.Name)
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("%w: gcs: %s %s: the TLS certificate of %s is not trusted: %v", store.ErrAccess, op, where, s.endpointName(), certErr.Err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: gcs: %s %s: no answer from %s in time, retries included: %v", store.ErrTransfer, op, where, s.endpointName(), err)
	}
	return fmt.Errorf("%w: gcs: %s %s at %s, retries included: %v", store.ErrTransfer, op, where, s.endpointName(), err)
}

func (s *Store) responseError(op, key, where string, ge *googleapi.Error) error {
	detail := fmt.Sprintf("%d %s", ge.Code, oneLine(ge.Message))
	switch {
	case ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden:
		return fmt.Errorf("%w: gcs: %s %s with %s: %s", store.ErrAccess, op, where, s.method, detail)
	case ge.Code == http.StatusNotFound && key == "":
		return fmt.Errorf("%w: gcs: %s %s: bucket %q does not exist at %s (%s): create it, or fix SNAPSHOT_GCS_BUCKET", store.ErrAccess, op, where, s.name, s.endpointName(), detail)
	case ge.Code == http.StatusNotFound:
		return fmt.Errorf("%w: gcs: %s %s: %s", store.ErrNotFound, op, where, detail)
	case ge.Code == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: gcs: %s %s: the precondition failed (%s)", store.ErrExists, op, where, detail)
	case ge.Code == http.StatusRequestTimeout || ge.Code == http.StatusTooManyRequests || ge.Code >= 500:
		return fmt.Errorf("%w: gcs: %s %s: %s, still after retries", store.ErrTransfer, op, where, detail)
	case ge.Code == http.StatusBadRequest && key == "":
		return fmt.Errorf("%w: gcs: %s %s: %s: check SNAPSHOT_GCS_BUCKET", store.ErrAccess, op, where, detail)
	}
	// Neither access nor transfer: a bug or an unexpected answer,
	// reported as is (exit 1).
	return fmt.Errorf("gcs: %s %s: unexpected answer %s", op, where, detail)
}

func (s *Store) endpointName() string {
	if s.endpoint != "" {
		return s.endpoint
	}
	return "storage.googleapis.com"
}

// tokenError is what the token service said, without the request it
// answered (which, for a key, is a signed assertion).
func tokenError(ae *auth.Error) string {
	if ae.Response != nil {
		msg := fmt.Sprintf("the token service answered %d", ae.Response.StatusCode)
		if len(ae.Body) > 0 && len(ae.Body) < 512 {
			msg += ": " + string(ae.Body)
		}
		return msg
	}
	return ae.Error()
}

func status(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isPrecondition(err error) bool { return status(err) == http.StatusPreconditionFailed }

// retryable tells whether a failed request of the job's own retry loop
// (single-request uploads) may be tried again.
func retryable(err error) bool {
	code := status(err)
	var ne net.Error
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return true
	case code != 0:
		return false
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return storage.ShouldRetry(err)
}

// oneLine flattens multi-line messages for a one-line log.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
