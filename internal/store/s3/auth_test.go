package s3

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/storetest"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func TestWrongSecretIsAccessError(t *testing.T) {
	s := startServer(t)
	cfg := s.cfg("")
	cfg.SecretKey = "not-the-secret"
	st := newStore(t, cfg, store.Options{})
	err := st.Check(t.Context(), store.Write)
	t.Logf("Check: %v", err)
	if !errors.Is(err, store.ErrAccess) {
		t.Fatalf("Check: err = %v, want ErrAccess", err)
	}
	for _, want := range []string{s.bucket, "static keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error does not mention %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("Check error shows the secret: %v", err)
	}
	if _, err := st.Put(t.Context(), "x.tar.zst", strings.NewReader("x"), store.PutOptions{SizeHint: 1}); !errors.Is(err, store.ErrAccess) {
		t.Errorf("Put: err = %v, want ErrAccess", err)
	}
	if _, err := st.List(t.Context(), ""); !errors.Is(err, store.ErrAccess) {
		t.Errorf("List: err = %v, want ErrAccess", err)
	}
	if _, _, err := st.Get(t.Context(), "x.tar.zst"); !errors.Is(err, store.ErrAccess) {
		t.Errorf("Get: err = %v, want ErrAccess", err)
	}
}

func TestMissingBucketIsAccessError(t *testing.T) {
	s := startServer(t)
	cfg := s.cfg("")
	cfg.Bucket = "no-such-bucket-here"
	st := newStore(t, cfg, store.Options{})
	err := st.Check(t.Context(), store.Write)
	t.Logf("Check: %v", err)
	if !errors.Is(err, store.ErrAccess) {
		t.Fatalf("Check: err = %v, want ErrAccess", err)
	}
	for _, want := range []string{"no-such-bucket-here", "static keys", "does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error does not mention %q: %v", want, err)
		}
	}
	if _, err := st.List(t.Context(), ""); !errors.Is(err, store.ErrAccess) {
		t.Errorf("List: err = %v, want ErrAccess", err)
	}
}

// S3 answers 301 with the bucket's region when SNAPSHOT_AWS_REGION is
// wrong; the error says which region to set.
func TestWrongRegionNamesTheRegion(t *testing.T) {
	s := startServer(t)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	proxy.SetRule(func(*http.Request, int) testenv.Fault {
		return testenv.Fault{Status: http.StatusMovedPermanently, Header: http.Header{"X-Amz-Bucket-Region": {"eu-central-1"}}}
	})
	err := newStore(t, s.cfg(proxy.URL), store.Options{}).Check(t.Context(), store.Write)
	t.Logf("Check: %v", err)
	if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "SNAPSHOT_AWS_REGION=eu-central-1") {
		t.Fatalf("Check: err = %v, want ErrAccess naming eu-central-1", err)
	}
}

// A closed port and an endpoint that accepts connections but never
// answers both fail as ErrTransfer, bounded by the attempts (AWS_MAX_ATTEMPTS) x StallTimeout
// plus backoff (docs/providers/s3.md, time bounds), instead of hanging.
func TestDeadEndpointIsTransferError(t *testing.T) {
	s := startServer(t)
	hang := testenv.StartFaultProxy(t, s.v.Endpoint)
	hang.SetRule(func(*http.Request, int) testenv.Fault { return testenv.Fault{Hang: true} })
	for name, endpoint := range map[string]string{
		"closed port": testenv.ClosedPort(t),
		"hanging":     hang.URL,
	} {
		t.Run(name, func(t *testing.T) {
			st := newStore(t, s.cfg(endpoint), fastFail(t))
			// A deadline far above the bound, so that a hang fails the
			// test instead of stalling it; reaching it is a failure too.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err := st.Check(ctx, store.Write)
			t.Logf("Check: %v", err)
			if ctx.Err() != nil {
				t.Fatalf("Check gave up only at the test's deadline: %v", err)
			}
			if !errors.Is(err, store.ErrTransfer) {
				t.Fatalf("Check: err = %v, want ErrTransfer", err)
			}
			if !strings.Contains(err.Error(), endpoint) {
				t.Errorf("Check error does not name the endpoint: %v", err)
			}
			if _, err := st.Put(t.Context(), "dead.tar.zst", strings.NewReader("x"), store.PutOptions{SizeHint: 1}); !errors.Is(err, store.ErrTransfer) {
				t.Errorf("Put: err = %v, want ErrTransfer", err)
			}
			if _, _, err := st.Get(t.Context(), "dead.tar.zst"); !errors.Is(err, store.ErrTransfer) {
				t.Errorf("Get: err = %v, want ErrTransfer", err)
			}
		})
	}
}

// A response that never comes is given up after StallTimeout and the
// request sent again.
func TestStalledRequestIsRetried(t *testing.T) {
	s := startServer(t)
	key := "stall/x.tar.zst"
	data := storetest.Payload(2*testPart, 11)
	s.v.PutObject(t, s.bucket, key, data)
	proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
	st := newStore(t, s.cfg(proxy.URL), fastFail(t))
	var first atomic.Int32
	proxy.SetRule(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && strings.HasPrefix(r.Header.Get("Range"), "bytes=0-") && first.Add(1) == 1 {
			return testenv.Fault{HoldResponse: time.Hour}
		}
		return testenv.Fault{}
	})
	if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	if first.Load() < 2 {
		t.Fatalf("first range requested %d times, want a retry", first.Load())
	}
}

// roleUser creates the versitygw user whose keys the STS hands out and
// gives it the bucket; base credentials given to the job are unknown to
// versitygw, so S3 requests succeed only when signed with the role's.
func roleUser(t *testing.T, s *server, access string) (string, string) {
	secret := access + "-secret-0123456789"
	s.v.CreateUser(t, access, secret, "user")
	s.v.ChangeBucketOwner(t, s.bucket, access)
	return access, secret
}

func roundTrip(t *testing.T, st *Store) {
	t.Helper()
	if err := st.Check(t.Context(), store.Write); err != nil {
		t.Fatalf("Check: %v", err)
	}
	data := storetest.Payload(2*testPart+3, 12)
	key := "auth/" + strings.ReplaceAll(t.Name(), "/", "-") + ".tar.zst"
	if _, err := st.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: int64(len(data))}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got := storetest.Get(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
}

func TestAssumeRoleWithExternalID(t *testing.T) {
	s := startServer(t)
	ak, sk := roleUser(t, s, "roleuser")
	const arn = "arn:aws:iam::123456789012:role/snapshots"
	const shortARN = "arn:aws:iam::123456789012:role/short-lived"
	base := map[string]string{"AKIABASE": "base-secret"}
	sts := testenv.StartSTS(t,
		testenv.STSRole{ARN: arn, ExternalID: "ext-42", Callers: base, AccessKey: ak, SecretKey: sk},
		// Due for renewal (expiryWindow before it runs out) 2 s after issue.
		testenv.STSRole{ARN: shortARN, ExternalID: "ext-42", Callers: base, AccessKey: ak, SecretKey: sk,
			Lifetime: expiryWindow + 2*time.Second},
	)
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	cfg := s.cfg("")
	cfg.AccessKey, cfg.SecretKey = "AKIABASE", "base-secret"

	t.Run("base keys alone are refused", func(t *testing.T) {
		if err := newStore(t, cfg, store.Options{}).Check(t.Context(), store.Write); !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check with the base keys: err = %v, want ErrAccess", err)
		}
	})
	cfg.RoleARN, cfg.ExternalID, cfg.RoleSessionName = arn, "ext-42", "snap-test"
	t.Run("assumed", func(t *testing.T) {
		st := newStore(t, cfg, store.Options{})
		if got := st.CredentialMethod(); got != "assume-role (static keys)" {
			t.Errorf("CredentialMethod() = %q", got)
		}
		roundTrip(t, st)
		calls := sts.Calls()
		if len(calls) != 1 || calls[0] != "AssumeRole "+arn+" snap-test -> ok" {
			t.Fatalf("STS calls = %q, want one AssumeRole (credentials are cached)", calls)
		}
	})
	t.Run("renewed before expiry", func(t *testing.T) {
		short := cfg
		short.RoleARN = shortARN
		st := newStore(t, short, store.Options{})
		if err := st.Check(t.Context(), store.Write); err != nil {
			t.Fatal(err)
		}
		before := len(sts.Calls())
		time.Sleep(2500 * time.Millisecond)
		if err := st.Check(t.Context(), store.Write); err != nil {
			t.Fatal(err)
		}
		if after := len(sts.Calls()); after <= before {
			t.Fatalf("STS calls %d before and %d after the renewal time: credentials not renewed", before, after)
		}
	})
	t.Run("wrong external id", func(t *testing.T) {
		bad := cfg
		bad.ExternalID = "ext-41"
		err := newStore(t, bad, store.Options{}).Check(t.Context(), store.Write)
		t.Logf("Check: %v", err)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check: err = %v, want ErrAccess", err)
		}
		if !strings.Contains(err.Error(), "assume-role (static keys)") || strings.Contains(err.Error(), "ext-41") {
			t.Errorf("error should name the method and hide the external id: %v", err)
		}
	})
	t.Run("wrong base secret", func(t *testing.T) {
		bad := cfg
		bad.SecretKey = "other"
		if err := newStore(t, bad, store.Options{}).Check(t.Context(), store.Write); !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check: err = %v, want ErrAccess", err)
		}
	})
}

func webIdentity(t *testing.T, arn, token string) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", p)
	t.Setenv("AWS_ROLE_ARN", arn)
}

// IRSA: the pod has a projected service-account token and AWS_ROLE_ARN;
// the SDK's default chain exchanges the token at STS.
func TestIRSAWebIdentity(t *testing.T) {
	s := startServer(t)
	ak, sk := roleUser(t, s, "irsauser")
	const arn = "arn:aws:iam::123456789012:role/irsa"
	sts := testenv.StartSTS(t, testenv.STSRole{ARN: arn, WebIdentityToken: "eyJ.projected.token", AccessKey: ak, SecretKey: sk})
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	cfg := s.cfg("")
	cfg.AccessKey, cfg.SecretKey = "", ""

	t.Run("token accepted", func(t *testing.T) {
		webIdentity(t, arn, "eyJ.projected.token")
		st := newStore(t, cfg, store.Options{})
		if got := st.CredentialMethod(); got != "default chain" {
			t.Errorf("CredentialMethod() = %q", got)
		}
		roundTrip(t, st)
		if calls := sts.Calls(); len(calls) != 1 || !strings.HasPrefix(calls[0], "AssumeRoleWithWebIdentity "+arn) {
			t.Fatalf("STS calls = %q", calls)
		}
	})
	t.Run("token rejected", func(t *testing.T) {
		webIdentity(t, arn, "eyJ.stale.token")
		err := newStore(t, cfg, store.Options{}).Check(t.Context(), store.Write)
		t.Logf("Check: %v", err)
		if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "default chain") {
			t.Fatalf("Check: err = %v, want ErrAccess naming the default chain", err)
		}
	})
	t.Run("no credentials anywhere", func(t *testing.T) {
		unsetenv(t, "AWS_WEB_IDENTITY_TOKEN_FILE")
		unsetenv(t, "AWS_ROLE_ARN")
		err := newStore(t, cfg, fastFail(t)).Check(t.Context(), store.Write)
		t.Logf("Check: %v", err)
		if !errors.Is(err, store.ErrAccess) {
			t.Fatalf("Check: err = %v, want ErrAccess", err)
		}
	})
}

// AssumeRole on top of IRSA: the web identity gives keys that may only
// assume the second role, whose keys own the bucket.
func TestAssumeRoleOnDefaultChain(t *testing.T) {
	s := startServer(t)
	s.v.CreateUser(t, "hopuser", "hopuser-secret-0123456789", "user")
	ak, sk := roleUser(t, s, "owner")
	const irsaARN = "arn:aws:iam::111111111111:role/pod"
	const targetARN = "arn:aws:iam::222222222222:role/bucket-writer"
	sts := testenv.StartSTS(t,
		testenv.STSRole{ARN: irsaARN, WebIdentityToken: "tok", AccessKey: "hopuser", SecretKey: "hopuser-secret-0123456789"},
		testenv.STSRole{ARN: targetARN, ExternalID: "x-acct", Callers: map[string]string{"hopuser": "hopuser-secret-0123456789"}, AccessKey: ak, SecretKey: sk},
	)
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	webIdentity(t, irsaARN, "tok")
	cfg := s.cfg("")
	cfg.AccessKey, cfg.SecretKey = "", ""
	cfg.RoleARN, cfg.ExternalID = targetARN, "x-acct"
	st := newStore(t, cfg, store.Options{})
	if got := st.CredentialMethod(); got != "assume-role (default chain)" {
		t.Errorf("CredentialMethod() = %q", got)
	}
	roundTrip(t, st)
	calls := sts.Calls()
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "AssumeRoleWithWebIdentity") || !strings.HasPrefix(calls[1], "AssumeRole "+targetARN+" snapshot-job") {
		t.Fatalf("STS calls = %q", calls)
	}
}

func TestCABundle(t *testing.T) {
	t.Run("system bundle with a plain endpoint", func(t *testing.T) {
		s := startServer(t)
		bundle := "/etc/ssl/certs/ca-certificates.crt"
		if _, err := os.Stat(bundle); err != nil {
			t.Fatalf("%s: %v (the environment is expected to provide it)", bundle, err)
		}
		t.Setenv("AWS_CA_BUNDLE", bundle)
		roundTrip(t, newStore(t, s.cfg(""), store.Options{}))
	})
	t.Run("private CA over TLS", func(t *testing.T) {
		isolateAWS(t)
		caFile, certFile, keyFile := testenv.WriteTestCA(t)
		v := testenv.StartVersity(t, testenv.WithTLS(certFile, keyFile, caFile))
		s := &server{v: v, bucket: "tls-bucket"}
		v.CreateBucket(t, s.bucket)
		if !strings.HasPrefix(v.Endpoint, "https://") {
			t.Fatalf("endpoint %s is not TLS", v.Endpoint)
		}
		t.Setenv("AWS_CA_BUNDLE", caFile)
		roundTrip(t, newStore(t, s.cfg(""), store.Options{}))

		// Without the CA the server's certificate is not trusted.
		t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
		err := newStore(t, s.cfg(""), fastFail(t)).Check(t.Context(), store.Write)
		t.Logf("Check: %v", err)
		if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") {
			t.Fatalf("Check without the CA: err = %v, want ErrAccess pointing at AWS_CA_BUNDLE", err)
		}
	})
	t.Run("bogus path", func(t *testing.T) {
		isolateAWS(t)
		t.Setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
		_, err := New(t.Context(), Config{Bucket: "b"}, store.Options{})
		if !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") {
			t.Fatalf("err = %v, want setting.ErrInvalid naming AWS_CA_BUNDLE", err)
		}
	})
	t.Run("file without certificates", func(t *testing.T) {
		isolateAWS(t)
		p := filepath.Join(t.TempDir(), "empty.pem")
		if err := os.WriteFile(p, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_CA_BUNDLE", p)
		if _, err := New(t.Context(), Config{Bucket: "b"}, store.Options{}); !errors.Is(err, setting.ErrInvalid) {
			t.Fatalf("err = %v, want setting.ErrInvalid", err)
		}
	})
}
