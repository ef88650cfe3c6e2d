package gcs

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// Name is this provider's SNAPSHOT_CLOUD_PROVIDER value.
const Name = "gcs"

// env is the prefix of this provider's variables; the job's config
// package reads Config under it (its field tag "GCS").
const env = setting.Prefix + "_GCS_"

// DetectVariable is the setting that picks this provider when
// SNAPSHOT_CLOUD_PROVIDER is unset and no other provider's is set
// (upstream ConfigMaps carry the bucket but no provider key).
const DetectVariable = env + "BUCKET"

// Config is the Google Cloud Storage settings, SNAPSHOT_GCS_*. Bucket,
// Project and CredentialsJSON are upstream Kubeshark's names; the tags
// name each variable after the prefix. Project is the bucket's project,
// named in messages: no object request needs it, and sending it as the
// quota project would need one more permission (serviceusage).
type Config struct {
	Bucket          string         `envconfig:"BUCKET"`
	Project         string         `envconfig:"PROJECT"`
	CredentialsJSON setting.Secret `envconfig:"CREDENTIALS_JSON"`
	Endpoint        string         `envconfig:"ENDPOINT"`

	// CheckPrefix is SNAPSHOT_CLOUD_PREFIX, under which Check lists one
	// object when the identity may not read the bucket's metadata. The
	// command sets it; it is no variable of its own.
	CheckPrefix string `ignored:"true"`
}

// Detected reports whether DetectVariable is set.
func (c Config) Detected() bool { return c.Bucket != "" }

// Problems checks the settings before any work starts and returns what
// is wrong, each entry starting with the variable's name; nil when they
// can work. New checks again what only it can (the key with the Google
// client's own parser, the endpoint's URL).
func (c Config) Problems() []string {
	p := setting.NewProblems(env)
	if c.Bucket == "" {
		p.Add("BUCKET", "is required with SNAPSHOT_CLOUD_PROVIDER=gcs")
	} else {
		p.Check("BUCKET", checkBucket(c.Bucket))
	}
	if c.Project != "" {
		p.Check("PROJECT", checkProject(c.Project))
	}
	if key := c.CredentialsJSON.Reveal(); key != "" {
		p.Check("CREDENTIALS_JSON", checkKey([]byte(key)))
	}
	p.OneWord("ENDPOINT", c.Endpoint)
	return p.List()
}

// bucketRE is Google's bucket naming rule: 3 to 63 characters (222 with
// dots, each dot-separated part at most 63) of lower-case letters, digits,
// '-', '_' and '.', starting and ending with a letter or digit.
var (
	bucketRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
	projectRE = regexp.MustCompile(`^[a-z0-9:.-]+$`)
)

func checkBucket(b string) string {
	if rest, ok := strings.CutPrefix(b, "gs://"); ok {
		return fmt.Sprintf("%s is a URL; use the bucket's name alone (%s)", setting.Quoted(b), setting.Quoted(strings.TrimSuffix(rest, "/")))
	}
	if i := strings.IndexByte(b, '/'); i >= 0 {
		return fmt.Sprintf("%s holds '/'; a bucket name has no folders: put %s in SNAPSHOT_CLOUD_PREFIX and %s in SNAPSHOT_GCS_BUCKET",
			setting.Quoted(b), setting.Quoted(b[i+1:]+"/"), setting.Quoted(b[:i]))
	}
	if !bucketRE.MatchString(b) {
		if len(b) < 3 {
			return fmt.Sprintf("%s is too short; a bucket name has 3 to 63 characters", setting.Quoted(b))
		}
		return fmt.Sprintf("%s %s; a bucket name has 3 to 63 lower-case letters, digits, '-', '_' and '.', and starts and ends with a letter or digit", setting.Quoted(b), setting.Offending(b, bucketRE))
	}
	tooLong := !strings.Contains(b, ".") && len(b) > 63
	for part := range strings.SplitSeq(b, ".") {
		tooLong = tooLong || len(part) > 63
	}
	if tooLong {
		return fmt.Sprintf("%s is too long; a bucket name has at most 63 characters (222 with dots, at most 63 between two)", setting.Quoted(b))
	}
	return ""
}

func checkProject(p string) string {
	if projectRE.MatchString(p) {
		return ""
	}
	return fmt.Sprintf("%s %s; a project ID has lower-case letters, digits and '-', like my-project-123456", setting.Quoted(p), setting.Offending(p, projectRE))
}

// keyFile is what checkKey reads of a credentials JSON file.
type keyFile struct {
	Type        string `json:"type"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	ProjectID   string `json:"project_id"`
}

// checkKey says what is wrong with a service-account key, without ever
// quoting it: Google's parser would only fail later, or accept another
// kind of credentials (a user's refresh token, an external account) that
// upstream does not take here.
func checkKey(b []byte) string {
	var k keyFile
	if err := json.Unmarshal(b, &k); err != nil {
		return "is not JSON: paste the whole service-account key file (gcloud iam service-accounts keys create key.json), not a path or a part of it"
	}
	switch {
	case k.Type == "":
		return "has no \"type\": it is not a credentials file; use a service-account key file"
	case k.Type != "service_account" && len(k.Type) <= 40:
		return fmt.Sprintf("is a %q credential, not a service-account key: create a key for a service account, or leave SNAPSHOT_GCS_CREDENTIALS_JSON unset to use Application Default Credentials (GKE workload identity)", k.Type)
	case k.Type != "service_account":
		return "is not a service-account key: create a key for a service account, or leave SNAPSHOT_GCS_CREDENTIALS_JSON unset to use Application Default Credentials (GKE workload identity)"
	case k.ClientEmail == "" || k.PrivateKey == "":
		return "is a service-account key without \"client_email\" or \"private_key\": paste the whole key file"
	}
	if blk, _ := pem.Decode([]byte(k.PrivateKey)); blk == nil {
		return "has a \"private_key\" that is not a PEM key: paste the key file as Google issued it (its line breaks written \\n)"
	}
	return ""
}
