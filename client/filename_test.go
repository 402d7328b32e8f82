package client_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// A name that is not valid UTF-8 is refused before any request: the API
// would record it with replacement characters, another name than the
// file's, and crash recovery could never find its traces.
func TestInvalidUTF8FilenameRefused(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: stratixtest.DefaultAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	name := "bad-\xff-name.json"
	_, err = c.Presign(ctx, name, "application/json", 2)
	if !errors.Is(err, client.ErrInvalidFilename) || client.Classify(err) != client.ClassPermanent {
		t.Fatalf("presign %q: %v (class %v), want ErrInvalidFilename, permanent", name, err, client.Classify(err))
	}
	if _, err := c.Create(ctx, name); !errors.Is(err, client.ErrInvalidFilename) {
		t.Fatalf("create %q: %v, want ErrInvalidFilename", name, err)
	}
	if n := srv.Calls(stratixtest.EndpointPresign) + srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("%d requests sent for an invalid name, want 0", n)
	}
}

// A backslash is an ordinary character of a file name: the server is told
// the whole name (it records it, or refuses it), never a shortened one that
// crash recovery would not find.
func TestBackslashKeptInFilename(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: stratixtest.DefaultAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"a": 1}`)
	name := `windows\style.json`
	_, err = c.Upload(context.Background(), "dir/"+name, bytes.NewReader(body), int64(len(body)))
	var ae *client.APIError
	switch {
	case err == nil:
		if got := srv.CreatesByFilename(); got[name] != 1 || len(got) != 1 {
			t.Fatalf("creates by filename %v, want one for %q", got, name)
		}
	case errors.As(err, &ae) && ae.StatusCode == 400:
		// The fake refuses names that look like paths: the whole name reached it.
		if n := srv.Calls(stratixtest.EndpointCreate); n != 0 {
			t.Fatalf("%d creates after a refused presign", n)
		}
	default:
		t.Fatalf("upload %q: %v", name, err)
	}
	if got := srv.CreatesByFilename(); got["style.json"] != 0 {
		t.Fatalf("the name was shortened to style.json: %v", got)
	}
}
