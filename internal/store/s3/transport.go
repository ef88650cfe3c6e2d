package s3

import (
	"net"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/snapshot-job/snapshot-job/internal/stall"
)

// newHTTPClient returns the SDK's buildable client (so that AWS_CA_BUNDLE
// and the SDK's other transport settings still apply to it) with bounded
// connect and handshake times and a stall timeout on every connection.
//
// The SDK's own WithReadTimeout is not used: it re-arms only on reads, so
// it fires while a large part is still being sent and the server has not
// answered yet, which is why the SDK exempts S3 from it. Here both
// directions re-arm the deadline, so only a connection on which nothing
// moves at all for idle is dropped (and the request retried).
func newHTTPClient(idle time.Duration, concurrency int) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = dialTimeout
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.DialContext = stall.Dialer(tr.DialContext, idle)
			tr.TLSHandshakeTimeout = tlsTimeout
			// Parts and ranges in flight, plus the odd HEAD or list.
			tr.MaxIdleConnsPerHost = 2*concurrency + 4
		})
}
