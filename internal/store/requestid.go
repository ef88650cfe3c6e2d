package store

import "errors"

// RequestIdentifier is implemented by provider errors that carry the
// store's identifiers of the failed request: what the store's support
// asks for (S3's x-amz-request-id and x-amz-id-2, Azure's
// x-ms-request-id). The provider keeps them out of the error's message,
// which says what failed; the command reports them in fields of their
// own.
type RequestIdentifier interface {
	RequestIDs() (requestID, hostID string)
}

// RequestIDs returns the identifiers carried by the first error in err's
// tree that has them, or empty strings.
func RequestIDs(err error) (requestID, hostID string) {
	var ri RequestIdentifier
	if errors.As(err, &ri) {
		return ri.RequestIDs()
	}
	return "", ""
}

// WithRequestID returns err carrying the store's identifiers of the failed
// request for RequestIDs, or err itself when requestID is empty.
func WithRequestID(err error, requestID, hostID string) error {
	if requestID == "" {
		return err
	}
	return &requestError{err: err, requestID: requestID, hostID: hostID}
}

type requestError struct {
	err               error
	requestID, hostID string
}

func (e *requestError) Error() string                          { return e.err.Error() }
func (e *requestError) Unwrap() error                          { return e.err }
func (e *requestError) RequestIDs() (requestID, hostID string) { return e.requestID, e.hostID }
