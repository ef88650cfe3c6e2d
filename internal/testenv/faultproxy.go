// Package testenv starts the real servers the tests talk to and puts fault
// injection between them and the job. It is used only by tests.
package testenv

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Fault is what the proxy does to one request. The zero Fault forwards it.
type Fault struct {
	// Status answers with this HTTP status instead of forwarding.
	Status int
	// Body is sent with Status (e.g. an S3 <Error> document).
	Body string
	// Header is added to the answer sent with Status.
	Header http.Header
	// Reset closes the connection without answering.
	Reset bool
	// Hang never answers; the request ends only when the client gives up
	// or the proxy closes.
	Hang bool
	// Delay waits before forwarding.
	Delay time.Duration
	// CutAfter forwards the request but aborts the response body after
	// this many bytes (the client sees the connection drop). 0 = off.
	CutAfter int64
	// FlipAt forwards the request but flips one bit of the response body
	// at this byte offset. -1 or 0 with FlipSet false = off.
	FlipAt  int64
	FlipSet bool
	// HoldResponse forwards the request, so the server acts on it, then
	// holds the answer back this long (or until the client gives up): the
	// client cannot tell whether its request took effect.
	HoldResponse time.Duration
}

// Rule chooses the fault for a request. n counts requests from 1.
type Rule func(r *http.Request, n int) Fault

// FaultProxy is a reverse proxy in front of a real server.
type FaultProxy struct {
	URL string // base URL to give the client instead of the server's

	srv  *httptest.Server
	mu   sync.Mutex
	rule Rule
	n    int
	log  []string
	done chan struct{}
}

// StartFaultProxy proxies to target (a base URL) until the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{done: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	// A nil ErrorLog logs through the log package: every injected fault
	// and client abort would print "http: proxy error" into test output.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}))
	p.URL = p.srv.URL
	t.Cleanup(p.Close)
	return p
}

// SetRule replaces the rule; nil forwards everything.
func (p *FaultProxy) SetRule(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = r
}

// Requests returns "METHOD path?query" for every request seen so far.
func (p *FaultProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Close stops the proxy and releases hanging requests.
func (p *FaultProxy) Close() {
	select {
	case <-p.done:
		return
	default:
		close(p.done)
	}
	p.srv.CloseClientConnections()
	p.srv.Close()
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	p.mu.Lock()
	p.n++
	n, rule := p.n, p.rule
	p.log = append(p.log, r.Method+" "+r.URL.RequestURI())
	p.mu.Unlock()
	var f Fault
	if rule != nil {
		f = rule(r, n)
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		}
	}
	switch {
	case f.Hang:
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		resetConn(w)
	case f.Reset:
		resetConn(w)
	case f.Status != 0:
		w.Header().Set("Content-Type", "application/xml")
		for k, v := range f.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
	case f.CutAfter > 0 || f.FlipSet || f.HoldResponse > 0:
		rp.ServeHTTP(&tamperWriter{ResponseWriter: w, cut: f.CutAfter, flip: f.FlipAt, flipSet: f.FlipSet,
			hold: f.HoldResponse, cancel: r.Context().Done(), done: p.done}, r)
	default:
		rp.ServeHTTP(w, r)
	}
}

// resetConn drops the connection without an HTTP answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN
	}
	_ = conn.Close()
}

var errCut = errors.New("fault proxy: response cut")

// tamperWriter cuts or alters a response body on its way to the client.
type tamperWriter struct {
	http.ResponseWriter
	written int64
	cut     int64
	flip    int64
	flipSet bool
	hold    time.Duration
	cancel  <-chan struct{} // the client's request ended
	done    <-chan struct{} // the proxy closed
}

func (t *tamperWriter) WriteHeader(code int) {
	if t.hold > 0 {
		select {
		case <-time.After(t.hold):
		case <-t.cancel:
		case <-t.done:
		}
		t.hold = 0
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tamperWriter) Write(b []byte) (int, error) {
	if t.flipSet && t.flip >= t.written && t.flip < t.written+int64(len(b)) {
		c := append([]byte(nil), b...)
		c[t.flip-t.written] ^= 0x40
		b = c
	}
	if t.cut > 0 && t.written+int64(len(b)) > t.cut {
		n, _ := t.ResponseWriter.Write(b[:t.cut-t.written])
		t.written += int64(n)
		http.NewResponseController(t.ResponseWriter).Flush()
		// ReverseProxy answers a failed body copy by aborting the
		// connection, which is exactly the fault wanted.
		return n, errCut
	}
	n, err := t.ResponseWriter.Write(b)
	t.written += int64(n)
	return n, err
}

func (t *tamperWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
