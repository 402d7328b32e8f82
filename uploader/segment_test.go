package uploader_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

// lineCounts counts the server's live traces by their JSON.
func lineCounts(srv *stratixtest.Server) map[string]int {
	out := map[string]int{}
	for _, j := range srv.TraceJSON() {
		out[j]++
	}
	return out
}

// checkLines fails unless the server holds each of want exactly once, and
// nothing else.
func checkLines(t *testing.T, srv *stratixtest.Server, want ...string) {
	t.Helper()
	got := lineCounts(srv)
	for _, w := range want {
		c := stratixtest.CanonicalJSON([]byte(w))
		if got[c] != 1 {
			t.Errorf("line %s: on the server %d times, want 1", w, got[c])
		}
		delete(got, c)
	}
	for j, n := range got {
		t.Errorf("unexpected trace on the server (%d times): %s", n, j)
	}
}

func appendTo(t *testing.T, p, data string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// line is the n-th JSON line of a test log.
func line(n int) string { return fmt.Sprintf(`{"run":%d,"pad":"%s"}`, n, strings.Repeat("x", n%7)) }

// lines joins lines from..to-1, each with its newline.
func lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(line(i) + "\n")
	}
	return b.String()
}

func wantLines(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, line(i))
	}
	return out
}

// An append uploads only the lines after what was sent, as a new segment
// with a name of its own; the path's record chains both.
func TestAppendUploadsOnlyNewLines(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("agent.jsonl", lines(0, 2))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	appendTo(t, p, lines(2, 5))
	h.ready(p)
	h.waitFor("the second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	appendTo(t, p, lines(5, 6))
	h.ready(p)
	h.waitFor("the third segment", func() bool { return h.rec(p).Segments() == 3 && h.rec(p).State == store.StateUploaded })
	h.idle()
	checkLines(t, h.srv, wantLines(0, 6)...)
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 3 {
		t.Errorf("creates: %d, want 3 (one per segment)", n)
	}
	names := h.srv.CreatesByFilename()
	if len(names) != 3 {
		t.Errorf("upload names %v: want 3 distinct, one per segment", names)
	}
	rec := h.rec(p)
	if rec.Start != int64(len(lines(0, 5))) || rec.SegEnd() != int64(len(lines(0, 6))) {
		t.Errorf("last segment [%d, %d), want [%d, %d)", rec.Start, rec.SegEnd(), len(lines(0, 5)), len(lines(0, 6)))
	}
	// A restart with the file unchanged uploads nothing more.
	h.restart()
	h.ready(p)
	h.idle()
	checkLines(t, h.srv, wantLines(0, 6)...)
}

// A .jsonl without a final newline is uploaded whole once it is quiet
// (its last line is one JSON value); the next append continues after it.
func TestJSONLWithoutFinalNewline(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("joined.jsonl", line(0)+"\n"+line(1))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	appendTo(t, p, "\n"+line(2)+"\n")
	h.ready(p)
	h.waitFor("the second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	h.idle()
	checkLines(t, h.srv, wantLines(0, 3)...)
}

// A quiet .jsonl whose last line is cut short uploads its complete lines
// and goes back to settling for the rest; finished, the rest follows.
func TestPartialLastLineWaits(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("half.jsonl", line(0)+"\n"+`{"run":`)
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.waitFor("the unfinished line to go back to settling", func() bool { return h.rs.has(p) })
	h.idle()
	checkLines(t, h.srv, wantLines(0, 1)...)
	if err := os.WriteFile(p, []byte(line(0)+"\n"+line(1)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ready(p)
	h.waitFor("the finished line", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	h.idle()
	checkLines(t, h.srv, wantLines(0, 2)...)
}

// A file cut short and written again (copytruncate) is a new content from
// byte 0: its new lines are uploaded, the old ones are not sent again.
func TestTruncatedLogStartsNewChain(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("app.jsonl", lines(0, 3))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	appendTo(t, p, lines(3, 4))
	h.ready(p)
	h.waitFor("the second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, p, lines(10, 12))
	h.ready(p)
	h.waitFor("the new chain", func() bool {
		r := h.rec(p)
		return r.Segments() == 1 && r.State == store.StateUploaded && r.Hash.String() == hexHash(lines(10, 12))
	})
	h.idle()
	checkLines(t, h.srv, append(wantLines(0, 4), wantLines(10, 12)...)...)
}

// A growing file renamed to another included name keeps its chain: an
// append after the rename uploads only the new line.
func TestRenamedLogKeepsChain(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	a := h.write("a.jsonl", lines(0, 2))
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	appendTo(t, a, lines(2, 3))
	h.ready(a)
	h.waitFor("the second segment", func() bool { return h.rec(a).Segments() == 2 && h.rec(a).State == store.StateUploaded })
	b := filepath.Join(h.root, "b.jsonl")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	appendTo(t, b, lines(3, 4))
	h.ready(b)
	h.removed(a)
	h.waitFor("b to take the chain and the new line", func() bool {
		r := h.rec(b)
		return r.State == store.StateUploaded && r.Segments() == 3
	})
	h.idle()
	checkLines(t, h.srv, wantLines(0, 4)...)
}

// Rotation to a name the include patterns skip (app.jsonl to app.jsonl.1)
// moves the file, it does not remove it: with delete-on-remove, nothing
// is deleted.
func TestRotatedLogDeletesNothing(t *testing.T) {
	cfg := fastConfig()
	cfg.DeleteOnRemove = true
	h := newHarness(t, cfg, stratixtest.Options{})
	keep := h.write("keep.json", `{"keep":true}`) // the root is not left empty (that holds deletes back)
	h.ready(keep)
	p := h.write("app.jsonl", lines(0, 2))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	appendTo(t, p, lines(2, 3))
	h.ready(p)
	h.waitFor("the second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	h.removed(p)
	h.waitState(p, store.StateRemoved)
	h.idle()
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("rotation deleted %d traces: %v", len(d), d)
	}
	checkLines(t, h.srv, append(wantLines(0, 3), `{"keep":true}`)...)
	// A real removal of a log still deletes its traces, every segment's.
	q := h.write("gone.jsonl", lines(20, 21))
	h.ready(q)
	h.waitState(q, store.StateUploaded)
	appendTo(t, q, lines(21, 22))
	h.ready(q)
	h.waitFor("the second segment", func() bool { return h.rec(q).Segments() == 2 && h.rec(q).State == store.StateUploaded })
	if err := os.Remove(q); err != nil {
		t.Fatal(err)
	}
	h.removed(q)
	h.waitFor("both segments' traces deleted", func() bool { return len(h.srv.Deleted()) == 2 })
	checkLines(t, h.srv, append(wantLines(0, 3), `{"keep":true}`)...)
}

// A .jsonl larger than the size limit uploads in segments of at most the
// limit, cut at line boundaries; a line longer than the limit is
// quarantined as too large.
func TestLargeJSONLUploadsInSegments(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFileSize = 300
	h := newHarness(t, cfg, stratixtest.Options{})
	data := lines(0, 40)
	p := h.write("big.jsonl", data)
	h.ready(p)
	h.checkSegments(p, data, 300)
	long := h.write("long.jsonl", `{"pad":"`+strings.Repeat("y", 400)+`"}`+"\n")
	h.ready(long)
	r := h.waitState(long, store.StateQuarantined)
	if !strings.Contains(r.LastError, "longer than the limit") {
		t.Errorf("too-long line: reason %q", r.LastError)
	}
}

// A whole .jsonl recorded by an older version (no range, no print) is a
// chain of one segment: an append after the upgrade uploads only the new
// lines, checked by hashing the recorded bytes once.
func TestAppendAfterUpgradeFromWholeFile(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("old.jsonl", lines(0, 3))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.idle()
	h.stop()
	h.openStore()
	h.editRecord(p, func(rec *store.PathRecord) {
		rec.Start, rec.End, rec.Print = 0, 0, store.Print{} // as the older version wrote it
	})
	h.start()
	appendTo(t, p, lines(3, 5))
	h.ready(p)
	h.waitFor("the appended lines as a second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	h.idle()
	checkLines(t, h.srv, wantLines(0, 5)...)
}

// The metrics follow a growing file: each segment counts, and once its
// lines are recorded nothing is behind.
func TestGrowingMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.Metrics = uploader.NewMetrics(reg)
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("m.jsonl", lines(0, 2))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	appendTo(t, p, lines(2, 3))
	h.ready(p)
	h.waitFor("the second segment", func() bool { return h.rec(p).Segments() == 2 && h.rec(p).State == store.StateUploaded })
	h.idle()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tracesync_segments_uploaded_total Segments of .jsonl files uploaded (a whole .jsonl is one; each append after it, another).
# TYPE tracesync_segments_uploaded_total counter
tracesync_segments_uploaded_total 2
# HELP tracesync_bytes_behind Bytes written to growing .jsonl files and not yet recorded as sent.
# TYPE tracesync_bytes_behind gauge
tracesync_bytes_behind 0
# HELP tracesync_oldest_unsent_seconds How long the oldest bytes of a growing .jsonl not yet sent have waited since tracesync saw them (0: none wait).
# TYPE tracesync_oldest_unsent_seconds gauge
tracesync_oldest_unsent_seconds 0
`), "tracesync_segments_uploaded_total", "tracesync_bytes_behind", "tracesync_oldest_unsent_seconds"); err != nil {
		t.Fatal(err)
	}
}

// A .json array over the size limit uploads in parts, each a valid array
// of whole elements within the limit (the server makes a trace of each
// element); an object over it stays quarantined.
func TestLargeJSONArrayUploadsInParts(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFileSize = 300
	h := newHarness(t, cfg, stratixtest.Options{})
	var elems []string
	for i := range 30 {
		elems = append(elems, line(i))
	}
	data := "[\n  " + strings.Join(elems, ",\n  ") + "\n]\n"
	p := h.write("big.json", data)
	h.ready(p)
	h.waitFor("every element on the server", func() bool { return len(h.srv.TraceJSON()) >= len(elems) })
	h.idle()
	checkLines(t, h.srv, elems...)
	r := h.rec(p)
	if r.State != store.StateUploaded || r.Segments() < len(data)/300 {
		t.Errorf("big.json: %s in %d parts, want uploaded in at least %d", r.State, r.Segments(), len(data)/300)
	}
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != r.Segments() {
		t.Errorf("%d creates for %d parts", n, r.Segments())
	}
	creates := h.srv.Calls(stratixtest.EndpointCreate)
	h.ready(p)
	h.idle()
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != creates {
		t.Errorf("the same file again made %d creates, want none", n-creates)
	}
	obj := h.write("obj.json", `{"pad":"`+strings.Repeat("z", 400)+`"}`)
	h.ready(obj)
	q := h.waitState(obj, store.StateQuarantined)
	if !strings.Contains(q.LastError, "not a JSON array") {
		t.Errorf("an object over the limit: reason %q", q.LastError)
	}
}

// A file cut at the size limit whose next segment was not taken (a stop
// between two) is not passed over by the restart fast path, though its
// bytes did not change.
func TestKnownReadsAgainAFileWithMoreToSend(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("k.jsonl", lines(0, 2))
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.idle()
	st := statOf(t, p)
	if !h.eng.Known(p, st) {
		t.Fatal("a file all sent, unchanged: not known")
	}
	h.editRecord(p, func(rec *store.PathRecord) { rec.More = true })
	if h.eng.Known(p, st) {
		t.Fatal("a file with more to send, unchanged: known, so a restart would never send the rest")
	}
}

// checkSegments waits until path's data (its 40 test lines) is all up, and
// checks its segments: each line once on the server, each segment within
// limit and ending at a line's end.
func (h *harness) checkSegments(p, data string, limit int64) {
	h.t.Helper()
	h.waitFor("the whole file in segments", func() bool {
		r := h.rec(p)
		return r.State == store.StateUploaded && r.SegEnd() == int64(len(data))
	})
	h.idle()
	checkLines(h.t, h.srv, wantLines(0, 40)...)
	segs, err := h.db.Chain(p)
	if err != nil {
		h.t.Fatal(err)
	}
	if want := (int64(len(data)) + limit - 1) / limit; int64(len(segs)+1) < want {
		h.t.Errorf("%d segments for %d bytes at a %d-byte limit", len(segs)+1, len(data), limit)
	}
	start := int64(0)
	for _, s := range segs {
		if s.End-start > limit || data[s.End-1] != '\n' {
			h.t.Errorf("segment [%d, %d): over the limit or not at a line's end", start, s.End)
		}
		start = s.End
	}
}

// editRecord changes path's record in the store, as another version or a
// stop at a given moment would have left it.
func (h *harness) editRecord(p string, edit func(*store.PathRecord)) {
	h.t.Helper()
	err := h.db.Update(context.Background(), func(tx *store.Tx) error {
		rec, err := tx.GetPath(p)
		if err != nil {
			return err
		}
		edit(&rec)
		return tx.PutPath(rec)
	})
	if err != nil {
		h.t.Fatal(err)
	}
}
