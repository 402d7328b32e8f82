package main

// golden_test.go: the words people read (the backfill summary, status)
// against testdata/*.golden, so a change of wording shows in review.
// go test ./cmd/tracesync -run Golden -update rewrites the files.

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// normalize replaces what changes from run to run (the temporary folder,
// the fake API's port, durations, rates, times of day) by placeholders.
func normalize(s, dir, baseURL string) string {
	s = strings.ReplaceAll(s, baseURL, "<api>")
	s = strings.ReplaceAll(s, dir, "<tmp>")
	for _, r := range []struct{ re, repl string }{
		{`in \d+(\.\d+)?(ns|µs|ms|s|m)\b`, "in <elapsed>"},
		{`\d+ files/s, [0-9.]+ [KMG]?i?B/s`, "<n> files/s, <n> B/s"},
		{`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`, "<time>"},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.repl)
	}
	return s
}

// checkGolden compares got with testdata/name.golden, or writes it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (if the change is meant, rerun with -update):\n--- got\n%s\n--- want\n%s", name, file, got, want)
	}
}

// goldenFolder fills folder with one of each outcome a backfill reports.
func goldenFolder(t *testing.T, folder string) {
	writeFile(t, folder, "a.json", traceJSON("a"))
	writeFile(t, folder, "copy-of-a.json", traceJSON("a"))
	writeFile(t, folder, "batch.jsonl", traceJSONL("batch", 3))
	writeFile(t, folder, "empty.json", nil)
	writeFile(t, folder, "bad.json", []byte(`{"name": }`))
}

func TestGoldenBackfillSummary(t *testing.T) {
	w := newCheckConfigWorld(t)
	goldenFolder(t, w.folder)
	code, out, errOut := mainIn(t, t.Context(), w.env, "backfill", w.folder)
	if code != 1 { // bad.json failed for good
		t.Fatalf("backfill: exit %d, want 1 (a quarantined file)\n%s%s", code, out, errOut)
	}
	checkGolden(t, "backfill_summary", normalize(out, filepath.Dir(w.folder), w.srv.URL()))
}

func TestGoldenStatus(t *testing.T) {
	w := newCheckConfigWorld(t)
	goldenFolder(t, w.folder)
	if code, out, errOut := mainIn(t, t.Context(), w.env, "backfill", w.folder); code != 1 {
		t.Fatalf("backfill: exit %d, want 1 (a quarantined file)\n%s%s", code, out, errOut)
	}
	code, out, errOut := mainIn(t, t.Context(), w.env, "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	checkGolden(t, "status", normalize(out, filepath.Dir(w.folder), w.srv.URL()))
}
