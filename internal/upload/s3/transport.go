package s3

import (
	"context"
	"net"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// newHTTPClient returns the SDK's buildable client (so that AWS_CA_BUNDLE
// and the SDK's other transport settings still apply to it) with bounded
// connect and handshake times and a stall timeout on every connection.
//
// The SDK's own WithReadTimeout is not used: it re-arms only on reads, so
// it fires while a large part is still being sent and the server has not
// answered yet, which is why the SDK exempts S3 from it. Here both
// directions re-arm the deadline, so only a connection on which nothing
// moves at all for stall is dropped (and the request retried).
func newHTTPClient(stall time.Duration, concurrency int) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = dialTimeout
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &stallConn{Conn: c, stall: stall}, nil
			}
			tr.TLSHandshakeTimeout = tlsTimeout
			// Parts and ranges in flight, plus the odd HEAD or list.
			tr.MaxIdleConnsPerHost = 2*concurrency + 4
		})
}

// stallConn pushes its deadline forward whenever bytes move either way.
type stallConn struct {
	net.Conn
	stall time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(c.stall)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	// SetDeadline also moves the deadline of the transport's pending read
	// of the response, which started before the request body was sent.
	if err := c.Conn.SetDeadline(time.Now().Add(c.stall)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
