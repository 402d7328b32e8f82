package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/store"
)

// backfill refuses --delete-on-remove (it never deletes) and says what to
// use instead; from the environment (a sourced service env file) the
// setting is ignored with a warning.
func TestBackfillRefusesDeleteOnRemove(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "a.json", traceJSON("a"))
	for _, args := range [][]string{
		{"backfill", "--delete-on-remove", w.folder},
		{"backfill", "--dry-run", "--delete-on-remove", w.folder},
	} {
		code, _, errOut := mainIn(t, context.Background(), w.env, args...)
		if code != exitUsage || !strings.Contains(errOut, "tracesync run --delete-on-remove") || !strings.Contains(errOut, "tracesync reconcile") {
			t.Errorf("%v: exit %d, want 2 naming tracesync run --delete-on-remove and tracesync reconcile:\n%s", args, code, errOut)
		}
	}
	if n := len(w.srv.Traces()); n != 0 {
		t.Fatalf("a refused backfill uploaded %d traces", n)
	}
	env := withEnv(w.env, map[string]string{"TRACESYNC_DELETE_ON_REMOVE": "true", "TRACESYNC_LOG_FORMAT": "json"})
	code, out, errOut := mainIn(t, context.Background(), env, "backfill", "--settle", "50ms", w.folder)
	if code != 0 || !strings.Contains(errOut, "TRACESYNC_DELETE_ON_REMOVE is ignored by backfill") || !strings.Contains(out, "uploaded") {
		t.Errorf("backfill with TRACESYNC_DELETE_ON_REMOVE=true: exit %d, want 0 and a warning\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// A .json cut mid-value is "incomplete" in a dry run, as the real backfill
// reports it, not "quarantine".
func TestDryRunCallsACutFileIncompleteLikeBackfill(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "ok.json", traceJSON("ok"))
	writeFile(t, w.folder, "cut.json", []byte("[{\"trace_id\":\"ok-1\"},{\"trace_id\":\"cut-2\",\"ev"))
	writeFile(t, w.folder, "broken.json", []byte(`not json`))
	cut := filepath.Join(w.folder, "cut.json")

	code, out, errOut := mainIn(t, context.Background(), w.env, "backfill", "--dry-run", "--settle", "50ms", w.folder)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^incomplete +` + regexp.QuoteMeta(cut) + ` .*incomplete JSON`).MatchString(out) {
		t.Errorf("dry run does not list %s as incomplete:\n%s", cut, out)
	}
	if regexp.MustCompile(`(?m)^quarantine +` + regexp.QuoteMeta(cut)).MatchString(out) {
		t.Errorf("dry run lists %s as quarantine; a backfill reports it incomplete:\n%s", cut, out)
	}
	if !strings.Contains(out, "quarantine 1, leave 1 incomplete") {
		t.Errorf("dry run total: want 'quarantine 1, leave 1 incomplete' (broken.json, cut.jsonl):\n%s", out)
	}

	code, out, errOut = mainIn(t, context.Background(), w.env, "backfill", "--settle", "50ms", "--settle-timeout", "1s", w.folder)
	if code != 1 || !regexp.MustCompile(regexp.QuoteMeta(cut)+`: .*incomplete`).MatchString(out) {
		t.Fatalf("backfill: exit %d, want 1 with %s reported incomplete\nstdout:\n%s\nstderr:\n%s", code, cut, out, errOut)
	}
	// It is recorded as incomplete: files and status show it after the run.
	code, out, errOut = mainIn(t, context.Background(), w.env, "files", "--state", "incomplete")
	if code != 0 || !strings.Contains(out, cut) || strings.Contains(out, "ok.json") {
		t.Errorf("files --state incomplete: exit %d, want %s listed alone\nstdout:\n%s\nstderr:\n%s", code, cut, out, errOut)
	}
	code, out, _ = mainIn(t, context.Background(), w.env, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^\s+incomplete\s+1$`).MatchString(out) {
		t.Errorf("status: want 1 incomplete file\n%s", out)
	}
}

// compactWorld is a world of 300 trace files whose compaction floor is
// low enough for their state, and the path of that state's file.
func compactWorld(t *testing.T) (*checkConfigWorld, string) {
	t.Helper()
	old := minCompactSlack
	t.Cleanup(func() { minCompactSlack = old })
	minCompactSlack = 16 << 10
	w := newCheckConfigWorld(t)
	for i := range 300 {
		writeFile(t, w.folder, fmt.Sprintf("t%03d.json", i), traceJSON(fmt.Sprintf("t%03d", i)))
	}
	return w, filepath.Join(w.env["TRACESYNC_STATE_DIR"], store.FileName)
}

// A backfill packs the state file it grew (pages part full, free pages)
// and says so; a re-run that changed nothing finds nothing to pack, and
// --compact-state=false leaves the file as the run wrote it.
func TestBackfillCompactsTheState(t *testing.T) {
	w, state := compactWorld(t)

	noCompact := withEnv(w.env, map[string]string{"TRACESYNC_STATE_DIR": t.TempDir()})
	code, out, errOut := mainIn(t, context.Background(), noCompact, "backfill", "--compact-state=false", "--settle", "20ms", w.folder)
	if code != 0 || strings.Contains(out, "state compacted") {
		t.Fatalf("backfill --compact-state=false: exit %d, want 0 and no compaction\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	fresh, err := store.Allocated(filepath.Join(noCompact["TRACESYNC_STATE_DIR"], store.FileName))
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut = mainIn(t, context.Background(), w.env, "backfill", "--settle", "20ms", w.folder)
	if code != 0 || !strings.Contains(out, "state compacted in ") {
		t.Fatalf("backfill: exit %d, want 0 and the state compacted\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	packed, err := store.Allocated(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("300 files: state %d bytes on disk as written, %d compacted", fresh, packed)
	if packed*4 > fresh*3 {
		t.Errorf("compacted state takes %d bytes on disk, the uncompacted one %d: want at least a quarter less", packed, fresh)
	}
	code, out, errOut = mainIn(t, context.Background(), w.env, "backfill", "--settle", "20ms", w.folder)
	if code != 0 || strings.Contains(out, "state compacted") || !regexp.MustCompile(`unchanged +300 `).MatchString(out) {
		t.Errorf("re-run: exit %d, want 0, 300 unchanged and nothing to compact\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// run packs a state file with a quarter or more of slack before it opens
// it, says so in its log, and leaves a packed one alone; with
// --compact-state=false it never does.
func TestRunCompactsASlackStateAtStart(t *testing.T) {
	w, state := compactWorld(t)
	if code, out, errOut := mainIn(t, context.Background(), w.env, "backfill", "--compact-state=false", "--settle", "20ms", w.folder); code != 0 {
		t.Fatalf("backfill: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	fresh, err := store.Allocated(state)
	if err != nil {
		t.Fatal(err)
	}
	watching := func(stderr string) bool { return strings.Contains(stderr, "watching") }
	logged := runUntil(t, w.env, []string{"--compact-state=false", "--settle", "20ms", w.folder}, watching)
	if strings.Contains(logged, "state file compacted") {
		t.Fatalf("run --compact-state=false compacted the state:\n%s", logged)
	}
	logged = runUntil(t, w.env, []string{"--settle", "20ms", w.folder}, watching)
	packed, err := store.Allocated(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("300 files: state %d bytes on disk as the backfill left it, %d after run started", fresh, packed)
	if !strings.Contains(logged, "state file compacted") || packed*4 > fresh*3 {
		t.Fatalf("run: state %d -> %d bytes on disk, want a quarter less and a log line saying so:\n%s", fresh, packed, logged)
	}
	logged = runUntil(t, w.env, []string{"--settle", "20ms", w.folder}, watching)
	if strings.Contains(logged, "state file compacted") {
		t.Errorf("run compacted a packed state again:\n%s", logged)
	}
}
