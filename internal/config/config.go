// Package config reads the job's settings from SNAPSHOT_* environment
// variables and checks them before any work starts.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
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
// that are not known, with the nearest known name.
func Load() (Config, []string, error) {
	warnings := UnknownVariables(os.Environ())
	var c Config
	if err := process(&c); err != nil {
		return c, warnings, err
	}
	c.Prefix = NormalizePrefix(c.Prefix)
	if c.Restore.Dir == "" {
		c.Restore.Dir = c.SourceDir
	}
	return c, warnings, c.validate()
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
	// A ConfigMap often carries keys with empty values; they mean "not
	// set" to an operator, while envconfig would skip the default and
	// fail to parse "" as a number.
	for _, name := range KnownVariables() {
		if v, ok := os.LookupEnv(name); ok && strings.TrimSpace(v) == "" {
			os.Unsetenv(name)
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

func (c Config) validate() error {
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
		bad("CLOUD_PROVIDER", "is required; use one of %s", quoteList(Providers))
	} else {
		oneOf("CLOUD_PROVIDER", c.Provider, Providers)
	}
	if !nameRE.MatchString(c.Name) {
		bad("NAME", "%q is not accepted; use lower-case letters, digits and '-', starting with a letter or digit", c.Name)
	}
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
	if c.Restore.Key == "" {
		bad("RESTORE_KEY", "is empty; use latest or an exact object key")
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
		}
		if c.Azure.Container == "" {
			bad("AZBLOB_CONTAINER", "is required with SNAPSHOT_CLOUD_PROVIDER=azblob")
		}
		oneOf("AZBLOB_ACCESS_TIER", c.Azure.AccessTier, AccessTiers)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
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

// KnownVariables lists every variable the job reads, in declaration order.
func KnownVariables() []string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 0, ' ', 0)
	// envconfig knows the names; its usage template is the supported way
	// to get them out.
	_ = envconfig.Usagef(Prefix, &Config{}, tw, "{{range .}}{{usage_key .}}\n{{end}}")
	_ = tw.Flush()
	return strings.Fields(buf.String())
}

// UnknownVariables warns about SNAPSHOT_* variables the job does not read,
// naming the nearest known one: a typo must not silently change behaviour.
// environ is in os.Environ's format.
func UnknownVariables(environ []string) []string {
	known := KnownVariables()
	var warnings []string
	var names []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !strings.HasPrefix(k, Prefix+"_") || slices.Contains(known, k) {
			continue
		}
		best, dist := "", 1<<30
		for _, n := range known {
			if d := levenshtein(k, n); d < dist {
				best, dist = n, d
			}
		}
		warnings = append(warnings, fmt.Sprintf("unknown variable %s is ignored; did you mean %s?", k, best))
	}
	return warnings
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
