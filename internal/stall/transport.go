package stall

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Transport is the HTTP transport of a provider that moves concurrency
// parts or ranges at once: connections dropped after stall without
// progress (Dialer), enough idle connections for the parts in flight (the
// default keeps 2 per host, which would open a new TLS connection for
// most parts), and HTTP/1.1 only, since parallel parts want parallel TCP
// connections, not one multiplexed one. It clones net/http's default so
// that proxies and SSL_CERT_FILE still apply.
func Transport(concurrency int, stall time.Duration) *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	t.DialContext = Dialer((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext, stall)
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.MaxIdleConnsPerHost = 2*concurrency + 4
	t.MaxIdleConns = 2*concurrency + 16
	t.IdleConnTimeout = 90 * time.Second
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.MinVersion = tls.VersionTLS12
	return t
}
