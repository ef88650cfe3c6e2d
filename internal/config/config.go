// Package config reads the job's settings from SNAPSHOT_* environment
// variables and checks them before any work starts.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/metrics"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store/azblob"
	"github.com/snapshot-job/snapshot-job/internal/store/file"
	"github.com/snapshot-job/snapshot-job/internal/store/gcs"
	"github.com/snapshot-job/snapshot-job/internal/store/s3"
)

// Config is everything the job reads from the environment. Field tags name
// the variable after the SNAPSHOT_ prefix; each store provider's settings
// are its own Config type, read under its tag (AWS, AZBLOB, GCS, FILE). The
// metrics settings come before the numbers: envconfig stops at the first
// value it cannot parse, and a run stopped by a bad number still pushes
// its exit code 2.
type Config struct {
	// AllowUnknown comes first: envconfig stops at the first value it
	// cannot parse, and the unknown-variable check needs this one.
	AllowUnknown bool `envconfig:"ALLOW_UNKNOWN"`
	// ProviderDetected: SNAPSHOT_CLOUD_PROVIDER was unset and Provider was
	// chosen from the one provider whose settings are present.
	ProviderDetected  bool             `ignored:"true"`
	Provider          string           `envconfig:"CLOUD_PROVIDER"`
	Prefix            string           `envconfig:"CLOUD_PREFIX"`
	SourceDir         string           `envconfig:"SOURCE_DIR" default:"/snapshots"`
	Name              string           `envconfig:"NAME" default:"snapshot"`
	Mode              string           `envconfig:"MODE" default:"backup"`
	Metrics           metrics.Config   `envconfig:"METRICS"`
	CompressionLevel  string           `envconfig:"COMPRESSION_LEVEL" default:"fastest"`
	UploadConcurrency int              `envconfig:"UPLOAD_CONCURRENCY" default:"4"`
	PartSize          setting.Size     `envconfig:"PART_SIZE" default:"16MiB"`
	LogFormat         string           `envconfig:"LOG_FORMAT" default:"json"`
	LogLevel          string           `envconfig:"LOG_LEVEL" default:"info"`
	ProgressInterval  setting.Duration `envconfig:"PROGRESS_INTERVAL" default:"10s"`
	IOTimeout         setting.Duration `envconfig:"IO_TIMEOUT" default:"60s"`
	TerminationLog    string           `envconfig:"TERMINATION_LOG" default:"/dev/termination-log"`

	Retention  Retention     `envconfig:"RETENTION"`
	Restore    Restore       `envconfig:"RESTORE"`
	Encryption Encryption    `envconfig:"ENCRYPTION"`
	File       file.Config   `envconfig:"FILE"`
	S3         s3.Config     `envconfig:"AWS"`
	Azure      azblob.Config `envconfig:"AZBLOB"`
	GCS        gcs.Config    `envconfig:"GCS"`
}

// Retention is the pruning policy. Zero values switch a rule off.
type Retention struct {
	KeepLast    int              `envconfig:"KEEP_LAST"`
	KeepDaily   int              `envconfig:"KEEP_DAILY"`
	KeepWeekly  int              `envconfig:"KEEP_WEEKLY"`
	KeepMonthly int              `envconfig:"KEEP_MONTHLY"`
	MaxAge      setting.Duration `envconfig:"MAX_AGE"`
	DryRun      bool             `envconfig:"DRY_RUN"`
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
	// Paths is SNAPSHOT_RESTORE_PATHS split at commas; Selection is
	// what it parses to (nil: everything).
	Paths     []string       `envconfig:"PATHS"`
	Selection *archive.Paths `ignored:"true"`
}

// Encryption is what backups encrypt to and what restores decrypt with.
type Encryption struct {
	// Recipients are age recipients and ssh public keys, comma- or
	// newline-separated; set, every backup is encrypted to all of them.
	Recipients string `envconfig:"RECIPIENTS"`
	// Identity is the private key of one of them, for the verbs that read
	// snapshots. A backup never needs it.
	Identity setting.Secret `envconfig:"IDENTITY"`
}

// Verbs and the accepted values of the enumerated variables.
var (
	Verbs             = []string{"backup", "restore", "list", "prune", "verify", "files", "version"}
	CompressionLevels = []string{"fastest", "default", "better", "best"}
	IfMissingValues   = []string{"fail", "ok"}
	IfNotEmptyValues  = []string{"fail", "skip", "overwrite"}
	LogFormats        = []string{"json", "text"}
	LogLevels         = []string{"debug", "info", "warn", "error"}
)

// provider is what Load needs of one store provider's settings.
type provider struct {
	name string
	// detectVariable picks the provider when SNAPSHOT_CLOUD_PROVIDER is
	// unset; detected says whether it is set.
	detectVariable string
	detected       bool
	// problems is the provider's own validation.
	problems func() []string
}

// providers are the store providers built into the job, in the order
// messages name them.
func (c Config) providers() []provider {
	return []provider{
		{s3.Name, s3.DetectVariable, c.S3.Detected(), c.S3.Problems},
		{azblob.Name, azblob.DetectVariable, c.Azure.Detected(), c.Azure.Problems},
		{gcs.Name, gcs.DetectVariable, c.GCS.Detected(), c.GCS.Problems},
		{file.Name, file.DetectVariable, c.File.Detected(), c.File.Problems},
	}
}

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
	c.Metrics.Namespace = strings.TrimSpace(os.Getenv(metrics.NamespaceVariable))
	warnings, problems := UnknownVariables(os.Environ(), c.AllowUnknown)
	if err != nil {
		return c, warnings, errors.Join(err, setting.Invalid(problems))
	}
	c.Prefix = NormalizePrefix(c.Prefix)
	c.detectProvider()
	if c.Restore.Dir == "" {
		c.Restore.Dir = c.SourceDir
	}
	c.Restore.Selection, _ = archive.ParsePaths(c.Restore.Paths) // problems() reports the error
	return c, warnings, setting.Invalid(append(problems, c.problems()...))
}

// detectProvider picks the provider when SNAPSHOT_CLOUD_PROVIDER is unset
// and exactly one provider's required setting is: upstream Kubeshark's
// ConfigMaps carry the bucket or account but no provider key.
func (c *Config) detectProvider() {
	if c.Provider != "" {
		return
	}
	var found []string
	for _, p := range c.providers() {
		if p.detected {
			found = append(found, p.name)
		}
	}
	if len(found) == 1 {
		c.Provider, c.ProviderDetected = found[0], true
	}
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
	err := envconfig.Process(setting.Prefix, c)
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s=%q: %s", setting.ErrInvalid, pe.KeyName, pe.Value, describeParseError(pe))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", setting.ErrInvalid, err)
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
// with the variable's name; the selected provider checks its own.
func (c Config) problems() []string {
	p := setting.NewProblems(setting.Prefix + "_")
	var names, variables []string
	var selected *provider
	for _, pr := range c.providers() {
		names, variables = append(names, pr.name), append(variables, pr.detectVariable)
		if pr.name == c.Provider {
			selected = &pr
		}
	}
	if c.Provider == "" {
		p.Add("CLOUD_PROVIDER", "is required unless exactly one of %s is set; use one of %s", strings.Join(variables, ", "), setting.QuoteList(names))
	} else {
		p.OneOf("CLOUD_PROVIDER", c.Provider, names)
	}
	p.Check("NAME", checkName(c.Name))
	p.Check("CLOUD_PREFIX", checkPrefix(c.Prefix, c.Name))
	p.OneOf("MODE", c.Mode, Verbs)
	p.OneOf("COMPRESSION_LEVEL", c.CompressionLevel, CompressionLevels)
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		p.Add("UPLOAD_CONCURRENCY", "%d is out of range; use 1 to 64", c.UploadConcurrency)
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		p.Add("PART_SIZE", "%s is out of range; use 5MiB to 4000MiB", c.PartSize)
	}
	if c.ProgressInterval < setting.Duration(100*time.Millisecond) {
		p.Add("PROGRESS_INTERVAL", "%s is too short; use 100ms or more", c.ProgressInterval)
	}
	if c.IOTimeout < setting.Duration(time.Second) {
		p.Add("IO_TIMEOUT", "%s is too short; use 1s or more (default 60s)", c.IOTimeout)
	}
	p.OneOf("LOG_FORMAT", c.LogFormat, LogFormats)
	p.OneOf("LOG_LEVEL", c.LogLevel, LogLevels)
	for name, v := range map[string]int{"KEEP_LAST": c.Retention.KeepLast, "KEEP_DAILY": c.Retention.KeepDaily, "KEEP_WEEKLY": c.Retention.KeepWeekly, "KEEP_MONTHLY": c.Retention.KeepMonthly} {
		if v < 0 {
			p.Add("RETENTION_"+name, "%d is negative; use 0 (off) or a positive count", v)
		}
	}
	if c.Restore.Key != "latest" {
		p.Check("RESTORE_KEY", checkRestoreKey(c.Restore.Key))
	}
	if _, err := archive.ParsePaths(c.Restore.Paths); err != nil {
		var pe *archive.PatternError
		if errors.As(err, &pe) {
			p.Add("RESTORE_PATHS", "%s", pe.Problem)
		}
	}
	p.OneOf("RESTORE_IF_MISSING", c.Restore.IfMissing, IfMissingValues)
	p.OneOf("RESTORE_IF_NOT_EMPTY", c.Restore.IfNotEmpty, IfNotEmptyValues)
	if c.SourceDir == "" {
		p.Add("SOURCE_DIR", "is empty; use the path of the snapshot volume")
	}
	if c.Encryption.Recipients != "" {
		if _, err := archive.ParseRecipients(c.Encryption.Recipients); err != nil {
			p.Add("ENCRYPTION_RECIPIENTS", "%s", err)
		}
	}
	if c.Encryption.Identity != "" {
		if _, err := archive.ParseIdentities(c.Encryption.Identity.Reveal()); err != nil {
			p.Add("ENCRYPTION_IDENTITY", "%s", err)
		}
	}
	if c.S3.ObjectLock() && c.Provider != "" && c.Provider != s3.Name {
		// Ignoring them would store snapshots anyone with the job's
		// credentials can erase, which the operator asked not to.
		p.Add("AWS_OBJECT_LOCK_MODE", "Object Lock (SNAPSHOT_AWS_OBJECT_LOCK_MODE, SNAPSHOT_AWS_OBJECT_LOCK_DAYS) is not supported for this provider yet (SNAPSHOT_CLOUD_PROVIDER=%s): unset both, or use s3", c.Provider)
	}
	problems := append(p.List(), c.Metrics.Problems()...)
	if selected != nil {
		problems = append(problems, selected.problems()...)
	}
	return problems
}
