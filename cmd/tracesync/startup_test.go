package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracesync/tracesync/store"
)

// stopOnText is a stderr that calls stop once text has been written to
// it, as an operator's SIGTERM after reading that line would.
type stopOnText struct {
	mu   sync.Mutex // guards buf: the process writes from its goroutines
	buf  bytes.Buffer
	text string
	stop context.CancelFunc
}

func (s *stopOnText) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.buf.Write(p)
	if s.stop != nil && strings.Contains(s.buf.String(), s.text) {
		s.stop()
	}
	return n, err
}

func (s *stopOnText) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// A daemon that starts while a read command holds the state file for a
// moment (no daemon answered it, so it opened the file itself) waits for
// it instead of failing.
func TestRunWaitsForABriefLockHolder(t *testing.T) {
	t.Parallel()
	w := newCheckConfigWorld(t)
	held, err := store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	stderr := &stopOnText{text: "tracesync starting", stop: cancel} // stopped once syncing
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", w.folder}, strings.NewReader(""), &stdout, stderr,
			func(k string) string { return w.env[k] })
	}()
	// Longer than a backfill's wait for the lock, well within a daemon's.
	time.Sleep(2500 * time.Millisecond)
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 || !strings.Contains(stderr.String(), "tracesync starting") {
		t.Fatalf("run while the state was held for 2.5 s: exit %d, want 0 after starting:\n%s", code, stderr.String())
	}
}

// run and backfill that cannot start say why, with the right exit code,
// and release what they opened (a second attempt meets no lock). The
// daemon does not exit on an unreachable API or a rejected key: it says
// so and keeps trying (rule 11), until it is stopped.
func TestSyncStartupErrors(t *testing.T) {
	w := newCheckConfigWorld(t)
	cases := []struct {
		name     string
		env      map[string]string
		wantCode int
		wantText string
		retries  bool // run keeps trying instead of exiting
	}{
		{"no key", map[string]string{"TRACESYNC_API_KEY_FILE": ""}, 2, "no API key", false},
		{"rejected key", map[string]string{"LAYERLENS_STRATIX_API_KEY": "sk-wrong", "TRACESYNC_API_KEY_FILE": ""}, 2, "rejected", true},
		{"unreachable API", map[string]string{"TRACESYNC_BASE_URL": "http://127.0.0.1:1/api/v1"}, 1, "cannot reach the Stratix API", true},
		{"wrong organization", map[string]string{"TRACESYNC_ORGANIZATION_ID": "org-not-mine"}, 2, "not the one this API key belongs to", false},
	}
	for _, cmd := range []string{"run", "backfill"} {
		for _, c := range cases {
			t.Run(cmd+"/"+c.name, func(t *testing.T) {
				env := map[string]string{}
				for k, v := range w.env {
					env[k] = v
				}
				for k, v := range c.env {
					env[k] = v
				}
				ctx, wantCode := context.Background(), c.wantCode
				var stdout bytes.Buffer
				stderr := &stopOnText{}
				if cmd == "run" && c.retries {
					// Stopped (like SIGTERM) after its first retry line.
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
					stderr.text, stderr.stop = "retrying", cancel
					wantCode = 0 // stopped while waiting: nothing started
				}
				code := Main(ctx, []string{cmd, w.folder}, strings.NewReader(""), &stdout, stderr,
					func(k string) string { return env[k] })
				if cmd == "run" && c.retries && !strings.Contains(stderr.String(), "retrying") {
					t.Fatalf("run with %s did not say it keeps trying:\n%s", c.name, stderr.String())
				}
				if code != wantCode || !strings.Contains(stderr.String(), c.wantText) {
					t.Fatalf("%s with %s: exit %d, want %d with %q in:\n%s", cmd, c.name, code, wantCode, c.wantText, stderr.String())
				}
			})
		}
	}
	// The state is held by another process: a clear error, no panic.
	db, err := store.Open(w.state, store.Options{Target: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"backfill", w.folder}, strings.NewReader(""), &stdout, &stderr,
		func(k string) string { return w.env[k] })
	if code == 0 || !strings.Contains(stderr.String(), "held by another tracesync") {
		t.Fatalf("backfill on a held state: exit %d, want an error naming the holder:\n%s", code, stderr.String())
	}
}
