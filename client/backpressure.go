package client

// backpressure.go owns which failures say "the server is overloaded": the
// signal an adaptive concurrency limit backs off on.

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// IsBackPressure reports whether err says the server is overloaded or too
// slow: a 429, 503 or 504 answer, or a call that timed out (its deadline
// passed, or the network timed out). A refused or reset connection, a
// rejected key or a permanent refusal are not back pressure, and neither is
// a canceled context.
func IsBackPressure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusRequestTimeout:
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
