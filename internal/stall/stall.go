// Package stall drops network connections on which nothing moves, so that
// a dead or wedged store ends in a transfer error instead of a hang.
package stall

import (
	"context"
	"net"
	"time"
)

// DialFunc is the shape of net.Dialer.DialContext and
// http.Transport.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer wraps dial so that every connection is dropped when no byte
// has moved on it, in either direction, for stall. The request on it then
// fails and the SDK retries it: a dead or wedged server ends in a
// transfer error instead of a hang, while a slow but moving transfer
// (a large part on a thin link) is never cut off, which a whole-request
// timeout would do.
func Dialer(dial DialFunc, stall time.Duration) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || stall <= 0 {
			return c, err
		}
		return &stallConn{Conn: c, stall: stall}, nil
	}
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
