// Package azblob stores snapshots in Azure Blob Storage as block blobs.
//
// Blocks are staged in parallel and committed in one Put Block List at the
// end, so a snapshot becomes visible only when complete; the commit is
// conditional (If-None-Match: *) so an existing blob is never replaced.
// Downloads use the shared ranged reader.
package azblob

import (
	"context"
	"fmt"
	"log/slog"
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
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/stall"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Credential methods, as CredentialMethod reports them.
const (
	MethodSharedKey    = "shared key"
	MethodDefaultAzure = "default azure credential"
)

// Store is an Azure Blob container used as a store.Store.
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
// Settings that cannot work give an error wrapping setting.ErrInvalid.
func New(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	return newStore(ctx, cfg, opts, nil)
}

// newStore is New with the HTTP transport replaceable, so that tests can
// keep every request (IMDS probes, token requests) on the loopback.
func newStore(_ context.Context, cfg Config, opts store.Options, transport policy.Transporter) (*Store, error) {
	opts = opts.WithDefaults()
	s := &Store{
		account:     strings.TrimSpace(cfg.Account),
		container:   strings.TrimSpace(cfg.Container),
		log:         opts.Logger,
		partSize:    opts.PartSize,
		concurrency: opts.Concurrency,
		version:     opts.Version,
		tm:          defaultTiming(),
	}
	if s.partSize < 0 {
		s.partSize = store.DefaultPartSize
	}
	s.partSize = min(s.partSize, MaxBlockSize)
	if s.concurrency < 1 {
		s.concurrency = store.DefaultConcurrency
	}
	if s.account == "" {
		return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_STORAGE_ACCOUNT is required with SNAPSHOT_CLOUD_PROVIDER=azblob", setting.ErrInvalid)
	}
	if !validContainer(s.container) {
		return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_CONTAINER %q is not a container name: use 3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit", setting.ErrInvalid, s.container)
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
		transport = &http.Client{Transport: stall.Transport(s.concurrency, opts.StallTimeout)}
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
			return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_STORAGE_KEY is not a storage account key (expected base64, as the portal shows it)", setting.ErrInvalid)
		}
		s.method = MethodSharedKey
		s.client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, clientOpts)
		if err != nil {
			return nil, fmt.Errorf("%w: azure blob client: %v", setting.ErrInvalid, err)
		}
	} else {
		if strings.HasPrefix(s.endpoint, "http://") {
			return nil, fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT uses http, and Azure identities send tokens only over https: use an https endpoint or set SNAPSHOT_AZBLOB_STORAGE_KEY", setting.ErrInvalid)
		}
		dac, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: azcore.ClientOptions{Transport: transport},
		})
		if err != nil {
			// e.g. AZURE_TOKEN_CREDENTIALS names no credential type.
			return nil, fmt.Errorf("%w: Azure identity settings: %s", setting.ErrInvalid, oneLine(err.Error()))
		}
		s.method = MethodDefaultAzure
		s.client, err = container.NewClient(containerURL, taggedCredential{dac}, clientOpts)
		if err != nil {
			return nil, fmt.Errorf("%w: azure blob client: %v", setting.ErrInvalid, err)
		}
	}
	s.log.Info("azure blob storage", "account", s.account, "container", s.container, "endpoint", s.endpoint, "credential", s.method)
	return s, nil
}

// containerRule is Azure's container naming rule; checking it here turns
// a confusing 400 from the service into a configuration error.
var containerRule = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

func validContainer(name string) bool {
	return name == "$root" || containerRule.MatchString(name)
}

func serviceURL(account, endpoint string) (string, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "https://" + account + ".blob.core.windows.net", nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		// The value itself is not echoed: it may carry a SAS token.
		return "", fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT is not a service URL: use https://<account>.blob.core.windows.net (or the sovereign cloud's or private endpoint's name), or http://127.0.0.1:10000/<account> for Azurite", setting.ErrInvalid)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: SNAPSHOT_AZBLOB_ENDPOINT %s://%s must not carry credentials, a query (SAS tokens are not supported) or a fragment", setting.ErrInvalid, u.Scheme, u.Host)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
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
		return s.classify(ctx, "checking access to", "", err)
	}
	return nil
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
