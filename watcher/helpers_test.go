package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit is how long a test waits for an event before failing. It is a
// safety net for a hung test, not a speed assertion.
const waitLimit = 60 * time.Second

// testSettle keeps integration tests quick; nothing asserts on timing.
const testSettle = 60 * time.Millisecond

// recorder runs a Watcher and records every event it delivers.
type recorder struct {
	t      *testing.T
	w      *Watcher
	mu     sync.Mutex // guards events, closed
	events []Event
	closed bool
	more   chan struct{} // cap 1: events grew or the channel closed
	runErr chan error    // Run's result
	cancel context.CancelFunc
}

// startWatcher runs a watcher of cfg, with the tests' settle and removal
// grace where cfg leaves them zero, and records its events.
func startWatcher(t *testing.T, cfg Config) *recorder {
	t.Helper()
	return runRecorder(t, newTestWatcher(t, cfg))
}

// newTestWatcher is New with the tests' settle and removal grace where cfg
// leaves them zero.
func newTestWatcher(t *testing.T, cfg Config) *Watcher {
	t.Helper()
	if cfg.Settle == 0 {
		cfg.Settle = testSettle
	}
	if cfg.RemoveGrace == 0 {
		cfg.RemoveGrace = 3 * cfg.Settle
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

// runRecorder runs w until the test ends, recording its events.
func runRecorder(t *testing.T, w *Watcher) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{t: t, w: w, more: make(chan struct{}, 1), runErr: make(chan error, 1), cancel: cancel}
	go func() { r.runErr <- w.Run(ctx) }()
	go func() {
		for ev := range w.Events() {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
			signal(r.more)
		}
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		signal(r.more)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return after cancel")
		}
	})
	return r
}

func (r *recorder) snapshot() ([]Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...), r.closed
}

// waitFor waits until cond holds over the events recorded so far.
func (r *recorder) waitFor(what string, cond func([]Event) bool) []Event {
	r.t.Helper()
	deadline := time.After(waitLimit)
	for {
		evs, closed := r.snapshot()
		if cond(evs) {
			return evs
		}
		if closed {
			r.t.Fatalf("waiting for %s: events closed; got:\n%s", what, dump(evs))
		}
		select {
		case <-r.more:
		case <-deadline:
			r.t.Fatalf("waiting for %s: not seen within %v; got:\n%s", what, waitLimit, dump(evs))
		}
	}
}

// waitEvent waits for an event of kind on path ("" matches any path).
func (r *recorder) waitEvent(kind Kind, root, path string) Event {
	r.t.Helper()
	var got Event
	r.waitFor(fmt.Sprintf("%v %s", kind, path), func(evs []Event) bool {
		for _, ev := range evs {
			if ev.Kind == kind && (path == "" || ev.Path == path) && (root == "" || ev.Root == root) {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// waitCount waits until n events of kind have been recorded.
func (r *recorder) waitCount(kind Kind, n int) []Event {
	r.t.Helper()
	return r.waitFor(fmt.Sprintf("%d %v events", n, kind), func(evs []Event) bool {
		return count(evs, kind, "") >= n
	})
}

// barrier writes a new file and waits for it to be Ready. Every timer due
// before it (settling, and removals when the grace has passed) has fired by
// then, so events that were going to come have come.
func (r *recorder) barrier(dir string) {
	r.t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("zz-barrier-%d.json", time.Now().UnixNano()))
	writeFile(r.t, p, "{}")
	r.waitEvent(Ready, "", p)
}

// removalBarrier waits until every removal that was pending has fired: it
// removes a fresh file and waits for its Removed.
func (r *recorder) removalBarrier(dir string) {
	r.t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("zz-rbarrier-%d.json", time.Now().UnixNano()))
	writeFile(r.t, p, "{}")
	r.waitEvent(Ready, "", p)
	if err := os.Remove(p); err != nil {
		r.t.Fatal(err)
	}
	r.waitEvent(Removed, "", p)
}

func count(evs []Event, kind Kind, path string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind && (path == "" || ev.Path == path) {
			n++
		}
	}
	return n
}

func dump(evs []Event) string {
	var b strings.Builder
	for i, ev := range evs {
		if i == 200 {
			fmt.Fprintf(&b, "  ... %d more\n", len(evs)-i)
			break
		}
		fmt.Fprintf(&b, "  %v root=%s path=%s size=%d reason=%q files=%d unchanged=%d errors=%d\n",
			ev.Kind, ev.Root, ev.Path, ev.Stat.Size, ev.Reason, ev.Scan.Files, ev.Scan.Unchanged, ev.Scan.Errors)
	}
	return b.String()
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tempRoot returns a clean, symlink-free temporary directory.
func tempRoot(t testing.TB) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runDirect starts a watcher of root with the given settle time, lets set
// adjust it before Run (test hooks; set may be nil), waits for its first
// scan and stops it when the test ends. The caller reads w.Events().
func runDirect(tb testing.TB, root string, settle time.Duration, set func(*Watcher)) *Watcher {
	tb.Helper()
	w, err := New(Config{Roots: []string{root}, Settle: settle})
	if err != nil {
		tb.Fatal(err)
	}
	if set != nil {
		set(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	for ev := range w.Events() {
		if ev.Kind == ScanDone {
			break
		}
	}
	return w
}

// perFile adapts a per-file answer to Config.Known's batches.
func perFile(known func(path string, st Stat) bool) func(string, []File, []bool) {
	return func(dir string, files []File, out []bool) {
		for i, f := range files {
			out[i] = known(filepath.Join(dir, f.Name), f.Stat)
		}
	}
}
