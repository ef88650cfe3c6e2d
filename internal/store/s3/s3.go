// Package s3 stores snapshots in Amazon S3 and S3-compatible stores
// (MinIO, Ceph RGW, Cloudflare R2, versitygw).
//
// Uploads stream through feature/s3/manager with a bounded number of parts
// in memory; downloads use ranged.NewReader. Every failure is turned
// into one of the store package's sentinel errors so that the command can
// pick the exit code.
package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/stall"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// The fixed parts of the time bound documented in docs/providers/s3.md (time
// bounds); store.Options has the others.
const (
	// maxAttempts is how often one request is tried, counting the first.
	// AWS_MAX_ATTEMPTS, the SDK's own variable, overrides it.
	maxAttempts = 5

	// dialTimeout bounds connecting (TCP) and tlsTimeout the TLS handshake
	// of one attempt.
	dialTimeout = 10 * time.Second
	tlsTimeout  = 10 * time.Second
	// maxBackoff caps the SDK retryer's jittered wait between attempts.
	maxBackoff = 20 * time.Second
	// expiryWindow renews temporary credentials this long before they
	// expire, so that no request is signed with credentials that run out
	// while it is in flight.
	expiryWindow = 5 * time.Minute
	// cleanupBudget bounds aborting a failed upload on a fresh context:
	// it has to fit in Kubernetes' default 30 s termination grace period.
	cleanupBudget = 20 * time.Second

	// MaxParts is S3's limit on the parts of one multipart upload, and
	// minPartSize and maxPartSize its limits on one part (all but the
	// last).
	MaxParts    = 10000
	minPartSize = 5 << 20
	maxPartSize = 5 << 30

	// tokenKey is the metadata key of a random token each Put stores with
	// its object, so that after an ambiguous failure (a retried
	// CompleteMultipartUpload, a cancellation while it was in flight) the
	// Put can tell its own object from someone else's.
	tokenKey = "upload-token"
)

// Store is a store.Store on one S3 bucket.
type Store struct {
	client      *awss3.Client
	creds       aws.CredentialsProvider
	bucket      string
	region      string
	endpoint    string // "" for AWS
	credMethod  string
	partSize    int64
	concurrency int
	log         *slog.Logger
	version     string

	sse          string
	sseKMSKeyID  string
	storageClass string

	// lockMode ("" for none) and lockFor are the Object Lock retention
	// each Put sets; versioned is learnt by Check(Write) and makes Delete
	// remove versions rather than hide them behind delete markers.
	lockMode  types.ObjectLockMode
	lockFor   time.Duration
	versioned bool

	cond *condWrites
}

var _ store.Store = (*Store)(nil)

// New builds a Store from the S3 settings. It makes no request except
// what resolving credentials strictly needs (none for static keys; the
// default chain and AssumeRole resolve lazily on first use). Bad settings
// give an error wrapping setting.ErrInvalid.
func New(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: SNAPSHOT_AWS_BUCKET is required", setting.ErrInvalid)
	}
	opts = opts.WithDefaults()
	if opts.PartSize < minPartSize || opts.PartSize > maxPartSize {
		return nil, fmt.Errorf("%w: part size %d is outside S3's 5 MiB to 5 GiB", setting.ErrInvalid, opts.PartSize)
	}
	if opts.Concurrency < 1 {
		return nil, fmt.Errorf("%w: upload concurrency %d is below 1", setting.ErrInvalid, opts.Concurrency)
	}
	if cfg.Endpoint != "" {
		if err := checkEndpoint(cfg.Endpoint); err != nil {
			return nil, err
		}
	}
	if err := checkCABundle(); err != nil {
		return nil, err
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, fmt.Errorf("%w: SNAPSHOT_AWS_ACCESS_KEY and SNAPSHOT_AWS_SECRET_KEY must be set together", setting.ErrInvalid)
	}

	cacheOpts := func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = expiryWindow }
	load := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(newHTTPClient(opts.StallTimeout, opts.Concurrency)),
		awsconfig.WithCredentialsCacheOptions(cacheOpts),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.MaxBackoff = maxBackoff
				// A long upload over a flaky link must not run out of
				// client-side retry tokens: every part keeps its own
				// attempt budget instead.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		load = append(load, awsconfig.WithRegion(cfg.Region))
	}
	method := "default chain"
	if cfg.AccessKey != "" {
		method = "static keys"
		load = append(load, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey.Reveal(), cfg.SecretKey.Reveal(), "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("%w: AWS SDK settings (AWS_* variables, shared config files): %w", setting.ErrInvalid, err)
	}
	if awsCfg.Region == "" {
		// S3-compatible stores mostly ignore the region but SigV4 needs
		// one; us-east-1 is what they expect by default.
		awsCfg.Region = "us-east-1"
	}
	if cfg.RoleARN != "" {
		session := cfg.RoleSessionName
		if session == "" {
			session = "snapshot-job"
		}
		// The STS client signs with the base credentials found above and
		// honours AWS_ENDPOINT_URL_STS; SNAPSHOT_AWS_ENDPOINT is for S3 only.
		prov := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(awsCfg), cfg.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = session
			if ext := cfg.ExternalID.Reveal(); ext != "" {
				o.ExternalID = aws.String(ext)
			}
		})
		awsCfg.Credentials = aws.NewCredentialsCache(prov, cacheOpts)
		method = "assume-role (" + method + ")"
	}
	if awsCfg.Credentials == nil {
		return nil, fmt.Errorf("%w: no AWS credentials provider could be set up", setting.ErrInvalid)
	}
	// The inner cache hands out expiry times already moved forward by the
	// window, so the outer one needs none; it is there because the S3
	// client would otherwise wrap the marker in a cache of its own.
	awsCfg.Credentials = aws.NewCredentialsCache(markedProvider{awsCfg.Credentials})

	s := &Store{
		creds:        awsCfg.Credentials,
		bucket:       cfg.Bucket,
		region:       awsCfg.Region,
		credMethod:   method,
		partSize:     Limits().PartSize(0, opts.PartSize),
		concurrency:  opts.Concurrency,
		log:          opts.Logger,
		version:      opts.Version,
		sse:          cfg.SSE,
		sseKMSKeyID:  cfg.SSEKMSKeyID,
		storageClass: cfg.StorageClass,
		lockMode:     types.ObjectLockMode(cfg.ObjectLockMode),
		lockFor:      time.Duration(cfg.ObjectLockDays) * 24 * time.Hour,
		cond:         &condWrites{},
	}
	_, userChecksum := os.LookupEnv("AWS_REQUEST_CHECKSUM_CALCULATION")
	_, userValidation := os.LookupEnv("AWS_RESPONSE_CHECKSUM_VALIDATION")
	s.client = awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		// o.BaseEndpoint also reflects AWS_ENDPOINT_URL(_S3).
		if o.BaseEndpoint != nil {
			s.endpoint = displayURL(*o.BaseEndpoint)
			// The SDK's 2025 default (a CRC on every request, trailing
			// checksums with aws-chunked bodies) is rejected or
			// mis-stored by several S3-compatible stores; send checksums
			// only where the API requires them unless the operator chose
			// otherwise with the SDK's own variables.
			if !userChecksum {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			}
			if !userValidation {
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}
	})
	return s, nil
}

// checkEndpoint refuses an endpoint that is no http(s) URL, or that
// carries credentials, a query or a fragment. The value is never echoed
// whole: it may hold credentials. Only its scheme and host are, when
// they parse.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%w: SNAPSHOT_AWS_ENDPOINT%s is not an http or https URL with a host; use e.g. https://minio.example:9000", setting.ErrInvalid, schemeHost(u, err))
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%w: SNAPSHOT_AWS_ENDPOINT %s://%s must not carry credentials, a query or a fragment: keys go in SNAPSHOT_AWS_ACCESS_KEY and SNAPSHOT_AWS_SECRET_KEY", setting.ErrInvalid, u.Scheme, u.Host)
	}
	return nil
}

// schemeHost is " (scheme://host)" of a URL that parsed far enough to
// have a host, else "".
func schemeHost(u *url.URL, err error) string {
	if err != nil || u == nil || u.Host == "" {
		return ""
	}
	return " (" + u.Scheme + "://" + u.Host + ")"
}

// displayURL is an endpoint as logs show it: without user information,
// query or fragment, which the SDK's own AWS_ENDPOINT_URL variables do
// not forbid.
func displayURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "(endpoint not shown: not a URL)"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// checkCABundle reads AWS_CA_BUNDLE up front: the SDK reports a missing
// file only as an open error and silently ignores a file with no
// certificate in it, which would surface much later as a TLS failure.
func checkCABundle() error {
	p := os.Getenv("AWS_CA_BUNDLE")
	if p == "" {
		return nil
	}
	pem, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%w: AWS_CA_BUNDLE: %w", setting.ErrInvalid, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%w: AWS_CA_BUNDLE=%s holds no PEM certificate", setting.ErrInvalid, p)
	}
	return nil
}

// CredentialMethod names how credentials are obtained, for logs: "static
// keys", "assume-role (static keys)", "assume-role (default chain)" or
// "default chain".
func (s *Store) CredentialMethod() string { return s.credMethod }

// String names the store for logs.
func (s *Store) String() string {
	if s.endpoint != "" {
		return fmt.Sprintf("s3://%s at %s (%s)", s.bucket, s.endpoint, s.region)
	}
	return fmt.Sprintf("s3://%s (%s)", s.bucket, s.region)
}

// Check resolves the credentials and sends HeadBucket, for either access:
// S3 has no request that proves write permission without writing. With
// Object Lock set, writing also needs a bucket that has it enabled.
func (s *Store) Check(ctx context.Context, access store.Access) error {
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return s.checkError(s.classify(ctx, "", "", err))
	}
	if _, err := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return s.checkError(s.classify(ctx, "", "", err))
	}
	if access == store.Write && s.lockMode != "" {
		if err := s.checkObjectLock(ctx); err != nil {
			return err
		}
	}
	s.log.InfoContext(ctx, "storage access checked", "store", s.String(), "credentials", s.credMethod,
		"credential_source", creds.Source, "access_key_id", maskKey(creds.AccessKeyID))
	return nil
}

// checkObjectLock makes sure the bucket has Object Lock enabled (S3
// refuses a retention on an object of a bucket without it, but only
// after the whole upload) and learns whether it keeps versions.
func (s *Store) checkObjectLock(ctx context.Context) error {
	out, err := s.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: &s.bucket})
	enabled := err == nil && out.ObjectLockConfiguration != nil &&
		out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled
	switch {
	case err != nil && apiCode(err) != "ObjectLockConfigurationNotFoundError":
		err = s.classify(ctx, "", "", err)
		if errors.Is(err, store.ErrAccess) {
			return fmt.Errorf("checking the Object Lock configuration of bucket %q: %w; the credentials need s3:GetBucketObjectLockConfiguration with SNAPSHOT_AWS_OBJECT_LOCK_MODE set", s.bucket, err)
		}
		return fmt.Errorf("checking the Object Lock configuration of bucket %q: %w", s.bucket, err)
	case !enabled:
		return fmt.Errorf("%w: bucket %q does not have Object Lock enabled, and SNAPSHOT_AWS_OBJECT_LOCK_MODE=%s asks for it; enable Object Lock on the bucket (docs/providers/s3.md, Object Lock) or unset SNAPSHOT_AWS_OBJECT_LOCK_MODE and SNAPSHOT_AWS_OBJECT_LOCK_DAYS",
			store.ErrAccess, s.bucket, s.lockMode)
	}
	v, err := s.client.GetBucketVersioning(ctx, &awss3.GetBucketVersioningInput{Bucket: &s.bucket})
	if err != nil {
		return fmt.Errorf("checking the versioning of bucket %q: %w", s.bucket, s.classify(ctx, "", "", err))
	}
	s.versioned = v.Status == types.BucketVersioningStatusEnabled || v.Status == types.BucketVersioningStatusSuspended
	s.log.DebugContext(ctx, "object lock checked", "bucket", s.bucket, "mode", string(s.lockMode),
		"retention", s.lockFor.String(), "versioned", s.versioned)
	return nil
}

// checkError words a classified failure of Check with what to fix.
func (s *Store) checkError(err error) error {
	switch {
	case errors.Is(err, store.ErrAccess):
		return fmt.Errorf("checking access to bucket %q with %s credentials: %w%s", s.bucket, s.credMethod, err, accessHint(err))
	case errors.Is(err, store.ErrTransfer):
		return fmt.Errorf("checking access to bucket %q at %s: %w", s.bucket, s.endpointName(), err)
	}
	return fmt.Errorf("checking access to bucket %q: %w", s.bucket, err)
}

// accessHint tells the operator what to fix.
func accessHint(err error) string {
	var ce *credentialError
	switch {
	case redirectRegion(err) != "":
		r := redirectRegion(err)
		return fmt.Sprintf("; the bucket is in region %s: set SNAPSHOT_AWS_REGION=%s", r, r)
	case untrustedServer(err):
		return ""
	case errors.As(err, &ce):
		return "; no usable credentials: check SNAPSHOT_AWS_ACCESS_KEY/SECRET_KEY, SNAPSHOT_AWS_ROLE_ARN/EXTERNAL_ID or the service account's IRSA role"
	case httpStatus(err) == http.StatusNotFound || apiCode(err) == "NoSuchBucket":
		return "; create the bucket or correct SNAPSHOT_AWS_BUCKET (and SNAPSHOT_AWS_ENDPOINT)"
	}
	return "; check the keys, SNAPSHOT_AWS_REGION and that the credentials may use the bucket (the minimal IAM policy is in docs/providers/s3.md)"
}

func (s *Store) endpointName() string {
	if s.endpoint != "" {
		return s.endpoint
	}
	return "AWS S3 " + s.region
}

// maskKey keeps an access key ID recognisable in logs without printing it
// whole (key IDs are not secret, but there is no need to spread them).
func maskKey(k string) string {
	if len(k) <= 8 {
		return strings.Repeat("*", len(k))
	}
	return k[:4] + strings.Repeat("*", len(k)-8) + k[len(k)-4:]
}

// markedProvider tags credential failures so that classify can tell them
// from S3's own answers: the SDK reports them as plain wrapped errors.
type markedProvider struct{ aws.CredentialsProvider }

type credentialError struct{ err error }

func (e *credentialError) Error() string { return "resolving AWS credentials: " + e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

func (m markedProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &credentialError{err}
	}
	return c, nil
}

// newHTTPClient returns the SDK's buildable client (so that AWS_CA_BUNDLE
// and the SDK's other transport settings still apply to it) with bounded
// connect and handshake times and a stall timeout on every connection.
//
// The SDK's own WithReadTimeout is not used: it re-arms only on reads, so
// it fires while a large part is still being sent and the server has not
// answered yet, which is why the SDK exempts S3 from it. Here both
// directions re-arm the deadline, so only a connection on which nothing
// moves at all for idle is dropped (and the request retried).
func newHTTPClient(idle time.Duration, concurrency int) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = dialTimeout
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.DialContext = stall.Dialer(tr.DialContext, idle)
			tr.TLSHandshakeTimeout = tlsTimeout
			// Parts and ranges in flight, plus the odd HEAD or list.
			tr.MaxIdleConnsPerHost = 2*concurrency + 4
		})
}
