package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// After a 401 the client asks ReloadKey once and uses a new key it returns
// from the next call on; the call that got the 401 still fails.
func TestReloadKeyAfter401(t *testing.T) {
	var reloads atomic.Int32
	var onDisk atomic.Pointer[string]
	old := stratixtest.DefaultAPIKey
	onDisk.Store(&old)
	srv, c := start(t, stratixtest.Options{}, client.Config{ReloadKey: func() (string, error) {
		reloads.Add(1)
		return *onDisk.Load(), nil
	}})
	ctx := context.Background()
	if _, err := c.Discover(ctx); err != nil {
		t.Fatalf("discover: %v", err)
	}
	if n := reloads.Load(); n != 0 {
		t.Fatalf("%d reloads before any 401, want 0", n)
	}
	srv.SetAPIKey("rotated")
	upload := func() error {
		_, err := c.Upload(ctx, "a.json", strings.NewReader(`{"trace_id":"t1"}`), int64(len(`{"trace_id":"t1"}`)))
		return err
	}
	var ae *client.APIError
	if err := upload(); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upload with the old key: %v, want a 401", err)
	}
	if n := reloads.Load(); n != 1 {
		t.Fatalf("%d reloads after a 401, want 1", n)
	}
	// The file still holds the old key: the same key is kept, and fails again.
	if err := upload(); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upload before the file changed: %v, want a 401", err)
	}
	rotated := "rotated"
	onDisk.Store(&rotated)
	if err := upload(); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the call that reads the new key: %v, want its own 401", err)
	}
	if err := upload(); err != nil {
		t.Fatalf("upload with the reloaded key: %v", err)
	}
}

// A reload that fails or finds an empty file keeps the key in use.
func TestReloadKeyErrorKeepsKey(t *testing.T) {
	srv, c := start(t, stratixtest.Options{}, client.Config{ReloadKey: func() (string, error) {
		return "", errors.New("no file")
	}})
	srv.SetAPIKey("other")
	if _, err := c.Discover(context.Background()); err == nil {
		t.Fatal("discover with a rejected key succeeded")
	}
	srv.SetAPIKey(stratixtest.DefaultAPIKey)
	if _, err := c.Discover(context.Background()); err != nil {
		t.Fatalf("discover after the server took the old key back: %v", err)
	}
}
