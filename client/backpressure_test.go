package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/tracesync/tracesync/client"
)

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestIsBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", &client.APIError{Op: "presign", StatusCode: 429}, true},
		{"503 wrapped", fmt.Errorf("create: %w", &client.APIError{Op: "create", StatusCode: 503}), true},
		{"504", &client.APIError{Op: "list", StatusCode: 504}, true},
		{"500", &client.APIError{Op: "create", StatusCode: 500}, false},
		{"401", &client.APIError{Op: "presign", StatusCode: 401}, false},
		{"deadline", &client.TransportError{Op: "create", Err: context.DeadlineExceeded}, true},
		{"net timeout", &client.TransportError{Op: "put", Err: &net.OpError{Op: "read", Err: timeoutErr{}}}, true},
		{"refused", &client.TransportError{Op: "presign", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, false},
		{"canceled", &client.TransportError{Op: "create", Err: context.Canceled}, false},
	} {
		if got := client.IsBackPressure(tc.err); got != tc.want {
			t.Errorf("%s: IsBackPressure(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
