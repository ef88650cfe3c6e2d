// Package azblob stores snapshots in Azure Blob Storage as block blobs.
//
// Blocks are staged in parallel and committed in one Put Block List at the
// end, so a snapshot becomes visible only when complete; the commit is
// conditional (If-None-Match: *) so an existing blob is never replaced.
// Downloads use the shared ranged reader.
package azblob

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/ranged"
	"github.com/snapshot-job/snapshot-job/internal/stall"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Credential methods, as CredentialMethod reports them.
const (
	MethodSharedKey    = "shared key"
	MethodDefaultAzure = "default azure credential"
)

// Options tune a Store.
type Options struct {
	// PartSize is the block size (SNAPSHOT_PART_SIZE); Put raises it for
	// the size hint (store.PartSize with Limits). It is also the range
	// size of downloads.
	PartSize int64
	// Concurrency is the number of blocks in flight during Put (unless
	// PutOptions.Concurrency says) and of ranges in flight during Get
	// (SNAPSHOT_UPLOAD_CONCURRENCY).
	Concurrency int
	// Logger receives the credential method and cleanup warnings.
	Logger *slog.Logger
	// Version is the tool's version, stored in each blob's metadata.
	Version string
	// StallTimeout drops a connection on which no byte moved in either
	// direction for this long (SNAPSHOT_IO_TIMEOUT); the request is then
	// retried. Zero means DefaultStallTimeout.
	StallTimeout time.Duration
}

// DefaultStallTimeout is SNAPSHOT_IO_TIMEOUT's default.
const DefaultStallTimeout = 60 * time.Second

// Store is an Azure Blob container used as an store.Store.
type Store struct {
	account     string
	container   string
	endpoint    string // service URL without trailing '/'
	custom      bool   // endpoint came from SNAPSHOT_AZBLOB_ENDPOINT
	method      string
	client      *container.Client
	log         *slog.Logger
	partSize    int64
	concurrency int
	version     string
	tier        *blob.AccessTier
	tm          timing
	listPage    int32 // names per List page; 0 = the service's (5,000)
}

var _ store.Store = (*Store)(nil)

// timing bounds every request. A dead endpoint must end as ErrTransfer
// in bounded time rather than hang the Job until activeDeadlineSeconds.
type timing struct {
	retryDelay    time.Duration // first retry delay; doubles (±20% jitter)
	maxRetryDelay time.Duration
	retries       int32 // SDK retries after the first try

	checkTry     time.Duration // per try of Check
	checkRetries int32
	controlTry   time.Duration // per try of small requests (properties, list, delete)
	commitTry    time.Duration // per try of Put Block List (up to 50,000 IDs)
	dataTry      time.Duration // per try of a block or range: this plus its bytes at minRate
	minRate      float64       // bytes per second a block or range must at least move at
	rangeRetries int32         // SDK retries of a range; the ranged reader retries too
	cleanup      time.Duration // budget for discarding staged blocks after a failure
	cancelGrace  time.Duration // blocks in flight may finish this long after a cancellation
}

func defaultTiming() timing {
	return timing{
		retryDelay:    time.Second,
		maxRetryDelay: 10 * time.Second,
		retries:       3,
		checkTry:      15 * time.Second,
		checkRetries:  2,
		controlTry:    30 * time.Second,
		commitTry:     2 * time.Minute,
		dataTry:       30 * time.Second,
		minRate:       512 << 10,
		rangeRetries:  1,
		cleanup:       15 * time.Second,
		cancelGrace:   10 * time.Second,
	}
}

// New prepares a store for cfg. It does no network I/O; Check does.
// Settings that cannot work give an error wrapping config.ErrInvalid.
func New(ctx context.Context, cfg config.Azure, opts Options) (*Store, error) {
	return newStore(ctx, cfg, opts, nil)
}

// newStore is New with the HTTP transport replaceable, so that tests can
// keep every request (IMDS probes, token requests) on the loopback.
func newStore(_ context.Context, cfg config.Azure, opts Options, transport policy.Transporter) (*Store, error) {
	s := &Store{
		account:     strings.TrimSpace(cfg.Account),
		container:   strings.TrimSpace(cfg.Container),
		log:         opts.Logger,
		partSize:    opts.PartSize,
		concurrency: opts.Concurrency,
		version:     opts.Version,
		tm:          defaultTiming(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.partSize <= 0 {
		s.partSize = DefaultBlockSize
	}
	s.partSize = min(s.partSize, MaxBlockSize)
	if s.concurrency < 1 {
		s.concurrency = 4
	}
	if s.account == "" {
		return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_STORAGE_ACCOUNT is required with SNAPSHOT_CLOUD_PROVIDER=azblob", config.ErrInvalid)
	}
	if !validContainer(s.container) {
		return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_CONTAINER %q is not a container name: use 3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit", config.ErrInvalid, s.container)
	}
	var err error
	if s.endpoint, err = serviceURL(s.account, cfg.Endpoint); err != nil {
		return nil, err
	}
	s.custom = strings.TrimSpace(cfg.Endpoint) != ""
	if cfg.AccessTier != "" {
		s.tier = to.Ptr(blob.AccessTier(cfg.AccessTier))
	}
	if transport == nil {
		stall := opts.StallTimeout
		if stall <= 0 {
			stall = DefaultStallTimeout
		}
		transport = newHTTPClient(s.concurrency, stall)
	}
	clientOpts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: transport,
		Retry:     s.retryOptions(s.tm.controlTry, s.tm.retries),
		Telemetry: policy.TelemetryOptions{ApplicationID: "snapshot-job"},
	}}
	containerURL := s.endpoint + "/" + url.PathEscape(s.container)
	if key := strings.TrimSpace(cfg.StorageKey.Reveal()); key != "" {
		cred, err := container.NewSharedKeyCredential(s.account, key)
		if err != nil {
			// The SDK's message would quote nothing secret, but say
			// plainly what is wrong instead.
			return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_STORAGE_KEY is not a storage account key (expected base64, as the portal shows it)", config.ErrInvalid)
		}
		s.method = MethodSharedKey
		s.client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, clientOpts)
		if err != nil {
			return nil, fmt.Errorf("%w: azure blob client: %v", config.ErrInvalid, err)
		}
	} else {
		if strings.HasPrefix(s.endpoint, "http://") {
			return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT uses http, and Azure identities send tokens only over https: use an https endpoint or set SNAPSHOT_AZBLOB_STORAGE_KEY", config.ErrInvalid)
		}
		dac, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: azcore.ClientOptions{Transport: transport},
		})
		if err != nil {
			// e.g. AZURE_TOKEN_CREDENTIALS names no credential type.
			return nil, fmt.Errorf("%w: Azure identity settings: %s", config.ErrInvalid, oneLine(err.Error()))
		}
		s.method = MethodDefaultAzure
		s.client, err = container.NewClient(containerURL, taggedCredential{dac}, clientOpts)
		if err != nil {
			return nil, fmt.Errorf("%w: azure blob client: %v", config.ErrInvalid, err)
		}
	}
	s.log.Info("azure blob storage", "account", s.account, "container", s.container, "endpoint", s.endpoint, "credential", s.method)
	return s, nil
}

// containerRE is Azure's container naming rule; checking it here turns a
// confusing 400 from the service into a configuration error.
var containerRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

func validContainer(name string) bool {
	return name == "$root" || containerRE.MatchString(name)
}

func serviceURL(account, endpoint string) (string, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "https://" + account + ".blob.core.windows.net", nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		// The value itself is not echoed: it may carry a SAS token.
		return "", fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT is not a service URL: use https://<account>.blob.core.windows.net (or the sovereign cloud's or private endpoint's name), or http://127.0.0.1:10000/<account> for Azurite", config.ErrInvalid)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT %s://%s must not carry credentials, a query (SAS tokens are not supported) or a fragment", config.ErrInvalid, u.Scheme, u.Host)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

// newHTTPClient is the SDK's default transport with the pool sized for the
// blocks in flight (the default keeps 2 idle connections per host, which
// would open a new TLS connection for most blocks) and HTTP/1.1 only:
// parallel blocks want parallel TCP connections, not one multiplexed one.
// It clones net/http's default so proxies and SSL_CERT_FILE still apply.
func newHTTPClient(concurrency int, idle time.Duration) *http.Client {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	t.DialContext = stall.Dialer((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext, idle)
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.MaxIdleConnsPerHost = 2*concurrency + 4
	t.MaxIdleConns = 2*concurrency + 16
	t.IdleConnTimeout = 90 * time.Second
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.MinVersion = tls.VersionTLS12
	return &http.Client{Transport: t}
}

func (s *Store) retryOptions(try time.Duration, retries int32) policy.RetryOptions {
	if retries == 0 {
		retries = -1 // azcore reads 0 as "default (3)"
	}
	return policy.RetryOptions{
		MaxRetries:    retries,
		TryTimeout:    try,
		RetryDelay:    s.tm.retryDelay,
		MaxRetryDelay: s.tm.maxRetryDelay,
	}
}

func (s *Store) withRetry(ctx context.Context, try time.Duration, retries int32) context.Context {
	return policy.WithRetryOptions(ctx, s.retryOptions(try, retries))
}

func (s *Store) control(ctx context.Context) context.Context {
	return s.withRetry(ctx, s.tm.controlTry, s.tm.retries)
}

// data bounds one try of moving n bytes: a fixed allowance plus the time
// the bytes take at the minimum rate, so a slow link is not cut off while
// a stalled connection is.
func (s *Store) data(ctx context.Context, n int64, retries int32) context.Context {
	try := s.tm.dataTry + time.Duration(float64(n)/s.tm.minRate*float64(time.Second))
	return s.withRetry(ctx, try, retries)
}

// CredentialMethod is "shared key" or "default azure credential".
func (s *Store) CredentialMethod() string { return s.method }

// String names the store for logs; it never includes secrets.
func (s *Store) String() string {
	if s.custom {
		return fmt.Sprintf("azblob://%s/%s (%s)", s.account, s.container, s.endpoint)
	}
	return fmt.Sprintf("azblob://%s/%s", s.account, s.container)
}

// Check reads the container's properties: it proves the container exists
// and the credentials are accepted before any work starts, for either
// access (no request proves write permission without writing).
func (s *Store) Check(ctx context.Context, _ store.Access) error {
	_, err := s.client.GetProperties(s.withRetry(ctx, s.tm.checkTry, s.tm.checkRetries), nil)
	if err != nil {
		return s.fail(ctx, "checking access to", "", err)
	}
	return nil
}

// Get opens key for reading with parallel ranged downloads.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, store.Object, error) {
	bc := s.client.NewBlobClient(key)
	p, err := bc.GetProperties(s.control(ctx), nil)
	if err != nil {
		return nil, store.Object{}, s.fail(ctx, "reading", key, err)
	}
	if p.AccessTier != nil && blob.AccessTier(*p.AccessTier) == blob.AccessTierArchive {
		return nil, store.Object{}, fmt.Errorf("%w: blob %q in container %q of storage account %q is in the Archive tier: rehydrate it (set its tier to Hot or Cool and wait) before reading it", store.ErrAccess, key, s.container, s.account)
	}
	obj := store.Object{Key: key, Size: deref(p.ContentLength), Modified: deref(p.LastModified)}
	// If-Match pins every range to the version whose size was read.
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: p.ETag}}
	fetch := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		resp, err := bc.DownloadStream(s.data(ctx, n, s.tm.rangeRetries), &blob.DownloadStreamOptions{
			Range:            blob.HTTPRange{Offset: off, Count: n},
			AccessConditions: cond,
		})
		if err != nil {
			return nil, s.fail(ctx, "downloading", key, err)
		}
		return resp.Body, nil
	}
	return ranged.NewReader(ctx, obj.Size, s.partSize, s.concurrency, fetch), obj, nil
}

// List returns every blob under prefix, following continuation markers.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Metadata: true}}
	if s.listPage > 0 {
		opts.MaxResults = &s.listPage
	}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	pager := s.client.NewListBlobsFlatPager(opts)
	var objs []store.Object
	for pager.More() {
		page, err := pager.NextPage(s.control(ctx))
		if err != nil {
			return nil, s.fail(ctx, "listing", prefix+"*", err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil || item.Properties == nil || discardMarked(item.Metadata) {
				continue
			}
			objs = append(objs, store.Object{
				Key:      *item.Name,
				Size:     deref(item.Properties.ContentLength),
				Modified: deref(item.Properties.LastModified),
			})
		}
	}
	return objs, nil
}

// Delete removes keys one by one; retention deletes a handful per run.
func (s *Store) Delete(ctx context.Context, keys []string) error {
	for _, key := range keys {
		_, err := s.client.NewBlobClient(key).Delete(s.control(ctx), &blob.DeleteOptions{
			DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude),
		})
		if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
			return s.fail(ctx, "deleting", key, err)
		}
	}
	return nil
}

// Metadata returns a blob's metadata with the keys PutOptions used.
func (s *Store) Metadata(ctx context.Context, key string) (map[string]string, error) {
	p, err := s.client.NewBlobClient(key).GetProperties(s.control(ctx), nil)
	if err != nil {
		return nil, s.fail(ctx, "reading", key, err)
	}
	return metadataFromAzure(p.Metadata), nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// taggedCredential marks token failures so that they map to ErrAccess
// rather than to a transfer failure.
type taggedCredential struct{ cred azcore.TokenCredential }

func (c taggedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.cred.GetToken(ctx, opts)
	if err != nil {
		return tok, &credentialError{err: err}
	}
	return tok, nil
}

type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

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

// fail turns an SDK error into one that wraps the upload sentinel its
// cause calls for, naming what was being done and where.
func (s *Store) fail(ctx context.Context, op, key string, err error) error {
	where := s.where(key)
	if ctx.Err() != nil {
		return fmt.Errorf("azblob: %s %s: %w", op, where, ctxErr(ctx))
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
		return withRequestID(s.responseError(op, key, where, re), id)
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

// requestError carries Azure's x-ms-request-id of a failed request out of
// the message and into store.RequestIDs, which the command logs in a
// field of its own.
type requestError struct {
	err       error
	requestID string
}

var _ store.RequestIdentifier = (*requestError)(nil)

func withRequestID(err error, id string) error {
	if id == "" {
		return err
	}
	return &requestError{err: err, requestID: id}
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// RequestIDs implements store.RequestIdentifier; Azure has no host id.
func (e *requestError) RequestIDs() (requestID, hostID string) { return e.requestID, "" }

// ctxErr is ctx's error together with its cause (e.g. the signal that
// stopped the job), so errors.Is(err, context.Canceled) keeps holding.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// oneLine flattens the SDK's multi-line messages for a one-line log.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
