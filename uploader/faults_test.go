package uploader_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An expired presigned URL gets a fresh presign at once, not a backoff on
// the same URL.
func TestExpiredURLPresignedAgain(t *testing.T) {
	var skew atomic.Int64 // the server's clock runs ahead by this much
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	h := newHarness(t, fastConfig(), stratixtest.Options{URLTTL: time.Minute, Now: now})
	// The URL expires between its presign and its PUT.
	h.hooks.once(&h.hooks.put, func() { skew.Store(int64(time.Hour)) })
	a := h.write("a.json", traceA)
	h.ready(a)
	r := h.waitState(a, store.StateUploaded)
	if n := h.srv.Calls(stratixtest.EndpointPut); n != 2 {
		t.Fatalf("expired URL: %d PUTs, want 2", n)
	}
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != 2 {
		t.Fatalf("expired URL: %d presigns, want 2", n)
	}
	if r.Attempts != 1 || r.LastError != "" {
		t.Fatalf("expired URL counted as a failure: attempts %d (want 1), last error %q", r.Attempts, r.LastError)
	}
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("creates %d, want 1", n)
	}
}

// Rule 11: repeated connection failures pause the pool as one (one log
// line), a probe finds the API back, and the work resumes.
func TestConnectionFailuresPausePool(t *testing.T) {
	logs := &syncBuffer{}
	cfg := fastConfig()
	cfg.Workers = 1
	cfg.ConnFailures = 3
	cfg.ProbeInterval = 20 * time.Millisecond
	cfg.Log = zerolog.New(logs)
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.DropNext(stratixtest.EndpointPresign, 3)
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	out := logs.String()
	if n := strings.Count(out, "uploads paused: the API is unreachable"); n != 1 {
		t.Fatalf("got %d pause lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "uploads resumed") {
		t.Fatalf("no resume line:\n%s", out)
	}
	if n := h.srv.Calls(stratixtest.EndpointList); n < 1 {
		t.Fatalf("no probe ran while paused")
	}
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("creates %d, want 1", n)
	}
	if strings.Contains(out, stratixtest.DefaultAPIKey) {
		t.Fatalf("the API key appears in the logs")
	}
}

// The path record keeps how many attempts its upload took, as the
// "uploaded" log line says (`tracesync files` shows it); a path linked to
// bytes already uploaded took none.
func TestUploadedPathKeepsItsAttempts(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	h.srv.FailNext(stratixtest.EndpointPresign, 2, http.StatusServiceUnavailable)
	a := h.write("a.json", traceA)
	h.ready(a)
	if r := h.waitState(a, store.StateUploaded); r.Attempts != 3 {
		t.Fatalf("uploaded after two 503s: record says %d attempts, want 3", r.Attempts)
	}
	b := h.write("b.json", traceB)
	h.ready(b)
	if r := h.waitState(b, store.StateUploaded); r.Attempts != 1 {
		t.Fatalf("uploaded at once: record says %d attempts, want 1", r.Attempts)
	}
	c := h.write("copy/a.json", traceA)
	h.ready(c)
	if r := h.waitState(c, store.StateUploaded); r.Attempts != 0 {
		t.Fatalf("linked to uploaded bytes: record says %d attempts, want 0", r.Attempts)
	}
}
