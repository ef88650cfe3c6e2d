package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// STSRole is a role the local STS lets callers assume. The credentials it
// hands out are real keys of a versitygw user, so S3 requests made with
// them succeed only if the client really switched to them.
type STSRole struct {
	ARN string
	// ExternalID, when set, must be sent with AssumeRole.
	ExternalID string
	// Callers maps the access keys allowed to call AssumeRole to their
	// secrets; the request's SigV4 signature is verified with them.
	Callers map[string]string
	// WebIdentityToken, when set, is the only token accepted by
	// AssumeRoleWithWebIdentity for this role.
	WebIdentityToken string
	// AccessKey and SecretKey are the credentials returned.
	AccessKey, SecretKey string
	// Lifetime of the returned credentials; 0 means one hour.
	Lifetime time.Duration
}

// STS is a minimal AWS STS (AssumeRole, AssumeRoleWithWebIdentity) on
// 127.0.0.1. versitygw v1.8.0 serves only AssumeRoleWithWebIdentity, and
// that only for OIDC issuers it can reach over public HTTPS, so tests use
// this instead. Point the SDK at it with AWS_ENDPOINT_URL_STS=URL.
type STS struct {
	URL string

	mu    sync.Mutex
	roles map[string]STSRole
	calls []string
}

// StartSTS serves the roles until the test ends.
func StartSTS(t testing.TB, roles ...STSRole) *STS {
	t.Helper()
	s := &STS{roles: map[string]STSRole{}}
	for _, r := range roles {
		s.roles[r.ARN] = r
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Calls returns one line per request: "Action RoleArn RoleSessionName
// -> result".
func (s *STS) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	Expiration      string `xml:"Expiration"`
}

type stsResult struct {
	Credentials     stsCredentials `xml:"Credentials"`
	AssumedRoleUser struct {
		Arn           string `xml:"Arn"`
		AssumedRoleID string `xml:"AssumedRoleId"`
	} `xml:"AssumedRoleUser"`
}

type stsError struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func (s *STS) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost {
		s.fail(w, form, http.StatusBadRequest, "InvalidRequest", "expected a form POST")
		return
	}
	s.mu.Lock()
	role, ok := s.roles[form.Get("RoleArn")]
	s.mu.Unlock()
	if form.Get("RoleSessionName") == "" {
		s.fail(w, form, http.StatusBadRequest, "ValidationError", "RoleSessionName is required")
		return
	}
	switch form.Get("Action") {
	case "AssumeRole":
		if !ok {
			s.fail(w, form, http.StatusForbidden, "AccessDenied", "no such role")
			return
		}
		if err := verifySigV4(r, body, role.Callers); err != nil {
			s.fail(w, form, http.StatusForbidden, "AccessDenied", err.Error())
			return
		}
		if role.ExternalID != "" && form.Get("ExternalId") != role.ExternalID {
			s.fail(w, form, http.StatusForbidden, "AccessDenied", "ExternalId does not match the role's trust policy")
			return
		}
	case "AssumeRoleWithWebIdentity":
		if !ok || role.WebIdentityToken == "" {
			s.fail(w, form, http.StatusForbidden, "AccessDenied", "role does not trust web identities")
			return
		}
		if form.Get("WebIdentityToken") != role.WebIdentityToken {
			s.fail(w, form, http.StatusBadRequest, "InvalidIdentityToken", "token rejected")
			return
		}
	default:
		s.fail(w, form, http.StatusBadRequest, "InvalidAction", "unsupported action")
		return
	}
	life := role.Lifetime
	if life == 0 {
		life = time.Hour
	}
	var res stsResult
	res.Credentials = stsCredentials{
		AccessKeyID:     role.AccessKey,
		SecretAccessKey: role.SecretKey,
		Expiration:      time.Now().Add(life).UTC().Format(time.RFC3339),
	}
	res.AssumedRoleUser.Arn = role.ARN + "/" + form.Get("RoleSessionName")
	res.AssumedRoleUser.AssumedRoleID = "AROA0000:" + form.Get("RoleSessionName")
	action := form.Get("Action")
	out, _ := xml.Marshal(struct {
		XMLName  xml.Name
		Xmlns    string    `xml:"xmlns,attr"`
		Result   stsResult `xml:"Result"`
		Metadata struct {
			RequestID string `xml:"RequestId"`
		} `xml:"ResponseMetadata"`
	}{XMLName: xml.Name{Local: action + "Response"}, Xmlns: "https://sts.amazonaws.com/doc/2011-06-15/", Result: res})
	// encoding/xml cannot name an element from a value; the result
	// element is "<Action>Result".
	out = []byte(strings.Replace(strings.Replace(string(out), "<Result>", "<"+action+"Result>", 1), "</Result>", "</"+action+"Result>", 1))
	s.record(form, "ok")
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(out)
}

func (s *STS) record(form url.Values, result string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("%s %s %s -> %s", form.Get("Action"), form.Get("RoleArn"), form.Get("RoleSessionName"), result))
}

func (s *STS) fail(w http.ResponseWriter, form url.Values, status int, code, msg string) {
	s.record(form, code)
	var e stsError
	e.Error.Type, e.Error.Code, e.Error.Message, e.RequestID = "Sender", code, msg, "local-sts"
	out, _ := xml.Marshal(e)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// verifySigV4 checks that r was signed with the secret of one of callers
// by signing a copy of it again and comparing the signatures.
func verifySigV4(r *http.Request, body []byte, callers map[string]string) error {
	auth := r.Header.Get("Authorization")
	cred := field(auth, "Credential=")
	signed := field(auth, "SignedHeaders=")
	scope := strings.Split(cred, "/") // AK/date/region/service/aws4_request
	if len(scope) != 5 {
		return fmt.Errorf("request is not SigV4-signed")
	}
	secret, ok := callers[scope[0]]
	if !ok {
		return fmt.Errorf("access key %s may not assume this role", scope[0])
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("bad X-Amz-Date")
	}
	cp, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(signed, ";") {
		switch h {
		case "host":
		case "content-length":
			cp.ContentLength = int64(len(body))
		default:
			cp.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	cp.Header.Del("Authorization")
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(r.Context(), aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secret},
		cp, hex.EncodeToString(sum[:]), scope[3], scope[2], when)
	if err != nil {
		return err
	}
	if field(cp.Header.Get("Authorization"), "Signature=") != field(auth, "Signature=") {
		return fmt.Errorf("signature does not match access key %s", scope[0])
	}
	return nil
}

// field returns the value after name in an Authorization header, up to
// the next comma.
func field(h, name string) string {
	_, v, ok := strings.Cut(h, name)
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}
