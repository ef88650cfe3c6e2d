package testenv

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFaultProxy(t *testing.T) {
	body := strings.Repeat("0123456789", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	p := StartFaultProxy(t, srv.URL)
	get := func() (string, int, error) {
		resp, err := http.Get(p.URL + "/x")
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), resp.StatusCode, err
	}
	if got, code, err := get(); err != nil || code != 200 || got != body {
		t.Fatalf("forward: %d %v (%d bytes)", code, err, len(got))
	}
	p.SetRule(func(*http.Request, int) Fault { return Fault{Status: 503, Header: http.Header{"X-Test": {"yes"}}} })
	if resp, err := http.Get(p.URL + "/x"); err != nil || resp.StatusCode != 503 || resp.Header.Get("X-Test") != "yes" {
		t.Fatalf("status fault: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	p.SetRule(func(*http.Request, int) Fault { return Fault{Reset: true} })
	if _, _, err := get(); err == nil {
		t.Fatal("reset fault: request succeeded")
	}
	p.SetRule(func(*http.Request, int) Fault { return Fault{CutAfter: 5000} })
	got, _, err := get()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 5000 {
		t.Fatalf("cut fault: %d bytes, err %v", len(got), err)
	}
	p.SetRule(func(*http.Request, int) Fault { return Fault{FlipAt: 12345, FlipSet: true} })
	got, _, err = get()
	if err != nil || len(got) != len(body) || got == body || got[:12345] != body[:12345] || got[12346:] != body[12346:] {
		t.Fatalf("flip fault: err %v, changed=%v", err, got != body)
	}
	// HoldResponse: the server sees the request, the client gives up.
	var served atomic.Int32
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer held.Close()
	hp := StartFaultProxy(t, held.URL)
	hp.SetRule(func(*http.Request, int) Fault { return Fault{HoldResponse: time.Hour} })
	hc := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := hc.Get(hp.URL + "/held"); err == nil {
		resp.Body.Close()
		t.Fatal("hold fault: got an answer")
	}
	if served.Load() != 1 {
		t.Fatalf("hold fault: server saw %d requests, want 1", served.Load())
	}
	// net/http retries a GET once on a reused connection that was reset.
	if r := p.Requests(); len(r) < 5 || r[0] != "GET /x" {
		t.Fatalf("Requests() = %q, want at least 5 GET /x", r)
	}
}
