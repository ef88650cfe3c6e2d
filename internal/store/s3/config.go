package s3

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// Name is this provider's SNAPSHOT_CLOUD_PROVIDER value.
const Name = "s3"

// env is the prefix of this provider's variables; the job's config
// package reads Config under it (its field tag "AWS").
const env = setting.Prefix + "_AWS_"

// DetectVariable is the setting that picks this provider when
// SNAPSHOT_CLOUD_PROVIDER is unset and no other provider's is set
// (upstream ConfigMaps carry the bucket but no provider key).
const DetectVariable = env + "BUCKET"

// Config is the S3 settings, SNAPSHOT_AWS_*. Names match upstream
// Kubeshark's; the tags name each variable after the prefix.
type Config struct {
	Bucket          string         `envconfig:"BUCKET"`
	Region          string         `envconfig:"REGION"`
	AccessKey       setting.Secret `envconfig:"ACCESS_KEY"`
	SecretKey       setting.Secret `envconfig:"SECRET_KEY"`
	RoleARN         string         `envconfig:"ROLE_ARN"`
	ExternalID      setting.Secret `envconfig:"EXTERNAL_ID"`
	RoleSessionName string         `envconfig:"ROLE_SESSION_NAME" default:"snapshot-job"`
	Endpoint        string         `envconfig:"ENDPOINT"`
	ForcePathStyle  bool           `envconfig:"FORCE_PATH_STYLE"`
	SSE             string         `envconfig:"SSE"`
	SSEKMSKeyID     string         `envconfig:"SSE_KMS_KEY_ID"`
	StorageClass    string         `envconfig:"STORAGE_CLASS"`
	// ObjectLockMode and ObjectLockDays store each snapshot with an
	// Object Lock retention of that mode, until that many days after its
	// upload started.
	ObjectLockMode string `envconfig:"OBJECT_LOCK_MODE"`
	ObjectLockDays int    `envconfig:"OBJECT_LOCK_DAYS"`
}

// ObjectLockModes are the accepted values of SNAPSHOT_AWS_OBJECT_LOCK_MODE.
var ObjectLockModes = []string{"GOVERNANCE", "COMPLIANCE"}

// MaxObjectLockDays is S3's longest retention, 100 years.
const MaxObjectLockDays = 36500

// ObjectLock reports whether Object Lock is asked for: either variable
// set. Providers without Object Lock refuse that.
func (c Config) ObjectLock() bool { return c.ObjectLockMode != "" || c.ObjectLockDays != 0 }

// SSEValues are the accepted values of SNAPSHOT_AWS_SSE.
var SSEValues = []string{"", "AES256", "aws:kms"}

// Detected reports whether DetectVariable is set.
func (c Config) Detected() bool { return c.Bucket != "" }

// Problems checks the settings before any work starts and returns what
// is wrong, each entry starting with the variable's name; nil when they
// can work. New checks again what only it can (the endpoint's URL, the
// CA bundle, the SDK's own settings).
func (c Config) Problems() []string {
	p := setting.NewProblems(env)
	if c.Bucket == "" {
		p.Add("BUCKET", "is required with SNAPSHOT_CLOUD_PROVIDER=s3")
	} else {
		p.Check("BUCKET", checkBucket(c.Bucket))
	}
	if c.Region != "" {
		p.Check("REGION", checkRegion(c.Region))
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		p.Add("SECRET_KEY", "SNAPSHOT_AWS_ACCESS_KEY and SNAPSHOT_AWS_SECRET_KEY must be set together")
	}
	p.OneOf("SSE", c.SSE, SSEValues)
	if c.SSEKMSKeyID != "" && c.SSE != "aws:kms" {
		p.Add("SSE_KMS_KEY_ID", "needs SNAPSHOT_AWS_SSE=aws:kms")
	}
	if c.ExternalID != "" && c.RoleARN == "" {
		p.Add("EXTERNAL_ID", "needs SNAPSHOT_AWS_ROLE_ARN")
	}
	switch {
	case c.ObjectLockMode != "" && c.ObjectLockDays == 0:
		p.Add("OBJECT_LOCK_DAYS", "is required with SNAPSHOT_AWS_OBJECT_LOCK_MODE: how many days each snapshot stays locked (1 to %d)", MaxObjectLockDays)
	case c.ObjectLockMode == "" && c.ObjectLockDays != 0:
		p.Add("OBJECT_LOCK_MODE", "is required with SNAPSHOT_AWS_OBJECT_LOCK_DAYS; use one of %s", setting.QuoteList(ObjectLockModes))
	}
	if c.ObjectLockMode != "" {
		p.OneOf("OBJECT_LOCK_MODE", c.ObjectLockMode, ObjectLockModes)
	}
	if c.ObjectLockDays < 0 || c.ObjectLockDays > MaxObjectLockDays {
		p.Add("OBJECT_LOCK_DAYS", "%d is out of range; use 1 to %d", c.ObjectLockDays, MaxObjectLockDays)
	}
	for _, v := range []struct{ name, value string }{
		{"ACCESS_KEY", c.AccessKey.Reveal()}, {"SECRET_KEY", c.SecretKey.Reveal()},
		{"ROLE_ARN", c.RoleARN}, {"EXTERNAL_ID", c.ExternalID.Reveal()},
		{"ROLE_SESSION_NAME", c.RoleSessionName}, {"ENDPOINT", c.Endpoint},
		{"SSE_KMS_KEY_ID", c.SSEKMSKeyID}, {"STORAGE_CLASS", c.StorageClass},
	} {
		p.OneWord(v.name, v.value)
	}
	return p.List()
}

// The characters of bucket and region names, as loose as S3-compatible
// stores allow (MinIO and Ceph accept upper case and '_' in buckets),
// refusing only what can never work: white space, control characters,
// '/' and the other URL delimiters.
var (
	// bucketRE admits AWS names and the relaxed ones of Ceph RGW (up to
	// 255 bytes, upper case, '_').
	bucketRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)
	regionRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// checkBucket checks SNAPSHOT_AWS_BUCKET. An access point ARN is
// accepted as the SDK takes it in place of a bucket name.
func checkBucket(b string) string {
	if strings.HasPrefix(b, "arn:") {
		if r, i := setting.FirstSpace(b); i >= 0 {
			return fmt.Sprintf("%q holds %s at byte %d", b, setting.DescribeRune(r), i)
		}
		return ""
	}
	if bucketRE.MatchString(b) {
		return ""
	}
	if i := strings.IndexByte(b, '/'); i >= 0 {
		return fmt.Sprintf("%s holds '/'; a bucket name has no folders: put %s in SNAPSHOT_CLOUD_PREFIX and %s in SNAPSHOT_AWS_BUCKET",
			setting.Quoted(b), setting.Quoted(b[i+1:]+"/"), setting.Quoted(b[:i]))
	}
	return fmt.Sprintf("%s %s; a bucket name has at most 255 letters, digits, '.', '-' and '_' (or is an access point ARN, arn:...)", setting.Quoted(b), setting.Offending(b, bucketRE))
}

func checkRegion(r string) string {
	if regionRE.MatchString(r) {
		return ""
	}
	return fmt.Sprintf("%s %s; a region has only letters, digits, '-', '_' and '.', like eu-west-1 (S3-compatible stores mostly take us-east-1)", setting.Quoted(r), setting.Offending(r, regionRE))
}
