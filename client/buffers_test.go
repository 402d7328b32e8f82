package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/client"
)

// The connections' small buffers (ConnBufferSize) bound how much is read
// or written at once, not what an answer may hold: a header line and a
// presigned URL several times their size still go through whole.
func TestSmallConnBuffersTakeLongAnswers(t *testing.T) {
	longHeader := strings.Repeat("h", 3*client.ConnBufferSize)
	longURL := "/put/" + strings.Repeat("u", 3*client.ConnBufferSize) + "?X-Amz-Signature=" + strings.Repeat("s", 512)
	var srvURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Long", longHeader)
		if r.Method == http.MethodPut {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"url": srvURL + longURL})
	}))
	t.Cleanup(srv.Close)
	srvURL = srv.URL
	c, err := client.New(client.Config{BaseURL: srv.URL + "/api/v1", APIKey: "k", OrganizationID: "o", ProjectID: "p"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", 3)
	if err != nil {
		t.Fatalf("presign answered with a %d-byte header and a %d-byte URL: %v", len(longHeader), len(longURL), err)
	}
	if p.URL != srv.URL+longURL {
		t.Fatalf("presign: got a URL of %d bytes, want %d", len(p.URL), len(srv.URL+longURL))
	}
	if _, err := c.Put(ctx, p.URL, "application/jsonl", strings.NewReader("{}\n"), 3); err != nil {
		t.Fatalf("put to a %d-byte URL answered with a %d-byte header: %v", len(p.URL), len(longHeader), err)
	}
}
