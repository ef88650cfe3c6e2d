package kube

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// s3Op names the S3 operation of a request, as far as the scenarios need.
func s3Op(r *http.Request) string {
	q := r.URL.Query()
	_, uploads := q["uploads"]
	_, del := q["delete"]
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPost && del:
		return "DeleteObjects"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	case r.Method == http.MethodGet && q.Has("list-type"):
		return "ListObjectsV2"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodHead:
		return "Head"
	}
	return r.Method
}

// verdict is what the proxy does with one request.
type verdict struct {
	// hold keeps the request until release (or until the client gives up).
	hold bool
	// status, when set, is answered with an S3 error of this code.
	status int
	code   string
}

// faultProxy stands between the binary and versitygw and fails or holds
// the requests a rule picks, so that a scenario can stop a pod mid-upload
// or make pruning fail.
type faultProxy struct {
	Endpoint string

	mu      sync.Mutex
	rule    func(op string) verdict
	release chan struct{}
	held    chan struct{}
	heldN   int
	seen    map[string]int
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{release: make(chan struct{}), held: make(chan struct{}), seen: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	// A client that gives up (a stopped pod) is what the scenarios cause.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := s3Op(r)
		p.mu.Lock()
		p.seen[op]++
		v := verdict{}
		if p.rule != nil {
			v = p.rule(op)
		}
		release := p.release
		if v.hold {
			p.heldN++
			if p.heldN == 1 {
				close(p.held)
			}
		}
		p.mu.Unlock()
		if v.hold {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		if v.status != 0 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(v.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the test</Message></Error>`, v.code)
			return
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		p.Release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p.Endpoint = "http://" + l.Addr().String()
	return p
}

// setRule replaces the rule (nil: pass everything).
func (p *faultProxy) setRule(rule func(op string) verdict) {
	p.mu.Lock()
	p.rule = rule
	p.mu.Unlock()
}

// holdOps holds every request of these operations until Release.
func (p *faultProxy) holdOps(ops ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.release = make(chan struct{})
	p.held = make(chan struct{})
	p.heldN = 0
	p.rule = func(op string) verdict {
		for _, o := range ops {
			if o == op {
				return verdict{hold: true}
			}
		}
		return verdict{}
	}
}

// waitHeld waits until a request is being held.
func (p *faultProxy) waitHeld(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	select {
	case <-held:
	case <-time.After(2 * time.Minute):
		t.Fatal("no request reached the held operation")
	}
}

// Release lets held requests go on and holds no more.
func (p *faultProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = nil
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func (p *faultProxy) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[op]
}
