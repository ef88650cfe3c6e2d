package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCountingProxy sends requests through the proxy to a real HTTP
// server and checks the counted body bytes and requests, including a
// ranged read and a body the client stops reading.
func TestCountingProxy(t *testing.T) {
	body := strings.Repeat("0123456789", 1000) // 10,000 bytes
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			t.Error("the proxy dropped the Host header")
		}
		http.ServeContent(w, r, "obj", time.Time{}, strings.NewReader(body))
	}))
	defer up.Close()
	p, err := StartCountingProxy(up.URL, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func(rng string) string {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/b/k", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(""); got != body {
		t.Fatalf("proxied body differs: %d bytes", len(got))
	}
	if got := get("bytes=100-199"); got != body[100:200] {
		t.Fatalf("ranged body %q", got)
	}
	req, _ := http.NewRequest(http.MethodHead, p.URL+"/b/k", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if c := p.Counts(); c.Bytes != 10000+100 || c.Requests != 3 {
		t.Errorf("counted %d bytes in %d requests, want 10100 in 3 (a HEAD has no body)", c.Bytes, c.Requests)
	}
	before := p.Counts()
	get("bytes=0-9")
	if d := p.Counts().Sub(before); d.Bytes != 10 || d.Requests != 1 {
		t.Errorf("difference %+v, want 10 bytes in 1 request", d)
	}
}
