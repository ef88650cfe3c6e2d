package azblob

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func TestNewValidatesSettings(t *testing.T) {
	good := Config{Account: "acct", Container: "snaps", StorageKey: setting.Secret(testenv.AzuriteKey)}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" = no error
		method string
	}{
		{"shared key", func(*Config) {}, "", MethodSharedKey},
		{"no key: default azure credential", func(c *Config) { c.StorageKey = "" }, "", MethodDefaultAzure},
		{"azurite endpoint with key", func(c *Config) { c.Endpoint = "http://127.0.0.1:10000/acct" }, "", MethodSharedKey},
		{"sovereign cloud endpoint", func(c *Config) {
			c.StorageKey = ""
			c.Endpoint = "https://acct.blob.core.chinacloudapi.cn/"
		}, "", MethodDefaultAzure},
		{"missing account", func(c *Config) { c.Account = "" }, "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", ""},
		{"bad container", func(c *Config) { c.Container = "Snap_Shots" }, "SNAPSHOT_AZBLOB_CONTAINER", ""},
		{"container too short", func(c *Config) { c.Container = "ab" }, "SNAPSHOT_AZBLOB_CONTAINER", ""},
		{"key not base64", func(c *Config) { c.StorageKey = "not a key!" }, "SNAPSHOT_AZBLOB_STORAGE_KEY", ""},
		{"endpoint not a URL", func(c *Config) { c.Endpoint = "acct.blob.core.windows.net" }, "SNAPSHOT_AZBLOB_ENDPOINT", ""},
		{"endpoint with odd scheme", func(c *Config) { c.Endpoint = "ftp://acct.example" }, "SNAPSHOT_AZBLOB_ENDPOINT", ""},
		{"endpoint with a SAS", func(c *Config) { c.Endpoint = "https://acct.blob.core.windows.net/?sv=2020&sig=SECRET" }, "SAS", ""},
		{"token over http", func(c *Config) {
			c.StorageKey = ""
			c.Endpoint = "http://127.0.0.1:10000/acct"
		}, "https", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			s, err := New(t.Context(), cfg, store.Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if s.CredentialMethod() != tc.method {
					t.Fatalf("CredentialMethod() = %q, want %q", s.CredentialMethod(), tc.method)
				}
				if strings.Contains(s.String(), testenv.AzuriteKey) {
					t.Fatalf("String() leaks the key: %s", s)
				}
				return
			}
			if !errors.Is(err, setting.ErrInvalid) {
				t.Fatalf("New: err = %v, want setting.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "not a key!") {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestServiceURL(t *testing.T) {
	for _, tc := range []struct{ endpoint, want string }{
		{"", "https://acct.blob.core.windows.net"},
		{"https://acct.blob.core.usgovcloudapi.net/", "https://acct.blob.core.usgovcloudapi.net"},
		{"http://127.0.0.1:10000/acct", "http://127.0.0.1:10000/acct"},
		{" https://acct.privatelink.blob.core.windows.net ", "https://acct.privatelink.blob.core.windows.net"},
	} {
		got, err := serviceURL("acct", tc.endpoint)
		if err != nil || got != tc.want {
			t.Errorf("serviceURL(%q) = %q, %v; want %q", tc.endpoint, got, err, tc.want)
		}
	}
}

// scrubAzureEnv removes every variable the Azure identity libraries read,
// so the machine's own settings cannot decide a test.
func scrubAzureEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range []string{"AZURE_", "MSI_", "IDENTITY_", "IMDS_"} {
			if strings.HasPrefix(k, p) {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}
		}
	}
	// az, azd and pwsh must not be found even where they are installed.
	t.Setenv("PATH", t.TempDir())
}

// loopbackClient is an HTTP client that can only reach the loopback. It
// sends the names in routes (host:port) to local addresses instead, so
// that the IMDS probe and Entra ID requests of the real credential code
// reach local stand-ins and never leave the machine.
func loopbackClient(t *testing.T, roots *x509.CertPool, routes map[string]string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var mu sync.Mutex
	return &http.Client{Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			if to, ok := routes[addr]; ok {
				addr = to
			}
			mu.Unlock()
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("test transport: %s is not routed to the loopback", addr)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// hangingListener accepts connections and never answers, as an IMDS
// address that a network policy black-holes would.
func hangingListener(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

const imdsAddr = "169.254.169.254:80"

func TestNoIdentityIsAccessError(t *testing.T) {
	for _, tc := range []struct {
		name string
		imds func(t *testing.T) string // where the IMDS probe goes
	}{
		{"IMDS refuses", func(t *testing.T) string { return testenv.ClosedAddr(t) }},
		{"IMDS black-holed", hangingListener},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scrubAzureEnv(t)
			client := loopbackClient(t, nil, map[string]string{imdsAddr: tc.imds(t)})
			cfg := Config{Account: "acct", Container: "snaps", Endpoint: "https://" + testenv.ClosedAddr(t) + "/acct"}
			s, err := newStore(t.Context(), cfg, store.Options{Logger: testLogger(t)}, client)
			if err != nil {
				t.Fatal(err)
			}
			s.tm = fastTiming()
			if s.CredentialMethod() != MethodDefaultAzure {
				t.Fatalf("method = %q", s.CredentialMethod())
			}
			start := time.Now()
			err = s.Check(t.Context(), store.Write)
			t.Logf("Check after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if !errors.Is(err, store.ErrAccess) {
				t.Fatalf("Check without identity: err = %v, want ErrAccess", err)
			}
			for _, want := range []string{"acct", "snaps", MethodDefaultAzure, "SNAPSHOT_AZBLOB_STORAGE_KEY", "azure.workload.identity/use", "AZURE_FEDERATED_TOKEN_FILE", "ManagedIdentityCredential"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q", want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if _, err := s.Put(t.Context(), "a", bytes.NewReader(nil), store.PutOptions{}); !errors.Is(err, store.ErrAccess) {
				t.Errorf("Put without identity: err = %v, want ErrAccess", err)
			}
		})
	}
}

func TestCancelledWhileGettingToken(t *testing.T) {
	scrubAzureEnv(t)
	client := loopbackClient(t, nil, map[string]string{imdsAddr: hangingListener(t)})
	cfg := Config{Account: "acct", Container: "snaps", Endpoint: "https://" + testenv.ClosedAddr(t) + "/acct"}
	s, err := newStore(t.Context(), cfg, store.Options{Logger: testLogger(t)}, client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if err := s.Check(ctx, store.Write); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check cancelled during the IMDS probe: err = %v, want context.Canceled", err)
	}
}

// fakeEntra is a local Microsoft Entra ID: instance discovery, OpenID
// configuration and the token endpoint, enough for MSAL's client
// credentials flow with a federated assertion (workload identity). It
// hands out unsigned JWTs: Azurite's `--oauth basic` checks issuer,
// audience and lifetime, not signatures.
type fakeEntra struct {
	srv      *httptest.Server
	tenant   string
	clientID string
	mu       sync.Mutex
	issued   int
	audience string // of the tokens issued
	lastForm map[string]string
	assert   string // the only client_assertion accepted
}

func startFakeEntra(t *testing.T, cert *testenv.AzuriteCert, tenant, clientID, assertion string) *fakeEntra {
	f := &fakeEntra{tenant: tenant, clientID: clientID, assert: assertion, audience: "https://storage.azure.com"}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEntra) base() string { return f.srv.URL }

func (f *fakeEntra) serve(w http.ResponseWriter, r *http.Request) {
	host := strings.TrimPrefix(f.base(), "https://")
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/common/discovery/instance":
		writeJSON(map[string]any{
			"tenant_discovery_endpoint": f.base() + "/" + f.tenant + "/v2.0/.well-known/openid-configuration",
			"api-version":               "1.1",
			"metadata":                  []map[string]any{{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
		})
	case r.URL.Path == "/"+f.tenant+"/v2.0/.well-known/openid-configuration":
		writeJSON(map[string]any{
			"token_endpoint":         f.base() + "/" + f.tenant + "/oauth2/v2.0/token",
			"authorization_endpoint": f.base() + "/" + f.tenant + "/oauth2/v2.0/authorize",
			"issuer":                 f.base() + "/" + f.tenant + "/v2.0",
		})
	case r.URL.Path == "/"+f.tenant+"/oauth2/v2.0/token" && r.Method == http.MethodPost:
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		form := map[string]string{}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		f.mu.Lock()
		f.lastForm = form
		ok := form["grant_type"] == "client_credentials" &&
			form["client_id"] == f.clientID &&
			form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" &&
			form["client_assertion"] == f.assert &&
			slices.Contains(strings.Fields(form["scope"]), "https://storage.azure.com/.default")
		if ok {
			f.issued++
		}
		aud := f.audience
		f.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject."}`)
			return
		}
		now := time.Now().Unix()
		writeJSON(map[string]any{
			"token_type":     "Bearer",
			"expires_in":     3600,
			"ext_expires_in": 3600,
			"access_token": unsignedJWT(map[string]any{
				"aud": aud,
				"iss": "https://sts.windows.net/" + f.tenant + "/",
				"iat": now - 60, "nbf": now - 60, "exp": now + 3600,
				"appid": f.clientID, "tid": f.tenant, "oid": "00000000-0000-0000-0000-00000000beef",
			}),
		})
	default:
		http.NotFound(w, r)
	}
}

func unsignedJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString([]byte("not-verified"))
}

// TestWorkloadIdentity runs the real DefaultAzureCredential chain as a pod
// with the workload identity webhook sees it (AZURE_CLIENT_ID,
// AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST)
// against a local Entra ID, and uses the token against Azurite over HTTPS.
func TestWorkloadIdentity(t *testing.T) {
	az := testenv.StartAzuriteWith(t, testenv.AzuriteOptions{OAuth: true})
	az.CreateContainer(t, testContainer)
	entraCert := testenv.NewAzuriteCert(t, "127.0.0.1", "login.microsoftonline.com")
	const (
		tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		clientID = "11111111-2222-3333-4444-555555555555"
	)
	projected := "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig" // what the kubelet projects
	entra := startFakeEntra(t, entraCert, tenant, clientID, projected)
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte(projected), 0o600); err != nil {
		t.Fatal(err)
	}
	scrubAzureEnv(t)
	t.Setenv("AZURE_CLIENT_ID", clientID)
	t.Setenv("AZURE_TENANT_ID", tenant)
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", tokenFile)
	t.Setenv("AZURE_AUTHORITY_HOST", entra.base()+"/")

	roots := az.Cert().Pool.Clone()
	roots.AppendCertsFromPEM(mustRead(t, entraCert.CertFile))
	// MSAL validates an authority it does not know through the public
	// cloud's instance discovery: route that name to the fake too.
	entraAddr := strings.TrimPrefix(entra.base(), "https://")
	client := loopbackClient(t, roots, map[string]string{"login.microsoftonline.com:443": entraAddr, imdsAddr: testenv.ClosedAddr(t)})

	newWI := func(t *testing.T) *Store {
		s, err := newStore(t.Context(), Config{Account: az.Account(), Container: testContainer, Endpoint: az.Endpoint()}, store.Options{PartSize: 1 << 20, Concurrency: 2, Logger: testLogger(t)}, client)
		if err != nil {
			t.Fatal(err)
		}
		s.tm = fastTiming()
		if s.CredentialMethod() != MethodDefaultAzure {
			t.Fatalf("method = %q", s.CredentialMethod())
		}
		return s
	}

	t.Run("round trip", func(t *testing.T) {
		s := newWI(t)
		if err := s.Check(t.Context(), store.Write); err != nil {
			t.Fatalf("Check with workload identity: %v", err)
		}
		want := bytes.Repeat([]byte("workload identity "), 200000) // 3.4 MiB: several blocks
		key := "wi/a.tar.zst"
		if _, err := s.Put(t.Context(), key, bytes.NewReader(want), store.PutOptions{SizeHint: int64(len(want))}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if got := storetest.Get(t, s, key); !bytes.Equal(got, want) {
			t.Fatal("read back different bytes")
		}
		if objs, err := s.List(t.Context(), "wi/"); err != nil || len(objs) != 1 {
			t.Fatalf("List = %v, %v", objs, err)
		}
		if err := s.Delete(t.Context(), []string{key}); err != nil {
			t.Fatal(err)
		}
		if got := az.Blobs(t, testContainer, "wi/"); len(got) != 0 {
			t.Fatalf("left: %q", got)
		}
		entra.mu.Lock()
		defer entra.mu.Unlock()
		if entra.issued == 0 {
			t.Fatal("no token was issued: the requests did not use workload identity")
		}
	})

	t.Run("azurite checks the token", func(t *testing.T) {
		entra.mu.Lock()
		entra.audience = "https://management.azure.com"
		entra.mu.Unlock()
		defer func() {
			entra.mu.Lock()
			entra.audience = "https://storage.azure.com"
			entra.mu.Unlock()
		}()
		err := newWI(t).Check(t.Context(), store.Write)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check with a token for another audience: err = %v, want ErrAccess", err)
		}
		if !strings.Contains(err.Error(), "Storage Blob Data Contributor") {
			t.Errorf("error does not say which role to grant: %v", err)
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		// The production transport trusts the system roots (and
		// SSL_CERT_FILE), not the certificate made for this test.
		s, err := New(t.Context(), Config{Account: az.Account(), Container: testContainer, Endpoint: az.Endpoint(), StorageKey: setting.Secret(az.Key())}, store.Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		s.tm = fastTiming()
		err = s.Check(t.Context(), store.Write)
		if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "not trusted") {
			t.Fatalf("Check against an untrusted certificate: err = %v, want ErrAccess saying so", err)
		}
	})

	t.Run("federation rejected", func(t *testing.T) {
		if err := os.WriteFile(tokenFile, []byte("a token for another subject"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(tokenFile, []byte(projected), 0o600)
		err := newWI(t).Check(t.Context(), store.Write)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check with a rejected assertion: err = %v, want ErrAccess", err)
		}
		for _, want := range []string{"WorkloadIdentityCredential", "AADSTS700213", testContainer} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not mention %q: %v", want, err)
			}
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestErrorMapping(t *testing.T) {
	s, err := New(t.Context(), Config{Account: "acct", Container: "snaps", StorageKey: setting.Secret(testenv.AzuriteKey)}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	respErr := func(status int, code string) error {
		h := http.Header{}
		if code != "" {
			h.Set("x-ms-error-code", code)
		}
		req, _ := http.NewRequest(http.MethodGet, "https://acct.blob.core.windows.net/snaps/k", nil)
		return runtime.NewResponseError(&http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: req})
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		key  string
		err  error
		want error // nil: none of the sentinels
	}{
		{"container missing", t.Context(), "", respErr(404, "ContainerNotFound"), store.ErrAccess},
		{"blob missing", t.Context(), "k", respErr(404, "BlobNotFound"), store.ErrNotFound},
		{"blob missing, HEAD without code", t.Context(), "k", respErr(404, ""), store.ErrNotFound},
		{"account missing", t.Context(), "", respErr(404, "ResourceNotFound"), store.ErrAccess},
		{"bad key", t.Context(), "", respErr(403, "AuthenticationFailed"), store.ErrAccess},
		{"no role", t.Context(), "k", respErr(403, "AuthorizationPermissionMismatch"), store.ErrAccess},
		{"archived", t.Context(), "k", respErr(409, "BlobArchived"), store.ErrAccess},
		{"busy", t.Context(), "k", respErr(503, "ServerBusy"), store.ErrTransfer},
		{"internal", t.Context(), "k", respErr(500, "InternalError"), store.ErrTransfer},
		{"throttled", t.Context(), "k", respErr(429, ""), store.ErrTransfer},
		{"unexpected 400", t.Context(), "k", respErr(400, "InvalidHeaderValue"), nil},
		{"account name does not resolve", t.Context(), "", &net.DNSError{Err: "no such host", Name: "acct.blob.core.windows.net", IsNotFound: true}, store.ErrAccess},
		{"dns timeout", t.Context(), "", &net.DNSError{Err: "i/o timeout", Name: "acct.blob.core.windows.net", IsTimeout: true}, store.ErrTransfer},
		{"try timeout", t.Context(), "k", fmt.Errorf("Get: %w", context.DeadlineExceeded), store.ErrTransfer},
		{"connection reset", t.Context(), "k", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, store.ErrTransfer},
		{"cancelled", cancelled, "k", respErr(503, "ServerBusy"), context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.classify(tc.ctx, "reading", tc.key, tc.err)
			for _, sentinel := range []error{store.ErrAccess, store.ErrNotFound, store.ErrTransfer, store.ErrExists, context.Canceled} {
				if errors.Is(got, sentinel) != (sentinel == tc.want) {
					t.Fatalf("classify(%v) = %v: errors.Is(%v) = %v", tc.err, got, sentinel, !(sentinel == tc.want))
				}
			}
			if !strings.Contains(got.Error(), "snaps") || strings.Contains(got.Error(), "\n") {
				t.Fatalf("message %q should name the container on one line", got)
			}
		})
	}
}
