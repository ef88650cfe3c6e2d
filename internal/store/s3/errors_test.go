package s3

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

func TestRequestIDsLeaveTheMessage(t *testing.T) {
	sdk := &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}},
			Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: "not allowed"},
		},
		RequestID: "req-1",
	}}
	s := &Store{bucket: "b"}
	err := s.classify(t.Context(), "", "k", fmt.Errorf("assuming the role: %w", sdk))
	if !errors.Is(err, store.ErrAccess) || apiCode(err) != "AccessDenied" {
		t.Fatalf("classification lost: %v", err)
	}
	if id, host := store.RequestIDs(err); id != "req-1" || host != "" {
		t.Errorf("RequestIDs = %q, %q", id, host)
	}
	want := "storage access denied: assuming the role: operation error STS: AssumeRole, https response error StatusCode: 403, api error AccessDenied: not allowed"
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	// Classifying again neither wraps twice nor changes the text.
	if again := s.classify(t.Context(), "", "k", err); again.Error() != want {
		t.Errorf("classified twice: %v", again)
	}
}

func TestEndpointIsNeverEchoedWhole(t *testing.T) {
	for endpoint, want := range map[string]string{
		"https://minio.example:9000":                     "",
		"http://127.0.0.1:9000/s3":                       "",
		"https://key:secret@minio.example":               "SNAPSHOT_AWS_ENDPOINT https://minio.example must not carry credentials",
		"https://minio.example/?X-Amz-Credential=secret": "SNAPSHOT_AWS_ENDPOINT https://minio.example must not carry",
		"https://minio.example/#secret":                  "must not carry",
		"minio.example:9000":                             "SNAPSHOT_AWS_ENDPOINT is not an http or https URL",
		"ftp://secret@minio.example":                     "SNAPSHOT_AWS_ENDPOINT (ftp://minio.example) is not",
		"http://secret@[::1":                             "SNAPSHOT_AWS_ENDPOINT is not an http or https URL",
	} {
		err := checkEndpoint(endpoint)
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", endpoint, err)
			}
			continue
		}
		if !errors.Is(err, setting.ErrInvalid) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want %q and no secret", endpoint, err, want)
		}
	}
	if got := displayURL("https://key:secret@minio.example:9000/base?token=secret#x"); got != "https://minio.example:9000/base" {
		t.Errorf("displayURL = %q", got)
	}
}
