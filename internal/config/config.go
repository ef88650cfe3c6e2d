// Package config reads the job's settings from SNAPSHOT_* environment
// variables and checks them before any work starts.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the common prefix of every variable.
const Prefix = "SNAPSHOT"

// ErrInvalid marks configuration errors (exit code 2).
var ErrInvalid = errors.New("invalid configuration")

// Config is everything the job reads from the environment. Field tags name
// the variable after the SNAPSHOT_ prefix.
type Config struct {
	// AllowUnknown comes first: envconfig stops at the first value it
	// cannot parse, and the unknown-variable check needs this one.
	AllowUnknown bool `envconfig:"ALLOW_UNKNOWN"`
	// ProviderDetected: SNAPSHOT_CLOUD_PROVIDER was unset and Provider was
	// chosen from the one provider whose settings are present.
	ProviderDetected  bool     `ignored:"true"`
	Provider          string   `envconfig:"CLOUD_PROVIDER"`
	Prefix            string   `envconfig:"CLOUD_PREFIX"`
	SourceDir         string   `envconfig:"SOURCE_DIR" default:"/snapshots"`
	Name              string   `envconfig:"NAME" default:"snapshot"`
	Mode              string   `envconfig:"MODE" default:"backup"`
	CompressionLevel  string   `envconfig:"COMPRESSION_LEVEL" default:"fastest"`
	UploadConcurrency int      `envconfig:"UPLOAD_CONCURRENCY" default:"4"`
	PartSize          Size     `envconfig:"PART_SIZE" default:"16MiB"`
	LogFormat         string   `envconfig:"LOG_FORMAT" default:"json"`
	LogLevel          string   `envconfig:"LOG_LEVEL" default:"info"`
	ProgressInterval  Duration `envconfig:"PROGRESS_INTERVAL" default:"10s"`
	IOTimeout         Duration `envconfig:"IO_TIMEOUT" default:"60s"`
	TerminationLog    string   `envconfig:"TERMINATION_LOG" default:"/dev/termination-log"`

	Retention Retention `envconfig:"RETENTION"`
	Restore   Restore   `envconfig:"RESTORE"`
	File      File      `envconfig:"FILE"`
	S3        S3        `envconfig:"AWS"`
	Azure     Azure     `envconfig:"AZBLOB"`
}

// Retention is the pruning policy. Zero values switch a rule off.
type Retention struct {
	KeepLast    int      `envconfig:"KEEP_LAST"`
	KeepDaily   int      `envconfig:"KEEP_DAILY"`
	KeepWeekly  int      `envconfig:"KEEP_WEEKLY"`
	KeepMonthly int      `envconfig:"KEEP_MONTHLY"`
	MaxAge      Duration `envconfig:"MAX_AGE"`
	DryRun      bool     `envconfig:"DRY_RUN"`
}

// Enabled reports whether any rule is set; without one nothing is pruned.
func (r Retention) Enabled() bool {
	return r.KeepLast > 0 || r.KeepDaily > 0 || r.KeepWeekly > 0 || r.KeepMonthly > 0 || r.MaxAge > 0
}

// Restore says what to restore and what to do when the target has data.
type Restore struct {
	Key        string `envconfig:"KEY" default:"latest"`
	Dir        string `envconfig:"DIR"` // defaults to SourceDir
	IfMissing  string `envconfig:"IF_MISSING" default:"fail"`
	IfNotEmpty string `envconfig:"IF_NOT_EMPTY" default:"fail"`
}

// File configures the local-directory store.
type File struct {
	Dir string `envconfig:"DIR"`
}

// S3 configures Amazon S3 and S3-compatible stores. Names match upstream.
type S3 struct {
	Bucket          string `envconfig:"BUCKET"`
	Region          string `envconfig:"REGION"`
	AccessKey       Secret `envconfig:"ACCESS_KEY"`
	SecretKey       Secret `envconfig:"SECRET_KEY"`
	RoleARN         string `envconfig:"ROLE_ARN"`
	ExternalID      Secret `envconfig:"EXTERNAL_ID"`
	RoleSessionName string `envconfig:"ROLE_SESSION_NAME" default:"snapshot-job"`
	Endpoint        string `envconfig:"ENDPOINT"`
	ForcePathStyle  bool   `envconfig:"FORCE_PATH_STYLE"`
	SSE             string `envconfig:"SSE"`
	SSEKMSKeyID     string `envconfig:"SSE_KMS_KEY_ID"`
	StorageClass    string `envconfig:"STORAGE_CLASS"`
}

// Azure configures Azure Blob Storage. Names match upstream.
type Azure struct {
	Account    string `envconfig:"STORAGE_ACCOUNT"`
	Container  string `envconfig:"CONTAINER"`
	StorageKey Secret `envconfig:"STORAGE_KEY"`
	Endpoint   string `envconfig:"ENDPOINT"`
	AccessTier string `envconfig:"ACCESS_TIER"`
}

// Providers, verbs and the accepted values of the enumerated variables.
var (
	Providers         = []string{"s3", "azblob", "file"}
	Verbs             = []string{"backup", "restore", "list", "prune", "verify", "version"}
	CompressionLevels = []string{"fastest", "default", "better", "best"}
	IfMissingValues   = []string{"fail", "ok"}
	IfNotEmptyValues  = []string{"fail", "skip", "overwrite"}
	LogFormats        = []string{"json", "text"}
	LogLevels         = []string{"debug", "info", "warn", "error"}
	SSEValues         = []string{"", "AES256", "aws:kms"}
	AccessTiers       = []string{"", "Hot", "Cool", "Cold", "Archive"}
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Part sizes outside this range are refused by S3 (5 MiB minimum part)
// and need more memory than a job should take.
const (
	MinPartSize = 5 << 20
	MaxPartSize = 4000 << 20
)

// Load reads the configuration from the process environment and
// validates it. The error lists every problem found, each naming its
// variable and the accepted values. Warnings report SNAPSHOT_* variables
// that are not known, with the nearest known name; a misspelt safety
// setting is a problem instead (see UnknownVariables).
func Load() (Config, []string, error) {
	var c Config
	err := process(&c)
	warnings, problems := UnknownVariables(os.Environ(), c.AllowUnknown)
	if err != nil {
		return c, warnings, errors.Join(err, invalid(problems))
	}
	c.Prefix = NormalizePrefix(c.Prefix)
	c.detectProvider()
	if c.Restore.Dir == "" {
		c.Restore.Dir = c.SourceDir
	}
	return c, warnings, invalid(append(problems, c.problems()...))
}

// detectProvider picks the provider when SNAPSHOT_CLOUD_PROVIDER is unset
// and exactly one provider's required setting is: upstream Kubeshark's
// ConfigMaps carry the bucket or account but no provider key.
func (c *Config) detectProvider() {
	if c.Provider != "" {
		return
	}
	var found []string
	for _, p := range []struct{ name, value string }{
		{"s3", c.S3.Bucket}, {"azblob", c.Azure.Account}, {"file", c.File.Dir},
	} {
		if p.value != "" {
			found = append(found, p.name)
		}
	}
	if len(found) == 1 {
		c.Provider, c.ProviderDetected = found[0], true
	}
}

func invalid(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
}

// NormalizePrefix adds the trailing '/' a non-empty prefix needs and drops
// leading ones, which S3 and Azure would keep as part of the key.
func NormalizePrefix(p string) string {
	p = strings.TrimLeft(strings.TrimSpace(p), "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

func process(c *Config) error {
	// One rule for every variable, secrets included: surrounding white
	// space (spaces, tabs, CR, LF) is not part of the value. YAML block
	// scalars (|) end values with a line break and pasted keys often
	// carry one; no bucket, number or key ever ends with one. A value
	// that is only white space means "not set", as ConfigMaps often carry
	// keys with empty values (envconfig would otherwise skip the default
	// and fail to parse "" as a number). envconfig reads only the process
	// environment, so the trimmed value is put back there.
	for _, name := range KnownVariables() {
		v, ok := os.LookupEnv(name)
		if !ok {
			continue
		}
		switch t := strings.TrimSpace(v); {
		case t == "":
			os.Unsetenv(name)
		case t != v:
			os.Setenv(name, t)
		}
	}
	err := envconfig.Process(Prefix, c)
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s=%q: %s", ErrInvalid, pe.KeyName, pe.Value, describeParseError(pe))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func describeParseError(pe *envconfig.ParseError) string {
	switch pe.TypeName {
	case "int":
		return "not a whole number"
	case "bool":
		return "not a boolean: use true or false"
	}
	return pe.Err.Error()
}

// problems checks every value and returns what is wrong, each starting
// with the variable's name.
func (c Config) problems() []string {
	var problems []string
	bad := func(name, format string, args ...any) {
		problems = append(problems, Prefix+"_"+name+": "+fmt.Sprintf(format, args...))
	}
	oneOf := func(name, value string, allowed []string) {
		if !slices.Contains(allowed, value) {
			bad(name, "%q is not accepted; use one of %s", value, quoteList(allowed))
		}
	}
	if c.Provider == "" {
		bad("CLOUD_PROVIDER", "is required unless exactly one of SNAPSHOT_AWS_BUCKET, SNAPSHOT_AZBLOB_STORAGE_ACCOUNT, SNAPSHOT_FILE_DIR is set; use one of %s", quoteList(Providers))
	} else {
		oneOf("CLOUD_PROVIDER", c.Provider, Providers)
	}
	check := func(name, problem string) {
		if problem != "" {
			bad(name, "%s", problem)
		}
	}
	check("NAME", checkName(c.Name))
	check("CLOUD_PREFIX", checkPrefix(c.Prefix, c.Name))
	oneOf("MODE", c.Mode, Verbs)
	oneOf("COMPRESSION_LEVEL", c.CompressionLevel, CompressionLevels)
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		bad("UPLOAD_CONCURRENCY", "%d is out of range; use 1 to 64", c.UploadConcurrency)
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		bad("PART_SIZE", "%s is out of range; use 5MiB to 4000MiB", c.PartSize)
	}
	if c.ProgressInterval < Duration(100*time.Millisecond) {
		bad("PROGRESS_INTERVAL", "%s is too short; use 100ms or more", c.ProgressInterval)
	}
	if c.IOTimeout < Duration(time.Second) {
		bad("IO_TIMEOUT", "%s is too short; use 1s or more (default 60s)", c.IOTimeout)
	}
	oneOf("LOG_FORMAT", c.LogFormat, LogFormats)
	oneOf("LOG_LEVEL", c.LogLevel, LogLevels)
	for name, v := range map[string]int{"KEEP_LAST": c.Retention.KeepLast, "KEEP_DAILY": c.Retention.KeepDaily, "KEEP_WEEKLY": c.Retention.KeepWeekly, "KEEP_MONTHLY": c.Retention.KeepMonthly} {
		if v < 0 {
			bad("RETENTION_"+name, "%d is negative; use 0 (off) or a positive count", v)
		}
	}
	if c.Restore.Key != "latest" {
		check("RESTORE_KEY", checkRestoreKey(c.Restore.Key))
	}
	oneOf("RESTORE_IF_MISSING", c.Restore.IfMissing, IfMissingValues)
	oneOf("RESTORE_IF_NOT_EMPTY", c.Restore.IfNotEmpty, IfNotEmptyValues)
	if c.SourceDir == "" {
		bad("SOURCE_DIR", "is empty; use the path of the snapshot volume")
	}
	switch c.Provider {
	case "file":
		if c.File.Dir == "" {
			bad("FILE_DIR", "is required with SNAPSHOT_CLOUD_PROVIDER=file; use the directory that holds the snapshots")
		}
	case "s3":
		if c.S3.Bucket == "" {
			bad("AWS_BUCKET", "is required with SNAPSHOT_CLOUD_PROVIDER=s3")
		} else {
			check("AWS_BUCKET", checkBucket(c.S3.Bucket))
		}
		if c.S3.Region != "" {
			check("AWS_REGION", checkRegion(c.S3.Region))
		}
		if (c.S3.AccessKey == "") != (c.S3.SecretKey == "") {
			bad("AWS_SECRET_KEY", "SNAPSHOT_AWS_ACCESS_KEY and SNAPSHOT_AWS_SECRET_KEY must be set together")
		}
		oneOf("AWS_SSE", c.S3.SSE, SSEValues)
		if c.S3.SSEKMSKeyID != "" && c.S3.SSE != "aws:kms" {
			bad("AWS_SSE_KMS_KEY_ID", "needs SNAPSHOT_AWS_SSE=aws:kms")
		}
		if c.S3.ExternalID != "" && c.S3.RoleARN == "" {
			bad("AWS_EXTERNAL_ID", "needs SNAPSHOT_AWS_ROLE_ARN")
		}
	case "azblob":
		if c.Azure.Account == "" {
			bad("AZBLOB_STORAGE_ACCOUNT", "is required with SNAPSHOT_CLOUD_PROVIDER=azblob")
		} else {
			check("AZBLOB_STORAGE_ACCOUNT", checkAccount(c.Azure.Account))
		}
		if c.Azure.Container == "" {
			bad("AZBLOB_CONTAINER", "is required with SNAPSHOT_CLOUD_PROVIDER=azblob")
		} else {
			check("AZBLOB_CONTAINER", checkContainer(c.Azure.Container))
		}
		oneOf("AZBLOB_ACCESS_TIER", c.Azure.AccessTier, AccessTiers)
	}
	// Credentials, ARNs, IDs and URLs never hold white space: one inside
	// (a key pasted across two lines) would only be refused later, as
	// rejected credentials. Values are not echoed: some are secrets.
	type value struct{ name, value string }
	var words []value
	switch c.Provider {
	case "s3":
		words = []value{{"AWS_ACCESS_KEY", c.S3.AccessKey.Reveal()}, {"AWS_SECRET_KEY", c.S3.SecretKey.Reveal()},
			{"AWS_ROLE_ARN", c.S3.RoleARN}, {"AWS_EXTERNAL_ID", c.S3.ExternalID.Reveal()},
			{"AWS_ROLE_SESSION_NAME", c.S3.RoleSessionName}, {"AWS_ENDPOINT", c.S3.Endpoint},
			{"AWS_SSE_KMS_KEY_ID", c.S3.SSEKMSKeyID}, {"AWS_STORAGE_CLASS", c.S3.StorageClass}}
	case "azblob":
		words = []value{{"AZBLOB_STORAGE_KEY", c.Azure.StorageKey.Reveal()}, {"AZBLOB_ENDPOINT", c.Azure.Endpoint}}
	}
	for _, v := range words {
		if r, i := firstSpace(v.value); i >= 0 {
			bad(v.name, "holds %s at byte %d; the value must be one word (surrounding white space is removed, inner white space is not)", describeRune(r), i)
		}
	}
	return problems
}

func quoteList(vs []string) string {
	var q []string
	for _, v := range vs {
		if v == "" {
			q = append(q, `"" (unset)`)
			continue
		}
		q = append(q, v)
	}
	return strings.Join(q, ", ")
}
