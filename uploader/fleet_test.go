package uploader_test

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

func TestUploadName(t *testing.T) {
	h := store.Hash(sha256.Sum256([]byte("x")))
	tag := fmt.Sprintf("%x", h[:8])
	for _, c := range []struct {
		path   string
		naming uploader.RemoteNaming
		want   string
	}{
		{"/d/agent.jsonl", uploader.RemoteNameUnique, "agent." + tag + ".jsonl"},
		{"/d/trace.json", uploader.RemoteNameUnique, "trace." + tag + ".json"},
		{"/d/a.b.json", uploader.RemoteNameUnique, "a.b." + tag + ".json"},
		{"/d/.json", uploader.RemoteNameUnique, "." + tag + ".json"},
		{"/d/agent.jsonl", uploader.RemoteNameBasename, "agent.jsonl"},
	} {
		if got := uploader.UploadName(c.path, h, c.naming); got != c.want {
			t.Errorf("UploadName(%s, %s): %q, want %q", c.path, c.naming, got, c.want)
		}
	}
}

// checkOwnTraces checks that path is recorded with exactly one trace, and
// that the server's trace of that id holds data (a one-object .json).
func checkOwnTraces(t *testing.T, h *harness, path, data string, onServer map[string]string) {
	t.Helper()
	c, err := h.db.GetContent(h.rec(path).Hash)
	if err != nil {
		t.Fatalf("%s: no content recorded: %v", path, err)
	}
	if len(c.TraceIDs) != 1 {
		t.Fatalf("%s: recorded traces %v, want one", path, c.TraceIDs)
	}
	if got, want := onServer[c.TraceIDs[0]], stratixtest.CanonicalJSON([]byte(data)); got != want {
		t.Fatalf("%s: recorded trace %s holds %s on the server, want this file's %s", path, c.TraceIDs[0], got, want)
	}
}

// Two uploaders with their own states upload files of the same basenames
// and different bytes into one project at the same time: with unique
// names every content reaches the server once and each path is recorded
// with its own traces (with bare basenames, uploads crossed at the server).
func TestTwoUploadersSameBasenames(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameUnique
	a := newHarness(t, cfg, stratixtest.Options{})
	a.srv.SetLatency(stratixtest.EndpointCreate, 5*time.Millisecond)
	a.srv.SetLatency(stratixtest.EndpointPresign, 5*time.Millisecond)
	b := newHarnessWithAPI(t, cfg, a.srv, a.api)
	const n = 15
	type file struct {
		h          *harness
		path, data string
	}
	var files []file
	for i := range n {
		for hi, h := range []*harness{a, b} {
			data := fmt.Sprintf(`{"host":%d,"i":%d}`, hi, i)
			files = append(files, file{h, h.write(fmt.Sprintf("run%d/t.json", i), data), data})
		}
	}
	for _, f := range files {
		f.h.ready(f.path)
	}
	for _, f := range files {
		f.h.waitState(f.path, store.StateUploaded)
	}
	for hash, c := range a.srv.CreatesByHash() {
		if c != 1 {
			t.Fatalf("content %s created %d times, want once", hash[:12], c)
		}
	}
	if got := len(a.srv.CreatesByHash()); got != 2*n {
		t.Fatalf("%d distinct contents on the server, want %d", got, 2*n)
	}
	onServer := a.srv.TraceJSON()
	for _, f := range files {
		checkOwnTraces(t, f.h, f.path, f.data, onServer)
	}
}

// Rule 15: a content the state does not know, whose unique name the
// server already holds (uploaded by another uploader, or recorded in a
// state since lost), is adopted: no PUT, no create (a presign runs beside
// the listing and is left unused).
func TestRemoteCheckAdoptsNotUploads(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameUnique
	first := newHarness(t, cfg, stratixtest.Options{})
	p := first.write("x/trace.json", traceA)
	first.ready(p)
	first.waitState(p, store.StateUploaded)
	firstIDs := func() []string { c, _ := first.db.GetContent(first.rec(p).Hash); return c.TraceIDs }()
	puts, creates := first.srv.Calls(stratixtest.EndpointPut), first.srv.Calls(stratixtest.EndpointCreate)

	// A second state (a lost one, or another host's) meets the same bytes
	// under another folder and basename: another stem, so another name.
	second := newHarnessWithAPI(t, cfg, first.srv, first.api)
	same := second.write("x/trace.json", traceA)
	other := second.write("y/other.json", traceA)
	second.ready(same)
	second.waitState(same, store.StateUploaded)
	if p, c := first.srv.Calls(stratixtest.EndpointPut), first.srv.Calls(stratixtest.EndpointCreate); p != puts || c != creates {
		t.Fatalf("a content already on the server under its name: %d PUTs and %d creates more, want none", p-puts, c-creates)
	}
	c, _ := second.db.GetContent(second.rec(same).Hash)
	if !slices.Equal(sortedCopy(c.TraceIDs), sortedCopy(firstIDs)) {
		t.Fatalf("adopted %v, want the first uploader's %v", c.TraceIDs, firstIDs)
	}
	// The store shows the path uploaded a moment before the loop counts it.
	second.waitFor("the adoption to be counted", func() bool { return second.eng.Progress().Adopted >= 1 })
	if pr := second.eng.Progress(); pr.Adopted != 1 || pr.Uploaded != 0 {
		t.Fatalf("progress adopted %d uploaded %d, want 1 and 0", pr.Adopted, pr.Uploaded)
	}
	// The same bytes under another path of the same state are linked.
	second.ready(other)
	second.waitState(other, store.StateUploaded)
	if n := first.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("%d creates of one content, want 1", n)
	}
}

// --no-remote-check: the server is not asked; the content is uploaded
// again (a second set of traces), as the flag's help says.
func TestNoRemoteCheckUploadsAgain(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameUnique
	first := newHarness(t, cfg, stratixtest.Options{})
	p := first.write("trace.json", traceA)
	first.ready(p)
	first.waitState(p, store.StateUploaded)
	cfg.NoRemoteCheck = true
	second := newHarnessWithAPI(t, cfg, first.srv, first.api)
	q := second.write("trace.json", traceA)
	lists := first.srv.Calls(stratixtest.EndpointList)
	second.ready(q)
	second.waitState(q, store.StateUploaded)
	if n := first.srv.CreatesByHash()[hexHash(traceA)]; n != 2 {
		t.Fatalf("with --no-remote-check: %d creates, want 2", n)
	}
	if got := first.srv.Calls(stratixtest.EndpointList); got != lists {
		t.Fatalf("with --no-remote-check: %d listings, want none", got-lists)
	}
}

// Rule 9 with unique names: a crash between PUT and create, while another
// uploader creates traces of the same basename from other bytes, is
// resolved by the unique name alone: the other's traces are never adopted,
// and the crashed file is uploaded.
func TestRecoveryNeverAdoptsAnotherUploadersTraces(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameUnique
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour // no retry before the "crash"
	a := newHarness(t, cfg, stratixtest.Options{})
	p := a.write("t.json", traceA)
	// The create never answers: the intent stays in the create phase.
	a.srv.FailNext(stratixtest.EndpointCreate, 1, http.StatusServiceUnavailable)
	a.ready(p)
	a.waitFor("a create-phase intent", func() bool {
		in, _ := a.db.Intents()
		return len(in) == 1 && in[0].Phase == store.PhaseCreate && a.rec(p).State == store.StateRetrying
	})
	a.stop()

	// Meanwhile another uploader creates t.json from other bytes.
	cfgB := fastConfig()
	cfgB.RemoteName = uploader.RemoteNameUnique
	b := newHarnessWithAPI(t, cfgB, a.srv, a.api)
	q := b.write("t.json", traceB)
	b.ready(q)
	b.waitState(q, store.StateUploaded)
	bc, _ := b.db.GetContent(b.rec(q).Hash)

	a.openStore()
	a.cfg = cfgB
	a.start()
	a.waitState(p, store.StateUploaded)
	ac, _ := a.db.GetContent(a.rec(p).Hash)
	for _, id := range ac.TraceIDs {
		if slices.Contains(bc.TraceIDs, id) {
			t.Fatalf("recovery adopted %s, a trace the other uploader made from other bytes", id)
		}
	}
	creates := a.srv.CreatesByHash()
	if creates[hexHash(traceA)] != 1 || creates[hexHash(traceB)] != 1 {
		t.Fatalf("creates by hash %v, want each content once", creates)
	}
	onServer := a.srv.TraceJSON()
	checkOwnTraces(t, a, p, traceA, onServer)
}

// Rule 11: when most calls answer 503, the pool pauses as one and probes,
// instead of each file backing off on its own; once the API is back,
// everything is uploaded once.
func TestServiceUnavailableStormPausesPool(t *testing.T) {
	cfg := fastConfig()
	cfg.NoRemoteCheck = true
	cfg.InitialBackoff, cfg.MaxBackoff = time.Millisecond, 2*time.Millisecond
	cfg.ProbeInterval = 20 * time.Millisecond
	logs := &syncBuffer{}
	cfg.Log = zerolog.New(logs)
	h := newHarness(t, cfg, stratixtest.Options{})
	// The outage answers every call, the probe's listing included.
	t.Logf("fake server fault seed %d", h.srv.Seed())
	h.srv.FailRate(stratixtest.EndpointPresign, 1, http.StatusServiceUnavailable)
	h.srv.FailRate(stratixtest.EndpointList, 1, http.StatusServiceUnavailable)
	var paths, hashes []string
	for i := range 200 {
		data := fmt.Sprintf(`{"storm":%d}`, i)
		paths = append(paths, h.write(fmt.Sprintf("f%03d.json", i), data))
		hashes = append(hashes, hexHash(data))
	}
	for _, p := range paths {
		h.ready(p)
	}
	h.waitFor("the pool to pause", func() bool { return h.eng.Progress().Paused })
	atPause := h.srv.Calls(stratixtest.EndpointPresign)
	probes := h.srv.Calls(stratixtest.EndpointList)
	h.waitFor("a few probes", func() bool { return h.srv.Calls(stratixtest.EndpointList) >= probes+5 })
	if more := h.srv.Calls(stratixtest.EndpointPresign) - atPause; more > cfg.Workers {
		t.Fatalf("paused pool: %d presigns more during 5 probes, want at most the %d in flight when it paused", more, cfg.Workers)
	}
	if atPause > 20 {
		t.Fatalf("%d presigns before the pool paused, want about 10 (it pauses at 8 of the last 10 calls)", atPause)
	}
	findLog(t, logs, logWant{level: "error", msg: "uploads paused: the API answers that it is unavailable", has: []string{"probe_every"}, errHas: "503"})
	h.srv.FailRate(stratixtest.EndpointPresign, 0, 0)
	h.srv.FailRate(stratixtest.EndpointList, 0, 0)
	checkNothingLostOrDuplicated(t, h, paths, hashes)
	checkPause(t, logs, true)
}

// The check by name never adopts traces waiting for their remote delete:
// the same bytes back under another name after their file was removed
// are uploaded again, not given the traces about to go.
func TestRemoteCheckSkipsTracesPendingDelete(t *testing.T) {
	cfg := deleteConfig()
	cfg.RemoteName = uploader.RemoteNameUnique
	h := newHarness(t, cfg, stratixtest.Options{})
	keep := h.write("keep.json", traceB) // the folder is not left empty
	gone := h.write("a.json", traceA)
	h.ready(keep)
	h.ready(gone)
	h.waitState(keep, store.StateUploaded)
	h.waitState(gone, store.StateUploaded)
	h.srv.FailRate(stratixtest.EndpointDelete, 1, http.StatusBadRequest) // the deletes stay pending
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	h.removed(gone)
	h.waitFor("a.json's deletes pending", func() bool { ds, _ := h.db.Deletes(); return len(ds) == 1 })
	pending, _ := h.db.Deletes()
	back := filepath.Join(filepath.Dir(gone), "a.json")
	if err := os.WriteFile(back, []byte(traceA), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ready(back)
	h.waitState(back, store.StateUploaded)
	c, _ := h.db.GetContent(h.rec(back).Hash)
	if slices.Contains(c.TraceIDs, pending[0].TraceID) {
		t.Fatalf("adopted %s, a trace waiting for its delete", pending[0].TraceID)
	}
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 2 {
		t.Fatalf("%d creates of the bytes, want 2 (uploaded again)", n)
	}
}
