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

// TestGoldenStatusAndFiles checks status and files after the backfill of
// goldenFolder. Trace ids are the fake's, numbered in creation order, which
// varies: files shows the quarantined file only.
func TestGoldenStatusAndFiles(t *testing.T) {
	w := newCheckConfigWorld(t)
	goldenFolder(t, w.folder)
	if code, out, errOut := mainIn(t, t.Context(), w.env, "backfill", w.folder); code != 1 {
		t.Fatalf("backfill: exit %d, want 1 (a quarantined file)\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"status", []string{"status"}},
		{"files_quarantined", []string{"files", "--state", "quarantined"}},
	} {
		code, out, errOut := mainIn(t, t.Context(), w.env, c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", c.args, code, out, errOut)
		}
		got := normalize(out, filepath.Dir(w.folder), w.srv.URL())
		if c.golden == "files_quarantined" {
			// Its columns are as wide as the temporary path, which varies.
			got = regexp.MustCompile(` {2,}`).ReplaceAllString(got, "  ")
		}
		checkGolden(t, c.golden, got)
	}
}
