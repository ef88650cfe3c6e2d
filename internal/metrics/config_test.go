package metrics

import (
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		url, job string
		want     string // "" when valid
	}{
		{"", "snapshot-job", ""},
		{"http://pushgateway:9091", "snapshot-job", ""},
		{"https://ops:s3cr3t-pw@pushgateway.example.com/prefix/", "snapshot-job", ""},
		{"http://[::1]:9091", "j", ""},
		{"pushgateway:9091", "snapshot-job", "must start with http:// or https://"},
		{"ftp://pushgateway", "snapshot-job", "must start with http:// or https://"},
		{"http://", "snapshot-job", "names no host"},
		{"http://ops:s3cr3t-pw@", "snapshot-job", "names no host"},
		{"http://ops:s3cr3t-pw@pushgateway:port", "snapshot-job", "is not a valid URL"},
		{"http://ops:s3cr3t-pw@push gateway:9091", "snapshot-job", "holds a space"},
		{"http://pushgateway:9091/?x=s3cr3t-pw", "snapshot-job", "no query"},
		{"http://pushgateway:9091/#s3cr3t-pw", "snapshot-job", "no query"},
		{"http://pushgateway:9091/metrics/job/backup", "snapshot-job", "must not include the /metrics/job"},
		{"http://pushgateway:9091", " ", "SNAPSHOT_METRICS_JOB: is empty"},
		{"http://pushgateway:9091", "\xff", "SNAPSHOT_METRICS_JOB: is not valid UTF-8"},
	} {
		p := Config{PushgatewayURL: setting.Secret(tc.url), Job: tc.job}.Problems()
		got := strings.Join(p, "; ")
		switch {
		case tc.want == "" && len(p) != 0:
			t.Errorf("%q: problems %q, want none", tc.url, p)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%q: problems %q, want one with %q", tc.url, p, tc.want)
		}
		if strings.Contains(got, "s3cr3t") {
			t.Errorf("%q: the problem quotes the URL's secret: %q", tc.url, got)
		}
	}
}

func TestEndpointDropsUserinfo(t *testing.T) {
	base, user, problem := endpoint("https://ops:pa55@pushgateway.example.com:9091/gw/")
	if problem != "" || base != "https://pushgateway.example.com:9091/gw" {
		t.Fatalf("base %q, problem %q", base, problem)
	}
	if pw, _ := user.Password(); user.Username() != "ops" || pw != "pa55" {
		t.Errorf("user %v", user)
	}
	if _, user, _ := endpoint("http://pushgateway:9091"); user != nil {
		t.Errorf("user %v, want nil", user)
	}
}
