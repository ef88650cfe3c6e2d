package metrics

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// env is the prefix of the metrics variables; the job's config package
// reads Config under it (its field tag "METRICS").
const env = setting.Prefix + "_METRICS_"

// NamespaceVariable is where the pod's namespace comes from: the
// downward API (fieldRef metadata.namespace), as the chart sets it.
const NamespaceVariable = "POD_NAMESPACE"

// DefaultJob is the Pushgateway job label when SNAPSHOT_METRICS_JOB is
// unset.
const DefaultJob = "snapshot-job"

// Config is where and under which grouping key a run's metrics are
// pushed, SNAPSHOT_METRICS_*; the tags name each variable after the
// prefix.
type Config struct {
	// PushgatewayURL may carry user:password for basic auth, so it is
	// kept as a secret: it never prints.
	PushgatewayURL setting.Secret `envconfig:"PUSHGATEWAY_URL"`
	Job            string         `envconfig:"JOB" default:"snapshot-job"`
	// CronJob names the CronJob whose Jobs run the job; there is no
	// downward API for a pod's owner, so the chart sets it.
	CronJob string `envconfig:"CRONJOB"`
	// Namespace is POD_NAMESPACE, read by the config package.
	Namespace string `ignored:"true"`
}

// Enabled reports whether a Pushgateway is set.
func (c Config) Enabled() bool { return c.PushgatewayURL != "" }

// Problems checks the settings before any work starts and returns what
// is wrong, each entry starting with the variable's name; nil when they
// can work. The URL is never echoed: it may hold a password.
func (c Config) Problems() []string {
	p := setting.NewProblems(env)
	if c.Enabled() {
		if _, _, err := endpoint(c.PushgatewayURL.Reveal()); err != "" {
			p.Add("PUSHGATEWAY_URL", "%s; use the Pushgateway's base URL, e.g. http://prometheus-pushgateway.monitoring:9091", err)
		}
	}
	for _, v := range []struct{ name, value string }{{"JOB", c.Job}, {"CRONJOB", c.CronJob}} {
		if !utf8.ValidString(v.value) {
			p.Add(v.name, "is not valid UTF-8, which a Prometheus label value must be")
		}
	}
	if strings.TrimSpace(c.Job) == "" {
		p.Add("JOB", "is empty; leave it unset for %q or name the Pushgateway job", DefaultJob)
	}
	return p.List()
}

// endpoint splits raw into the URL to push to, without user information,
// and the basic-auth user information it held (nil when none). Keeping
// credentials out of the URL keeps them out of every error the push
// library and net/http return, since both quote the URL. problem says
// what is wrong without quoting raw.
func endpoint(raw string) (base string, user *url.Userinfo, problem string) {
	if r, i := setting.FirstSpace(raw); i >= 0 {
		return "", nil, "holds " + setting.DescribeRune(r) + " and must be one word"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		// url.Error quotes the whole value: say only that it does not parse.
		return "", nil, "is not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "", nil, "must start with http:// or https://"
	case u.Host == "" || u.Hostname() == "":
		return "", nil, "names no host"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", nil, "must have no query (?) or fragment (#)"
	case strings.Contains(u.Path, "/metrics/job"):
		return "", nil, "must not include the /metrics/job/... part: the job adds it from SNAPSHOT_METRICS_JOB and its grouping labels"
	}
	user, u.User = u.User, nil
	return strings.TrimSuffix(u.String(), "/"), user, ""
}

// Redacted is the Pushgateway URL without user information, for logs.
func (c Config) Redacted() string {
	base, _, problem := endpoint(c.PushgatewayURL.Reveal())
	if problem != "" {
		return "[invalid]"
	}
	return base
}
