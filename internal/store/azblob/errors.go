package azblob

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

const identityHint = "set SNAPSHOT_AZBLOB_STORAGE_KEY, or give the pod an Azure identity: workload identity (ServiceAccount annotation azure.workload.identity/client-id and pod label azure.workload.identity/use: \"true\", which set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE) or a managed identity on the node pool"

func (s *Store) where(key string) string {
	if key == "" {
		return fmt.Sprintf("container %q in storage account %q", s.container, s.account)
	}
	return fmt.Sprintf("blob %q in container %q of storage account %q", key, s.container, s.account)
}

func (s *Store) accessHint() string {
	if s.method == MethodSharedKey {
		return "check SNAPSHOT_AZBLOB_STORAGE_KEY and SNAPSHOT_AZBLOB_STORAGE_ACCOUNT"
	}
	return "grant the identity the Storage Blob Data Contributor role on the container (or the account)"
}

// classify turns err, from doing op ("reading", "listing", ...) on key,
// into an error wrapping the sentinel its cause calls for, worded "<op>
// blob <key> in container ... of storage account ...: ...". Key is a blob
// name, a prefix with "*", or "" for a request about the container
// itself. A cancelled ctx wins over err, so that errors.Is(err,
// context.Canceled) holds.
func (s *Store) classify(ctx context.Context, op, key string, err error) error {
	where := s.where(key)
	if ctx.Err() != nil {
		return fmt.Errorf("azblob: %s %s: %w", op, where, store.ContextError(ctx))
	}
	var ce *credentialError
	if errors.As(err, &ce) {
		var afe *azidentity.AuthenticationFailedError
		if errors.As(err, &afe) && afe.RawResponse != nil && afe.RawResponse.StatusCode >= 500 {
			return fmt.Errorf("%w: %s %s: the identity provider failed: %s", store.ErrTransfer, op, where, oneLine(ce.err.Error()))
		}
		return fmt.Errorf("%w: %s %s with %s: no Azure token: %s; to fix, %s", store.ErrAccess, op, where, s.method, oneLine(ce.err.Error()), identityHint)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		var id string
		if re.RawResponse != nil {
			id = re.RawResponse.Header.Get("x-ms-request-id")
		}
		return store.WithRequestID(s.responseError(op, key, where, re), id, "")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		// A typo in the account name: retrying will not help.
		return fmt.Errorf("%w: %s %s: %s does not resolve: check SNAPSHOT_AZBLOB_STORAGE_ACCOUNT and SNAPSHOT_AZBLOB_ENDPOINT", store.ErrAccess, op, where, dnsErr.Name)
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("%w: %s %s: the TLS certificate of %s is not trusted: %v", store.ErrAccess, op, where, s.endpoint, certErr.Err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s %s: no answer from %s in time, retries included: %v", store.ErrTransfer, op, where, s.endpoint, err)
	}
	return fmt.Errorf("%w: %s %s at %s, retries included: %v", store.ErrTransfer, op, where, s.endpoint, err)
}

// responseError words an answer of the service, naming the sentinel it
// calls for.
func (s *Store) responseError(op, key, where string, re *azcore.ResponseError) error {
	code := bloberror.Code(re.ErrorCode)
	detail := fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	switch {
	case code == bloberror.ContainerNotFound:
		return fmt.Errorf("%w: %s %s with %s: container %q does not exist in storage account %q at %s (%s): create it, or fix SNAPSHOT_AZBLOB_CONTAINER", store.ErrAccess, op, where, s.method, s.container, s.account, s.endpoint, detail)
	case code == bloberror.BlobNotFound || (re.StatusCode == http.StatusNotFound && key != "" && code == ""):
		return fmt.Errorf("%w: %s %s: %s", store.ErrNotFound, op, where, detail)
	case code == bloberror.BlobArchived:
		return fmt.Errorf("%w: %s %s: the blob is in the Archive tier: rehydrate it to Hot or Cool first (%s)", store.ErrAccess, op, where, detail)
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s %s with %s: %s: %s", store.ErrAccess, op, where, s.method, detail, s.accessHint())
	case re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s %s: storage account or container not found at %s (%s): check SNAPSHOT_AZBLOB_STORAGE_ACCOUNT, SNAPSHOT_AZBLOB_CONTAINER and SNAPSHOT_AZBLOB_ENDPOINT", store.ErrAccess, op, where, s.endpoint, detail)
	case re.StatusCode == http.StatusRequestTimeout || re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
		return fmt.Errorf("%w: %s %s: %s, still after retries", store.ErrTransfer, op, where, detail)
	default:
		// Neither access nor transfer: a bug or an unexpected service
		// answer, reported as is (exit 1).
		return fmt.Errorf("azblob: %s %s: unexpected answer %s", op, where, detail)
	}
}

// oneLine flattens the SDK's multi-line messages for a one-line log.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
