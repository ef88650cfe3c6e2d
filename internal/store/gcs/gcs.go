// Package gcs stores snapshots in Google Cloud Storage.
//
// The Go client has no multipart upload, so parallel uploads are parallel
// composite uploads: parts are stored as hidden temporary objects next to
// the snapshot, each only if its name is free, then composed (at most 32
// sources a call, in a tree for more) into the snapshot's name, only if
// that name is free, and deleted. A snapshot that fits in one part, or an
// upload with one part in flight, is a single upload instead. Downloads
// use the shared ranged reader, every range pinned to the generation
// whose size was read.
package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/httptransport"
	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/stall"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Credential methods, as CredentialMethod reports them.
const (
	MethodKey  = "service account key"
	MethodADC  = "application default credentials"
	MethodNone = "none (plain-http endpoint)"
)

// scope is the OAuth scope of every token: objects are created, read and
// deleted, nothing else.
const scope = "https://www.googleapis.com/auth/devstorage.read_write"

// Store is a Google Cloud Storage bucket used as a store.Store.
type Store struct {
	client      *storage.Client
	bucket      *storage.BucketHandle
	name        string // the bucket's
	project     string // SNAPSHOT_GCS_PROJECT, for messages only
	endpoint    string // "" for Google's own
	method      string
	identity    string // the key's client_email, for logs and hints
	checkPrefix string
	log         *slog.Logger
	partSize    int64
	concurrency int
	version     string
	tm          timing

	mu   sync.Mutex
	seen map[string]int64 // generation of each key the last List returned
}

var _ store.Store = (*Store)(nil)

// timing bounds every request: a dead endpoint ends as ErrTransfer in
// bounded time rather than hanging the Job until activeDeadlineSeconds.
type timing struct {
	attempts    int           // tries of one request, counting the first
	backoff     time.Duration // first retry delay; doubles up to maxBackoff
	maxBackoff  time.Duration
	controlTry  time.Duration // per try of small requests (attributes, list, delete, compose)
	dataTry     time.Duration // per try of a part or range: this plus its bytes at minRate
	minRate     float64       // bytes per second a part or range must at least move at
	cleanup     time.Duration // budget for deleting the temporary parts after a failure
	cancelGrace time.Duration // parts in flight may finish this long after a cancellation
}

func defaultTiming() timing {
	return timing{
		attempts:    5,
		backoff:     time.Second,
		maxBackoff:  10 * time.Second,
		controlTry:  30 * time.Second,
		dataTry:     30 * time.Second,
		minRate:     512 << 10,
		cleanup:     15 * time.Second,
		cancelGrace: 10 * time.Second,
	}
}

// New prepares a store for cfg. It sends no request to the bucket; with
// Application Default Credentials the client library looks for them
// (environment, files, the metadata server). Settings that cannot work
// give an error wrapping setting.ErrInvalid.
func New(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	opts = opts.WithDefaults()
	if p := cfg.Problems(); len(p) > 0 {
		return nil, setting.Invalid(p)
	}
	s := &Store{
		name:        cfg.Bucket,
		project:     cfg.Project,
		checkPrefix: cfg.CheckPrefix,
		log:         opts.Logger,
		partSize:    Limits().PartSize(0, opts.PartSize),
		concurrency: opts.Concurrency,
		version:     opts.Version,
		tm:          defaultTiming(),
		seen:        map[string]int64{},
	}
	if s.concurrency < 1 {
		return nil, fmt.Errorf("%w: upload concurrency %d is below 1", setting.ErrInvalid, opts.Concurrency)
	}
	ep := cfg.Endpoint
	if host := os.Getenv("STORAGE_EMULATOR_HOST"); ep == "" && host != "" {
		// The Google client's own emulator variable would redirect the
		// requests behind the job's back (with tokens, over plain HTTP):
		// take it as the endpoint instead, under the same rules.
		ep = host
		if !strings.Contains(host, "://") {
			ep = "http://" + host
		}
	}
	endpoint, plainHTTP, err := apiEndpoint(ep)
	if err != nil {
		return nil, err
	}
	base := stall.Transport(s.concurrency, opts.StallTimeout)
	hc := &http.Client{Transport: base}
	// Reads go through the JSON API too, wherever the endpoint: the XML
	// API's paths depend on the host name (emulators and proxies route
	// them by Host), so only the JSON API's reads are the ones the tests
	// run.
	clientOpts := []option.ClientOption{
		storage.WithDisabledClientMetrics(), storage.WithJSONReads(),
		option.WithUserAgent("snapshot-job/" + opts.Version), option.WithLogger(quiet),
	}
	if endpoint != "" {
		s.endpoint = strings.TrimSuffix(endpoint, "/storage/v1/")
		clientOpts = append(clientOpts, option.WithEndpoint(endpoint))
	}
	key := []byte(cfg.CredentialsJSON.Reveal())
	var creds *auth.Credentials
	if len(key) > 0 {
		var k keyFile
		_ = json.Unmarshal(key, &k) // Problems parsed it already
		// The type-checked constructor: a key of another type (a user's
		// refresh token, an external account) is refused, not used.
		creds, err = credentials.NewCredentialsFromJSON(credentials.ServiceAccount, key, &credentials.DetectOptions{
			Scopes: []string{scope}, Client: hc, Logger: quiet,
		})
		if err != nil {
			// The parser's message is not passed on: it may quote the key.
			return nil, fmt.Errorf("%w: SNAPSHOT_GCS_CREDENTIALS_JSON is not a usable service-account key (the Google client refused it): paste the whole key file", setting.ErrInvalid)
		}
		s.method, s.identity = MethodKey, k.ClientEmail
	}
	switch {
	case plainHTTP:
		// Tokens and signed assertions are never sent in the clear; an
		// emulator takes requests without them. A key, when set, was
		// still checked above, and is not used.
		s.method, s.identity, creds = MethodNone, "", nil
		clientOpts = append(clientOpts, option.WithoutAuthentication())
	case len(key) > 0:
		// creds is the key's.
	default:
		creds, err = credentials.DetectDefault(&credentials.DetectOptions{Scopes: []string{scope}, Client: hc, Logger: quiet})
		if err != nil {
			return nil, fmt.Errorf("%w: no Google credentials: %s; to fix, %s", store.ErrAccess, oneLine(err.Error()), identityHint)
		}
		s.method = MethodADC
	}
	if creds != nil {
		authed, err := httptransport.NewClient(&httptransport.Options{
			Credentials: creds, BaseRoundTripper: base, DisableTelemetry: true, Logger: quiet,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: google cloud storage client: %v", setting.ErrInvalid, err)
		}
		hc = authed
		clientOpts = append(clientOpts, option.WithAuthCredentials(creds))
	}
	clientOpts = append(clientOpts, option.WithHTTPClient(hc))
	s.client, err = storage.NewClient(ctx, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: google cloud storage client: %v", setting.ErrInvalid, err)
	}
	s.client.SetRetry(
		storage.WithBackoff(gax.Backoff{Initial: s.tm.backoff, Max: s.tm.maxBackoff, Multiplier: 2}),
		storage.WithMaxAttempts(s.tm.attempts),
	)
	s.bucket = s.client.Bucket(s.name)
	return s, nil
}

// quiet keeps the Google libraries' own logging (GOOGLE_SDK_GO_LOGGING_LEVEL
// would make them log requests) out of the job's log: requests carry
// tokens.
var quiet = slog.New(slog.DiscardHandler)

const identityHint = "set SNAPSHOT_GCS_CREDENTIALS_JSON to a service-account key, or give the pod a Google identity: GKE workload identity (annotate the Kubernetes ServiceAccount with iam.gke.io/gcp-service-account: <name>@<project>.iam.gserviceaccount.com and grant that account roles/iam.workloadIdentityUser for it), or GOOGLE_APPLICATION_CREDENTIALS"

// apiEndpoint turns SNAPSHOT_GCS_ENDPOINT into the JSON API's base URL
// ("" for Google's own) and tells whether it is plain HTTP. A bare origin
// gets Google's /storage/v1/ path, as emulators and private endpoints
// serve it there.
func apiEndpoint(endpoint string) (string, bool, error) {
	if endpoint == "" {
		return "", false, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		// The value itself is not echoed: it may carry credentials.
		return "", false, fmt.Errorf("%w: SNAPSHOT_GCS_ENDPOINT is not an http or https URL with a host; use e.g. https://storage.googleapis.com (the default), a private endpoint, or http://fake-gcs-server:4443 for an emulator", setting.ErrInvalid)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%w: SNAPSHOT_GCS_ENDPOINT %s://%s must not carry credentials, a query or a fragment", setting.ErrInvalid, u.Scheme, u.Host)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		path = "/storage/v1"
	}
	return u.Scheme + "://" + u.Host + path + "/", u.Scheme == "http", nil
}

// CredentialMethod is "service account key", "application default
// credentials" or "none (plain-http endpoint)".
func (s *Store) CredentialMethod() string { return s.method }

// Identity is the key's service account (its client_email), or "".
func (s *Store) Identity() string { return s.identity }

// String names the store for logs; it never includes secrets.
func (s *Store) String() string {
	if s.endpoint != "" {
		return fmt.Sprintf("gs://%s (%s)", s.name, s.endpoint)
	}
	return "gs://" + s.name
}

// Close releases the client's connections.
func (s *Store) Close() error { return s.client.Close() }

// Check reads the bucket's attributes: it proves the bucket exists and
// the credentials are accepted before any work starts. An identity that
// may use objects but not read bucket metadata (storage.buckets.get is in
// no object role) is accepted after a one-object list under the prefix,
// as upstream does, and the log says so. No request proves write
// permission without writing.
func (s *Store) Check(ctx context.Context, _ store.Access) error {
	cctx, cancel := s.control(ctx)
	_, err := s.bucket.Attrs(cctx)
	cancel()
	if err == nil {
		s.log.InfoContext(ctx, "storage access checked", "store", s.String(), "credentials", s.method)
		return nil
	}
	if status(err) != http.StatusForbidden {
		return s.checkError(s.classify(ctx, "checking access to", "", err))
	}
	lctx, cancel := s.control(ctx)
	defer cancel()
	it := s.bucket.Objects(lctx, &storage.Query{Prefix: s.checkPrefix})
	it.PageInfo().MaxSize = 1
	if _, lerr := it.Next(); lerr != nil && !errors.Is(lerr, iteratorDone) {
		// Report the attribute check's refusal: it names the missing
		// permission.
		return s.checkError(s.classify(ctx, "checking access to", "", err))
	}
	s.log.WarnContext(ctx, "the identity may not read the bucket's metadata (storage.buckets.get); a list of objects under the prefix worked, so access is taken as granted",
		"store", s.String(), "credentials", s.method, "prefix", s.checkPrefix)
	return nil
}

func (s *Store) checkError(err error) error {
	if errors.Is(err, store.ErrAccess) {
		return fmt.Errorf("%w; %s", err, s.accessHint(err))
	}
	return err
}

// control bounds one small request, retries included.
func (s *Store) control(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.tm.controlTry*time.Duration(s.tm.attempts))
}

// dataTimeout bounds one try of moving n bytes: a fixed allowance plus
// the time the bytes take at the minimum rate, so a slow link is not cut
// off while a stalled one is.
func (s *Store) dataTimeout(n int64) time.Duration {
	return s.tm.dataTry + time.Duration(float64(n)/s.tm.minRate*float64(time.Second))
}
