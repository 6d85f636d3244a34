package sdk

import (
	"errors"
	"fmt"
)

// The typed errors a plugin returns. They cross the plugin transport as gRPC
// status codes and come back to core as the same values, so that core can
// test them with errors.Is: wrap them with Errorf to add detail.
var (
	// ErrInvalidConfig: the config values cannot work (a port in use, a
	// document root that does not exist). Retrying will not help.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrNotFound: something the role needs is missing (a package that may
	// not be installed, an artifact that does not exist).
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition: the call does not fit the server's state (a
	// HealthCheck before Provision).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: a transient failure; the call may be retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrTimeout: the call ran out of time.
	ErrTimeout = errors.New("timeout")
	// ErrUnimplemented: the plugin does not implement the call (Configure).
	ErrUnimplemented = errors.New("unimplemented")
	// ErrChecksumMismatch: an artifact's digest was not the expected one.
	ErrChecksumMismatch = errors.New("checksum mismatch")
)

// Errorf returns an error that wraps kind (one of the Err values) with a
// formatted message; errors.Is(err, kind) holds, also after the error has
// crossed the plugin transport.
func Errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Error is a typed error with a message.
type Error struct {
	Kind    error
	Message string
}

func (e *Error) Error() string {
	if e.Kind == nil {
		return e.Message
	}
	if e.Message == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Message
}

// Unwrap makes errors.Is(err, e.Kind) hold.
func (e *Error) Unwrap() error { return e.Kind }
