package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Error codes that mean the request will never succeed with these
// credentials or this bucket: retrying does not help (exit 3).
var accessCodes = map[string]bool{
	"AccessDenied":                    true,
	"AllAccessDisabled":               true,
	"AccountProblem":                  true,
	"InvalidAccessKeyId":              true,
	"SignatureDoesNotMatch":           true,
	"InvalidToken":                    true,
	"ExpiredToken":                    true,
	"TokenRefreshRequired":            true,
	"NoSuchBucket":                    true,
	"InvalidBucketName":               true,
	"PermanentRedirect":               true,
	"AuthorizationHeaderMalformed":    true,
	"InvalidClientTokenId":            true, // STS
	"InvalidIdentityToken":            true, // STS web identity
	"IDPRejectedClaim":                true, // STS web identity
	"InvalidStorageClass":             true,
	"InvalidEncryptionAlgorithmError": true,
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// redirectRegion returns the bucket's region when S3 answered that the
// bucket lives elsewhere.
func redirectRegion(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}

// classify turns err, from doing op ("reading", "listing", ...) on key,
// into an error wrapping the sentinel that says what the command should
// do about it, worded "<op> s3://<bucket>/<key>: ...". Key is an object
// key or a prefix, or "" for a request about the bucket itself: there a
// 404 means the bucket is missing (access) rather than the object (not
// found). An empty op leaves the wording to the caller. Cancellation is
// returned unchanged so that errors.Is(err, context.Canceled) keeps
// holding.
func (s *Store) classify(ctx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	err = s.sentinel(err, key == "")
	if op == "" {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, s.objectName(key), err)
}

// sentinel wraps err with the sentinel its cause calls for.
func (s *Store) sentinel(err error, bucketLevel bool) error {
	err = withRequestIDs(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrAccess) ||
		errors.Is(err, store.ErrTransfer) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
		return err
	}
	code, status := apiCode(err), httpStatus(err)
	var ne net.Error
	var ce *credentialError
	switch {
	case accessCodes[code] || strings.HasPrefix(code, "KMS.") || status == http.StatusForbidden || status == http.StatusMovedPermanently || status == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", store.ErrAccess, err)
	case status == http.StatusNotFound || code == "NoSuchKey" || code == "NotFound":
		if bucketLevel {
			return fmt.Errorf("%w: bucket %q does not exist: %w", store.ErrAccess, s.bucket, err)
		}
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case status == http.StatusPreconditionFailed || code == "PreconditionFailed" || code == "ConditionalRequestConflict":
		return fmt.Errorf("%w: %w", store.ErrExists, err)
	case untrustedServer(err):
		// Retrying cannot make the certificate trusted.
		return fmt.Errorf("%w: the server's TLS certificate is not trusted (a private CA goes in AWS_CA_BUNDLE): %w", store.ErrAccess, err)
	case status >= 500 || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", store.ErrTransfer, err)
	case errors.As(err, &ce):
		// No credentials found, an unreadable web identity token file, a
		// malformed STS answer: configuration the operator has to fix.
		return fmt.Errorf("%w: %w", store.ErrAccess, err)
	}
	return fmt.Errorf("%w: %w", store.ErrTransfer, err)
}

func untrustedServer(err error) bool {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// requestError carries the identifiers S3 gave a failed request
// (x-amz-request-id, x-amz-id-2) out of the SDK's message, where they
// take a hundred characters of the one line that says what failed, into
// store.RequestIDs, which the command logs in fields of their own.
type requestError struct {
	err               error
	requestID, hostID string
}

var _ store.RequestIdentifier = (*requestError)(nil)

// withRequestIDs wraps an error that holds an S3 (or STS) response, once.
func withRequestIDs(err error) error {
	var done *requestError
	if errors.As(err, &done) {
		return err
	}
	var s3re awss3.ResponseError // S3 answers: request and host id
	if errors.As(err, &s3re) {
		return &requestError{err: err, requestID: s3re.ServiceRequestID(), hostID: s3re.ServiceHostID()}
	}
	var re *awshttp.ResponseError // STS answers: a request id only
	if errors.As(err, &re) {
		return &requestError{err: err, requestID: re.ServiceRequestID()}
	}
	return err
}

// Error is the SDK's message without the identifiers, which the SDK
// writes as "RequestID: <id>, HostID: <id>, " (empty when the store sent
// none). Should that wording change, the message merely keeps them.
func (e *requestError) Error() string {
	msg := strings.Replace(e.err.Error(), "RequestID: "+e.requestID+", ", "", 1)
	return strings.Replace(msg, "HostID: "+e.hostID+", ", "", 1)
}

func (e *requestError) Unwrap() error { return e.err }

// RequestIDs implements store.RequestIdentifier.
func (e *requestError) RequestIDs() (requestID, hostID string) { return e.requestID, e.hostID }
