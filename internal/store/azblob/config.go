package azblob

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// Name is this provider's SNAPSHOT_CLOUD_PROVIDER value.
const Name = "azblob"

// env is the prefix of this provider's variables; the job's config
// package reads Config under it (its field tag "AZBLOB").
const env = setting.Prefix + "_AZBLOB_"

// DetectVariable is the setting that picks this provider when
// SNAPSHOT_CLOUD_PROVIDER is unset and no other provider's is set
// (upstream ConfigMaps carry the account but no provider key).
const DetectVariable = env + "STORAGE_ACCOUNT"

// Config is the Azure Blob Storage settings, SNAPSHOT_AZBLOB_*. Names
// match upstream Kubeshark's; the tags name each variable after the
// prefix.
type Config struct {
	Account    string         `envconfig:"STORAGE_ACCOUNT"`
	Container  string         `envconfig:"CONTAINER"`
	StorageKey setting.Secret `envconfig:"STORAGE_KEY"`
	Endpoint   string         `envconfig:"ENDPOINT"`
	AccessTier string         `envconfig:"ACCESS_TIER"`
}

// AccessTiers are the accepted values of SNAPSHOT_AZBLOB_ACCESS_TIER.
var AccessTiers = []string{"", "Hot", "Cool", "Cold", "Archive"}

// Detected reports whether DetectVariable is set.
func (c Config) Detected() bool { return c.Account != "" }

// Problems checks the settings before any work starts and returns what
// is wrong, each entry starting with the variable's name; nil when they
// can work. New checks again, with Azure's own rules (the container
// name, the key's encoding, the endpoint's URL).
func (c Config) Problems() []string {
	p := setting.NewProblems(env)
	if c.Account == "" {
		p.Add("STORAGE_ACCOUNT", "is required with SNAPSHOT_CLOUD_PROVIDER=azblob")
	} else {
		p.Check("STORAGE_ACCOUNT", checkAccount(c.Account))
	}
	if c.Container == "" {
		p.Add("CONTAINER", "is required with SNAPSHOT_CLOUD_PROVIDER=azblob")
	} else {
		p.Check("CONTAINER", checkContainer(c.Container))
	}
	p.OneOf("ACCESS_TIER", c.AccessTier, AccessTiers)
	p.OneWord("STORAGE_KEY", c.StorageKey.Reveal())
	p.OneWord("ENDPOINT", c.Endpoint)
	return p.List()
}

// The characters of account and container names, as loose as the
// Azure-compatible stores allow (Azurite takes any account name),
// refusing only what can never work: white space, control characters,
// '/' and the other URL delimiters. Azure's own container rule is New's
// (containerRule).
var (
	accountRE   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	containerRE = regexp.MustCompile(`^[A-Za-z0-9$_.-]+$`)
)

func checkAccount(a string) string {
	if accountRE.MatchString(a) {
		return ""
	}
	if strings.Contains(a, ".") {
		return fmt.Sprintf("%s is a host name; use the storage account's name alone (%s), and SNAPSHOT_AZBLOB_ENDPOINT for a non-default endpoint", setting.Quoted(a), setting.Quoted(a[:strings.IndexByte(a, '.')]))
	}
	return fmt.Sprintf("%s %s; a storage account name has only letters and digits", setting.Quoted(a), setting.Offending(a, accountRE))
}

func checkContainer(c string) string {
	if containerRE.MatchString(c) {
		return ""
	}
	if i := strings.IndexByte(c, '/'); i >= 0 {
		return fmt.Sprintf("%s holds '/'; a container has no folders: put %s in SNAPSHOT_CLOUD_PREFIX and %s in SNAPSHOT_AZBLOB_CONTAINER",
			setting.Quoted(c), setting.Quoted(c[i+1:]+"/"), setting.Quoted(c[:i]))
	}
	return fmt.Sprintf("%s %s; a container name has only lower-case letters, digits and '-'", setting.Quoted(c), setting.Offending(c, containerRE))
}
