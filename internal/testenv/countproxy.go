package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

// CountingProxy is a reverse proxy in front of a real server that counts
// what the server sent: the response body bytes and the requests. What a
// test or a benchmark says was fetched comes from here, off the wire, not
// from what a client says it read.
type CountingProxy struct {
	URL      string // what clients are pointed at
	srv      *http.Server
	ln       net.Listener
	bytes    atomic.Int64
	requests atomic.Int64
}

// Counts is a snapshot of the proxy's counters.
type Counts struct{ Bytes, Requests int64 }

// Sub is what was counted between o and c.
func (c Counts) Sub(o Counts) Counts { return Counts{c.Bytes - o.Bytes, c.Requests - o.Requests} }

// Counts returns the counters now.
func (p *CountingProxy) Counts() Counts {
	return Counts{p.bytes.Load(), p.requests.Load()}
}

// countingBody counts the bytes read through it into n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// newCountingHandler proxies to target (through transport) and counts
// every request and every response body byte the target sent.
func newCountingHandler(target *url.URL, transport http.RoundTripper, p *CountingProxy) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// SigV4 signs the Host the client used (the proxy's); the
			// server must see the same one.
			r.Out.Host = r.In.Host
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = countingBody{resp.Body, &p.bytes}
			return nil
		},
		ErrorLog: nil,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		rp.ServeHTTP(w, r)
	})
}

// StartCountingProxy listens on a free port of 127.0.0.1 and proxies to
// upstream. With certFile and keyFile it serves HTTPS itself, and trusts
// caFile for an https upstream.
func StartCountingProxy(upstream, certFile, keyFile, caFile string) (*CountingProxy, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DisableCompression = true
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{ln: ln}
	p.srv = &http.Server{Handler: newCountingHandler(target, tr, p), ReadHeaderTimeout: 30 * time.Second}
	scheme := "http"
	serve := func() error { return p.srv.Serve(ln) }
	if certFile != "" {
		scheme = "https"
		serve = func() error { return p.srv.ServeTLS(ln, certFile, keyFile) }
	}
	p.URL = scheme + "://" + ln.Addr().String()
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "counting proxy:", err)
		}
	}()
	return p, nil
}

// Close stops the proxy.
func (p *CountingProxy) Close() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}
