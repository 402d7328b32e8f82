package uploader_test

// loglines_test.go: the lines a person reads say what happened to which
// path, once.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// infoLines returns the info lines whose message contains msg.
func infoLines(t *testing.T, logs *syncBuffer, msg string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range logs.lines(t) {
		if l.str("level") == "info" && strings.Contains(l.str("message"), msg) {
			out = append(out, l)
		}
	}
	return out
}

// A removed .jsonl of many traces logs one "remote traces deleted" line for
// its content, with the count, not one per trace.
func TestOneDeleteLinePerContent(t *testing.T) {
	logs := &syncBuffer{}
	cfg := deleteConfig()
	cfg.Log = zerolog.New(logs)
	h := newHarness(t, cfg, stratixtest.Options{})
	a := h.write("batch.jsonl", strings.Repeat("{\"x\":1}\n", 5))
	keep := h.write("keep.json", traceB) // the root keeps a file: the guard lets the removal through
	h.ready(a)
	h.ready(keep)
	h.waitState(a, store.StateUploaded)
	h.waitState(keep, store.StateUploaded)
	os.Remove(a)
	h.removed(a)
	h.waitFor("batch.jsonl's 5 traces to be deleted", func() bool { return h.eng.Progress().DeletesDone == 5 })
	findLog(t, logs, logWant{level: "info", msg: "remote traces deleted", fields: map[string]string{"hash": hexHash(strings.Repeat("{\"x\":1}\n", 5))}})
	lines := infoLines(t, logs, "remote trace")
	if len(lines) != 1 || lines[0]["traces"] != float64(5) {
		t.Fatalf("want one info line \"remote traces deleted\" with traces=5, got %d: %v", len(lines), lines)
	}
	removed := infoLines(t, logs, "removed: "+a)
	if len(removed) != 1 {
		t.Fatalf("want one \"removed: %s\" line, got %d in:\n%s", a, len(removed), logs.String())
	}
}

// A rename says renamed: old -> new at info, and its removal is not told
// again as a removal; a copy says which file it has the same bytes as, and
// its removal says the traces stay.
func TestRenameAndLinkSayWhichPath(t *testing.T) {
	logs := &syncBuffer{}
	cfg := fastConfig()
	cfg.Log = zerolog.New(logs)
	h := newHarness(t, cfg, stratixtest.Options{})
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitState(a, store.StateUploaded)

	b := filepath.Join(h.root, "b.json")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	h.ready(b)
	findLog(t, logs, logWant{level: "info", msg: "renamed: " + a + " -> " + b, fields: map[string]string{"from": a, "path": b}})
	h.removed(a)
	h.waitState(a, store.StateRemoved)

	c := h.write("c.json", traceA)
	h.ready(c)
	findLog(t, logs, logWant{level: "info", msg: "linked: same bytes as " + b, fields: map[string]string{"same_as": b, "path": c}})
	os.Remove(c)
	h.removed(c)
	h.waitState(c, store.StateRemoved)
	findLog(t, logs, logWant{level: "info", msg: "removed: " + c + " (another file holds the same bytes"})
	if n := len(infoLines(t, logs, "removed: "+a)); n != 0 {
		t.Fatalf("the renamed a.json was also logged as removed (%d lines):\n%s", n, logs.String())
	}
}

// A quarantine line names its path once and gives one piece of advice.
func TestQuarantineLineSaysPathAndAdviceOnce(t *testing.T) {
	logs := &syncBuffer{}
	cfg := fastConfig()
	cfg.Log = zerolog.New(logs)
	h := newHarness(t, cfg, stratixtest.Options{})
	bad := h.write("bad.json", `{"a": }`)
	h.ready(bad)
	h.waitState(bad, store.StateQuarantined)
	l := findLog(t, logs, logWant{level: "warn", msg: "quarantined"})
	msg := l.str("message")
	if n := strings.Count(msg, bad); n != 1 {
		t.Errorf("quarantine message names the path %d times, want 1: %q", n, msg)
	}
	if n := strings.Count(msg, "fix the file"); n != 1 {
		t.Errorf("quarantine message gives its advice %d times, want 1: %q", n, msg)
	}
	if !strings.Contains(msg, "invalid JSON") {
		t.Errorf("quarantine message lacks the reason: %q", msg)
	}
}
