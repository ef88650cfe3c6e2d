package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"
)

// PushgatewayBin is where Debian's prometheus-pushgateway package puts
// the server; `make tools` installs it when it is missing.
const PushgatewayBin = "/usr/bin/prometheus-pushgateway"

// Pushgateway is a Prometheus Pushgateway on 127.0.0.1, without
// persistence, stopped when the test ends.
type Pushgateway struct {
	URL    string // base URL, e.g. http://127.0.0.1:41234
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
	// user and password are the basic-auth credentials every request
	// needs, when set (WithBasicAuth).
	user, password string
}

// PushgatewayOption changes how StartPushgateway runs the server.
type PushgatewayOption func(*Pushgateway)

// WithBasicAuth makes the Pushgateway refuse every request (401) without
// these basic-auth credentials.
func WithBasicAuth(user, password string) PushgatewayOption {
	return func(p *Pushgateway) { p.user, p.password = user, password }
}

// StartPushgateway starts the Pushgateway on a free port and waits until
// it is ready. It fails the test when the binary is missing.
func StartPushgateway(t testing.TB, opts ...PushgatewayOption) *Pushgateway {
	t.Helper()
	bin := PushgatewayBin
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("prometheus-pushgateway"); err != nil {
			t.Fatalf("%s is missing: run `make tools` (make test does it; it installs the Debian package prometheus-pushgateway)", PushgatewayBin)
		}
	}
	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		port, err := probePort()
		if err != nil {
			t.Fatal(err)
		}
		p := &Pushgateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuffer{}}
		for _, o := range opts {
			o(p)
		}
		// Debian's build persists to /var/lib/prometheus by default: an
		// empty file keeps the metrics in memory only, so that no test
		// sees another's groups.
		p.cmd = exec.Command(bin, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--persistence.file=", "--log.level=warn")
		if p.user != "" {
			hash, err := bcrypt.GenerateFromPassword([]byte(p.password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			// The exporter toolkit's web configuration.
			web := filepath.Join(t.TempDir(), "web.yml")
			if err := os.WriteFile(web, fmt.Appendf(nil, "basic_auth_users:\n  %s: %s\n", p.user, hash), 0o600); err != nil {
				t.Fatal(err)
			}
			p.cmd.Args = append(p.cmd.Args, "--web.config.file="+web)
		}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if lastErr = p.start(); lastErr == nil {
			t.Cleanup(func() {
				_ = p.cmd.Process.Kill()
				<-p.exited
				if t.Failed() {
					t.Logf("pushgateway output:\n%s", tail(p.out.String(), 4000))
				}
			})
			return p
		}
	}
	t.Fatalf("pushgateway did not start: %v", lastErr)
	return nil
}

func (p *Pushgateway) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited early: %s", tail(p.out.String(), 2000))
		default:
		}
		resp, err := p.get("/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("not ready after 20s (%v): %s", err, tail(p.out.String(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Pushgateway) get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, p.URL+path, nil)
	if err != nil {
		return nil, err
	}
	if p.user != "" {
		req.SetBasicAuth(p.user, p.password)
	}
	return http.DefaultClient.Do(req)
}

// Scrape returns the Pushgateway's /metrics as Prometheus scrapes it.
func (p *Pushgateway) Scrape(t testing.TB) string {
	t.Helper()
	resp, err := p.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// Sample is one scraped series: its labels and value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Series parses a scrape (Scrape's text format) into the samples of each
// metric name.
func Series(t testing.TB, text string) map[string][]Sample {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string][]Sample{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := Sample{Labels: map[string]string{}, Value: value(mf.GetType(), m)}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// Hanging listens on 127.0.0.1 and accepts connections but never
// answers: a Pushgateway that hangs. It returns its base URL.
func Hanging(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn // held open, never read or answered
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}
