package file

import "github.com/snapshot-job/snapshot-job/internal/setting"

// Name is this provider's SNAPSHOT_CLOUD_PROVIDER value.
const Name = "file"

// env is the prefix of this provider's variables; the job's config
// package reads Config under it (its field tag "FILE").
const env = setting.Prefix + "_FILE_"

// DetectVariable is the setting that picks this provider when
// SNAPSHOT_CLOUD_PROVIDER is unset and no other provider's is set.
const DetectVariable = env + "DIR"

// Config is the local-directory store's settings, SNAPSHOT_FILE_*; the
// tags name each variable after the prefix.
type Config struct {
	Dir string `envconfig:"DIR"`
}

// Detected reports whether DetectVariable is set.
func (c Config) Detected() bool { return c.Dir != "" }

// Problems checks the settings before any work starts and returns what
// is wrong, each entry starting with the variable's name; nil when they
// can work.
func (c Config) Problems() []string {
	p := setting.NewProblems(env)
	if c.Dir == "" {
		p.Add("DIR", "is required with SNAPSHOT_CLOUD_PROVIDER=file; use the directory that holds the snapshots")
	}
	return p.List()
}
