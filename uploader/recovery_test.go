package uploader_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

func serverIDs(srv *stratixtest.Server, filename string) []string {
	var ids []string
	for _, tr := range srv.Traces() {
		if tr.Filename != nil && *tr.Filename == filename {
			ids = append(ids, tr.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Rule 9 at run time: the create ran but its answer was lost; the retry
// finds and adopts the traces instead of creating again.
func TestLostCreateResponseAdopted(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	p := h.write("lost.jsonl", "{\"a\":1}\n{\"a\":2}\n")
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash("{\"a\":1}\n{\"a\":2}\n")]; n != 1 {
		t.Fatalf("lost create answer: got %d creates, want 1", n)
	}
	c, _ := h.db.GetContent(h.rec(p).Hash)
	if got, want := sortedCopy(c.TraceIDs), serverIDs(h.srv, nameOf(h.cfg, p, "{\"a\":1}\n{\"a\":2}\n")); !slices.Equal(got, want) || len(want) != 2 {
		t.Fatalf("adopted trace ids %v, want the server's %v", got, want)
	}
	if in, _ := h.db.Intents(); len(in) != 0 {
		t.Fatalf("intents left: %+v", in)
	}
}

// Rule 9 across a crash: a create-phase intent left by a run that died is
// resolved on start by listing and adopting, with no second create.
func TestRestartAdoptsCreatedTraces(t *testing.T) {
	cfg := fastConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour // the retry would come after the "crash"
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	p := h.write("crash.json", traceA)
	h.ready(p)
	h.waitFor("the create-phase intent after the lost answer", func() bool {
		in, _ := h.db.Intents()
		return len(in) == 1 && in[0].Phase == store.PhaseCreate && h.rec(p).State == store.StateRetrying
	})
	h.stop()
	h.openStore()
	h.cfg = fastConfig()
	h.start()
	h.waitState(p, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("restart after a lost create: got %d creates, want 1", n)
	}
	c, _ := h.db.GetContent(h.rec(p).Hash)
	if got, want := sortedCopy(c.TraceIDs), serverIDs(h.srv, nameOf(h.cfg, p, traceA)); !slices.Equal(got, want) || len(got) != 1 {
		t.Fatalf("adopted %v, want the server's %v", got, want)
	}
	if in, _ := h.db.Intents(); len(in) != 0 {
		t.Fatalf("intents left: %+v", in)
	}
}

// seed writes a pending path and an intent into the store, as a run that
// died would have left them.
func seed(t *testing.T, h *harness, p string, data string, phase store.Phase, startedAt time.Time) store.Hash {
	t.Helper()
	sum := store.Hash(sha256.Sum256([]byte(data)))
	st := statOf(t, p)
	err := h.db.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.PutPath(store.PathRecord{Path: p, Root: h.root, Hash: sum, Size: st.Size, ModTime: st.ModTime, Dev: st.Dev, Ino: st.Ino,
			State: store.StatePending, FirstSeen: startedAt, UpdatedAt: startedAt}); err != nil {
			return err
		}
		return tx.PutIntent(store.Intent{Hash: sum, Path: p, Filename: "x.json", Size: st.Size, Phase: phase, StartedAt: startedAt})
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// Rule 9: a presign-phase intent is simply redone; a create-phase intent
// whose create never ran (nothing to adopt) is uploaded again, once.
func TestLeftoverIntentsRedone(t *testing.T) {
	for _, phase := range []store.Phase{store.PhasePresign, store.PhaseCreate} {
		h := newHarness(t, fastConfig(), stratixtest.Options{})
		h.stop()
		h.openStore()
		p := h.write("x.json", traceA)
		seed(t, h, p, traceA, phase, time.Now().Add(-time.Minute))
		h.start()
		h.waitState(p, store.StateUploaded)
		if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
			t.Fatalf("phase %d intent: got %d creates, want 1", phase, n)
		}
		if in, _ := h.db.Intents(); len(in) != 0 {
			t.Fatalf("phase %d: intents left %+v", phase, in)
		}
	}
}

// Rule 9: leftover intents are resolved before any new upload, so a new
// upload of the same basename cannot be adopted by mistake.
func TestRecoveryBeforeNewUploads(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	// The crashed run: its create for x.json ran.
	old := h.write("old/x.json", traceA)
	ctx := context.Background()
	if _, err := h.api.Upload(ctx, "x.json", bytes.NewReader([]byte(traceA)), int64(len(traceA))); err != nil {
		t.Fatal(err)
	}
	created := serverIDs(h.srv, "x.json")
	h.stop()
	h.openStore()
	seed(t, h, old, traceA, store.PhaseCreate, time.Now().Add(-time.Second))
	h.srv.SetLatency(stratixtest.EndpointList, 100*time.Millisecond) // a slow recovery
	h.start()
	fresh := h.write("new/x.json", traceB) // same basename, other bytes, ready at once
	h.ready(fresh)
	h.waitState(old, store.StateUploaded)
	h.waitState(fresh, store.StateUploaded)
	c, _ := h.db.GetContent(h.rec(old).Hash)
	if !slices.Equal(sortedCopy(c.TraceIDs), created) {
		t.Fatalf("recovered content has traces %v, want only the crashed run's %v", c.TraceIDs, created)
	}
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("recovered content: %d creates, want 1", n)
	}
}

// lateStore holds back the next write of the engine's loop, once armed,
// until the test releases it; the workers' writes (Update) go on meanwhile.
type lateStore struct {
	*store.DB
	mu      sync.Mutex // guards holding and held
	holding bool
	held    []heldWrite
	armed   atomic.Bool
	entered chan struct{} // closed when the held write arrives
	release chan struct{} // closed by the test to let it go
	done    chan struct{} // closed when it has committed
}

func newLateStore(db *store.DB) *lateStore {
	return &lateStore{DB: db, entered: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
}

// Submit holds back the loop's next write once armed, and every loop write
// after it, in order, until the test releases them: the store commits the
// loop's writes in the order they were submitted.
func (s *lateStore) Submit(fn func(*store.Tx) error, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding {
		s.held = append(s.held, heldWrite{fn, done})
		return nil
	}
	if !s.armed.CompareAndSwap(true, false) {
		return s.DB.Submit(fn, done)
	}
	s.holding = true
	s.held = append(s.held, heldWrite{fn, func(err error) { done(err); close(s.done) }})
	close(s.entered)
	go func() {
		<-s.release
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, w := range s.held {
			if err := s.DB.Submit(w.fn, w.done); err != nil {
				go w.done(err)
			}
		}
		s.held, s.holding = nil, false
	}()
	return nil
}

type heldWrite struct {
	fn   func(*store.Tx) error
	done func(error)
}

// Rule 9: a leftover create-phase intent that the listing resolves to
// nothing is cleared, and the content is uploaded again at once. The clear
// is a write of the engine's loop; the next upload's intent is written by
// its worker, and may commit first. The late clear must not remove it: a
// crash during that upload's create would then leave nothing to resolve,
// and the next start would create the content a second time.
func TestResolvedIntentClearKeepsTheNextUploadsIntent(t *testing.T) {
	cfg := fastConfig()
	cfg.Workers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	h.stop()
	h.openStore()
	p := h.write("x.json", traceA)
	sum := seed(t, h, p, traceA, store.PhaseCreate, time.Now().Add(-time.Minute))
	ls := newLateStore(h.db)
	// The loop's next write once the listing has ended (the clear) is held
	// until the next upload has written its own intent and reached create.
	h.hooks.once(&h.hooks.listed, func() { ls.armed.Store(true) })
	h.hooks.once(&h.hooks.presign, func() { <-ls.entered })
	h.hooks.once(&h.hooks.create, func() {
		close(ls.release)
		<-ls.done
		// Here a crash would leave the state as it is now.
		in, err := h.db.Intents()
		if err != nil {
			t.Error(err)
		}
		if !slices.ContainsFunc(in, func(i store.Intent) bool { return i.Hash == sum && i.Phase == store.PhaseCreate }) {
			t.Errorf("as the upload after a resolved intent creates, intents are %+v: its create-phase intent is gone", in)
		}
	})
	eng, err := uploader.New(cfg, ls, h.hooks)
	if err != nil {
		t.Fatal(err)
	}
	h.startEngine(eng)
	h.waitState(p, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

// Rule 9 with rule 8: the traces of an earlier upload of the same basename,
// created seconds before a crashed run's intent and recorded for their own
// content, are inside the clock-skew window of the recovery list but are
// never adopted: the crashed content, whose create never ran, is created.
func TestRecoveryIgnoresRecordedTracesOfSameBasename(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameBasename // a unique name never meets another content's traces
	h := newHarness(t, cfg, stratixtest.Options{})
	earlier := h.write("a/x.json", traceB)
	h.ready(earlier)
	h.waitState(earlier, store.StateUploaded)
	recorded := serverIDs(h.srv, "x.json")
	h.stop()
	h.openStore()
	crashed := h.write("b/x.json", traceA)
	seed(t, h, crashed, traceA, store.PhaseCreate, time.Now().Add(time.Second))
	h.start()
	h.waitState(crashed, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("crashed content whose create never ran: got %d creates, want 1", n)
	}
	c, _ := h.db.GetContent(h.rec(crashed).Hash)
	for _, id := range c.TraceIDs {
		if slices.Contains(recorded, id) {
			t.Fatalf("crashed content adopted %s, a trace of the earlier upload %v", id, recorded)
		}
	}
	if e, _ := h.db.GetContent(h.rec(earlier).Hash); !slices.Equal(sortedCopy(e.TraceIDs), recorded) {
		t.Fatalf("earlier content now has %v, want %v", e.TraceIDs, recorded)
	}
}

// Rule 10: what can never succeed is quarantined with the reason; nothing
// is sent for invalid files.
func TestQuarantine(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFileSize = 64
	h := newHarness(t, cfg, stratixtest.Options{})
	invalid := h.write("bad.json", "{\n  \"a\": 1,\n  \"b\": oops\n}")
	badLine := h.write("bad.jsonl", "{\"ok\":1}\n{\"ok\":2,}\n")
	big := h.write("big.json", `{"data": "`+strings.Repeat("x", 100)+`"}`)
	h.ready(invalid)
	h.ready(badLine)
	h.ready(big)
	r := h.waitState(invalid, store.StateQuarantined)
	if !strings.Contains(r.LastError, "line 3") || !strings.Contains(r.LastError, "column 8 (byte offset 19)") {
		t.Fatalf("invalid JSON reason %q: want line 3, column 8, byte offset 19", r.LastError)
	}
	r = h.waitState(badLine, store.StateQuarantined)
	if !strings.Contains(r.LastError, "line 2") {
		t.Fatalf("invalid JSONL reason %q: want line 2", r.LastError)
	}
	r = h.waitState(big, store.StateQuarantined)
	if !strings.Contains(r.LastError, "larger than the limit") {
		t.Fatalf("too large reason %q", r.LastError)
	}
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != 0 {
		t.Fatalf("quarantined files: got %d presigns, want 0", n)
	}
	h.waitFor("3 quarantines counted", func() bool { return h.eng.Progress().Quarantined == 3 })
	if p := h.eng.Progress(); p.QuarantineReasons["invalid"] != 2 || p.QuarantineReasons["too-large"] != 1 {
		t.Fatalf("quarantine reasons %v", p.QuarantineReasons)
	}
	// Rule 10: the same bytes seen again stay quarantined without a retry.
	h.ready(invalid)
	h.idle()
	if s := h.rec(invalid).State; s != store.StateQuarantined {
		t.Fatalf("same invalid bytes again: %s", s)
	}
	// Fixed bytes are tried again.
	h.write("bad.json", `{"a": 1, "b": "fixed"}`)
	h.ready(invalid)
	h.waitState(invalid, store.StateUploaded)
}

// An incomplete file goes back to settling instead of being quarantined;
// the watcher's Incomplete (settle timeout) quarantines it.
func TestIncompleteResettled(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	half := h.write("half.json", "[{\"a\":1},{\"a\":")
	h.ready(half)
	h.waitFor("the truncated file to go back to settling", func() bool { return h.rs.has(half) })
	if s := h.rec(half).State; s == store.StateQuarantined {
		t.Fatalf("truncated file quarantined at once; want it settling")
	}
	h.send(watcher.Event{Kind: watcher.Incomplete, Root: h.root, Path: half, Reason: "not whole after 10m"})
	r := h.waitState(half, store.StateQuarantined)
	if !strings.Contains(r.LastError, "not whole") {
		t.Fatalf("incomplete reason %q", r.LastError)
	}
	if h.srv.Calls(stratixtest.EndpointPresign) != 0 {
		t.Fatalf("incomplete file was sent")
	}
}

// Rule 10: 400 and 422 quarantine with the server's message; `retry` makes
// a quarantined path eligible again.
func TestServerRejectionQuarantinedAndRequeued(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	h.srv.FailNext(stratixtest.EndpointCreate, 1, http.StatusUnprocessableEntity)
	a := h.write("a.json", traceA)
	h.ready(a)
	r := h.waitState(a, store.StateQuarantined)
	if !strings.Contains(r.LastError, "422") || !strings.Contains(r.LastError, "injected failure") {
		t.Fatalf("422 reason %q: want the status and the server's message", r.LastError)
	}
	h.srv.FailNext(stratixtest.EndpointPresign, 1, http.StatusBadRequest)
	b := h.write("b.json", traceB)
	h.ready(b)
	r = h.waitState(b, store.StateQuarantined)
	if !strings.Contains(r.LastError, "400") {
		t.Fatalf("400 reason %q", r.LastError)
	}
	if in, _ := h.db.Intents(); len(in) != 0 {
		t.Fatalf("quarantine left intents %+v", in)
	}
	h.eng.Requeue([]string{a, b})
	h.waitState(a, store.StateUploaded)
	h.waitState(b, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("requeued: %d creates, want 1", n)
	}
}

// Rule 10: transient failures (5xx, 429) are retried; Retry-After is
// honoured and the next attempt time is stored.
func TestTransientRetriedWithRetryAfter(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	h.srv.FailNext(stratixtest.EndpointPresign, 2, http.StatusInternalServerError)
	h.srv.FailNext(stratixtest.EndpointPut, 1, http.StatusServiceUnavailable)
	h.srv.FailNext(stratixtest.EndpointCreate, 1, http.StatusBadGateway)
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("after 5xx: %d creates, want 1", n)
	}

	h.srv.RateLimitNext(stratixtest.EndpointPresign, 1, "2")
	b := h.write("b.json", traceB)
	before := time.Now()
	h.ready(b)
	r := h.waitState(b, store.StateRetrying)
	if r.Attempts != 1 || !strings.Contains(r.LastError, "429") {
		t.Fatalf("after a 429: attempts %d, last error %q", r.Attempts, r.LastError)
	}
	if wait := r.NextAttempt.Sub(before); wait < 1900*time.Millisecond {
		t.Fatalf("stored next attempt %v after the 429, want at least the 2 s Retry-After", wait)
	}
	h.waitState(b, store.StateUploaded)
	if time.Since(before) < 1900*time.Millisecond {
		t.Fatalf("retried before Retry-After")
	}
}

// Rule 11: a rejected key pauses the whole pool; workers do not hammer it;
// one slow probe runs until the key works, then everything resumes.
func TestAuthFailurePausesPool(t *testing.T) {
	cfg := fastConfig()
	cfg.ProbeInterval = 20 * time.Millisecond
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.SetAPIKey("rotated-key")
	var paths []string
	for i := range 20 {
		p := h.write("f"+string(rune('a'+i))+".json", `{"i": `+string(rune('0'+i%10))+`}`)
		paths = append(paths, p)
		h.ready(p)
	}
	h.waitFor("the pool to pause", func() bool { return h.eng.Progress().Paused })
	listBefore := h.srv.Calls(stratixtest.EndpointList)
	h.waitFor("a few probes", func() bool { return h.srv.Calls(stratixtest.EndpointList) >= listBefore+3 })
	if n := h.srv.Calls(stratixtest.EndpointPresign); n > cfg.Workers {
		t.Fatalf("rejected key: %d presign calls for %d workers, want at most one per worker", n, cfg.Workers)
	}
	if h.eng.Ready() {
		t.Fatalf("Ready() while paused")
	}
	h.srv.SetAPIKey(stratixtest.DefaultAPIKey)
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	h.waitFor("the pool to resume", func() bool { return !h.eng.Progress().Paused })
	for hash, n := range h.srv.CreatesByHash() {
		if n != 1 {
			t.Fatalf("content %s created %d times", hash, n)
		}
	}
}

func TestKnown(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	a := h.write("a.json", traceA)
	if h.eng.Known(a, statOf(t, a)) {
		t.Fatalf("Known before the file was seen")
	}
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	if !h.eng.Known(a, statOf(t, a)) {
		t.Fatalf("not Known after upload with the same stat")
	}
	st := statOf(t, a)
	st.Size++
	if h.eng.Known(a, st) {
		t.Fatalf("Known with another size")
	}
	os.Remove(a)
	h.removed(a)
	h.waitState(a, store.StateRemoved)
	if h.eng.Known(a, st) {
		t.Fatalf("Known after removal")
	}
}

// OneShot (backfill): Run returns nil once the events are closed and every
// path is final.
func TestOneShotReturnsWhenDone(t *testing.T) {
	cfg := fastConfig()
	cfg.OneShot = true
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.FailNext(stratixtest.EndpointCreate, 2, http.StatusServiceUnavailable)
	var paths []string
	for _, rel := range []string{"a.json", "b.json", "dup.json", "empty.json", "bad.json"} {
		data := map[string]string{"a.json": traceA, "b.json": traceB, "dup.json": traceA, "empty.json": "", "bad.json": "{"}[rel]
		paths = append(paths, h.write(rel, data))
	}
	for _, p := range paths {
		h.ready(p)
	}
	h.send(watcher.Event{Kind: watcher.ScanDone, Root: h.root, Scan: watcher.ScanSummary{Files: 5, RootDev: h.rootDev()}})
	close(h.events)
	select {
	case err := <-h.runErr:
		if err != nil {
			t.Fatalf("one-shot run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("one-shot run did not return; progress %+v", h.eng.Progress())
	}
	p := h.eng.Progress()
	if p.Uploaded != 2 || p.Linked != 1 || p.Skipped != 1 || p.FilesDone != 4 || p.Settling != 1 {
		t.Fatalf("one-shot progress %+v", p)
	}
	h.runErr <- nil // for stop
}

// Shutdown bounds the wait for in-flight uploads; what was cut short is
// finished by the next run without a duplicate.
func TestShutdownCancelsHungUpload(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	h.srv.HangNext(stratixtest.EndpointCreate, 1)
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitFor("the create to hang", func() bool { return h.srv.Calls(stratixtest.EndpointCreate) == 1 })
	h.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.eng.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a hung create: %v, want deadline exceeded", err)
	}
	if err := <-h.runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	if h.eng.Healthy() {
		t.Fatalf("Healthy after Run returned")
	}
	h.runErr <- nil
	h.restart()
	h.waitState(a, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("after shutdown and restart: %d creates, want 1", n)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.Metrics = uploader.NewMetrics(reg)
	h := newHarness(t, cfg, stratixtest.Options{})
	h.waitFor("healthy", h.eng.Healthy)
	if h.eng.Ready() {
		t.Fatalf("Ready before the first scan")
	}
	a := h.write("a.json", traceA)
	h.ready(a)
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev()})
	h.waitState(a, store.StateUploaded)
	h.waitFor("ready", h.eng.Ready)
	h.waitFor("the upload to be counted", func() bool { return h.eng.Progress().Uploaded == 1 })
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tracesync_uploads_total Contents uploaded (presign, PUT and create succeeded, or traces adopted after a crash).
# TYPE tracesync_uploads_total counter
tracesync_uploads_total 1
`), "tracesync_uploads_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "tracesync_files" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "uploaded" && m.GetGauge().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("tracesync_files{state=\"uploaded\"} is not 1")
	}
	_ = client.MaxFileSize
}
