package main

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/internal/tracefile"
)

func TestFileContent(t *testing.T) {
	for _, i := range []int{0, 1, 998, 999, 1000, 1999, 999_999} {
		b := fileContent(i)
		err := tracefile.Validate(bytes.NewReader(b), tracefile.FormatJSON)
		wantInvalid := i%invalidEvery == invalidEvery-1
		switch {
		case wantInvalid && err == nil:
			t.Errorf("fileContent(%d) = %s: valid, want one in %d invalid", i, b, invalidEvery)
		case wantInvalid && errors.Is(err, tracefile.ErrIncomplete):
			// An incomplete file is left to settle, not quarantined.
			t.Errorf("fileContent(%d) = %s: %v, want a syntax error, not an incomplete value", i, b, err)
		case !wantInvalid && err != nil:
			t.Errorf("fileContent(%d) = %s: %v, want valid", i, b, err)
		}
		if len(b) < 7 || len(b) > 20 {
			t.Errorf("fileContent(%d) = %s: %d bytes, want 7 to 20", i, b, len(b))
		}
	}
	if bytes.Equal(fileContent(1), fileContent(2)) {
		t.Errorf("fileContent(1) and (2) are the same bytes %s: each file must be its own content", fileContent(1))
	}
}

func TestScaleTree(t *testing.T) {
	work := t.TempDir()
	tree := newScaleTree(work, 2500, 7)
	reused, err := tree.ensure()
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	if reused {
		t.Fatalf("ensure of an empty work dir: reused, want generated")
	}
	perDir, total, invalid := map[string]int{}, 0, 0
	err = filepath.WalkDir(tree.root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		perDir[filepath.Base(filepath.Dir(path))]++
		total++
		if tracefile.Validate(bytes.NewReader(b), tracefile.FormatJSON) != nil {
			invalid++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if total != 2500 || invalid != 2 || len(perDir) != 7 {
		t.Fatalf("tree: %d files, %d invalid, %d folders; want 2500, 2, 7", total, invalid, len(perDir))
	}
	for dir, n := range perDir {
		if n != tree.perDir() && dir != tree.dirName(6) {
			t.Errorf("folder %s holds %d files, want %d (only the last may hold fewer)", dir, n, tree.perDir())
		}
	}

	// Unchanged: reused. Cut short (no marker): generated again.
	if reused, err := tree.ensure(); err != nil || !reused {
		t.Fatalf("second ensure: reused %v, err %v; want reused", reused, err)
	}
	stray := filepath.Join(tree.root, tree.dirName(0), "stray.json")
	if err := os.WriteFile(stray, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tree.marker()); err != nil {
		t.Fatal(err)
	}
	if reused, err := tree.ensure(); err != nil || reused {
		t.Fatalf("ensure without the marker: reused %v, err %v; want generated", reused, err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ensure without the marker kept %s (stat: %v): a cut-short tree must be generated from scratch", stray, err)
	}

	// Another shape is another tree.
	if reused, err := newScaleTree(work, 2500, 5).ensure(); err != nil || reused {
		t.Fatalf("ensure of 2500 files over 5 folders beside 7: reused %v, err %v; want generated", reused, err)
	}

	if err := tree.remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	for _, p := range []string{tree.root, tree.marker()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after remove, %s: stat %v, want not there", p, err)
		}
	}
}

func TestScaleTreeShape(t *testing.T) {
	for _, c := range []struct{ files, dirs int }{{0, 1}, {10, 0}, {10, 11}} {
		if _, err := newScaleTree(t.TempDir(), c.files, c.dirs).ensure(); err == nil {
			t.Errorf("ensure of %d files over %d folders: no error", c.files, c.dirs)
		}
	}
	tree := newScaleTree("/w", 1_000_000, 2000)
	if got := tree.fileName(42) + " " + tree.dirName(7); got != "f000042.json d0007" {
		t.Errorf("names: %q, want %q (zero-padded, so they sort)", got, "f000042.json d0007")
	}
	if tree.perDir() != 500 || tree.invalid() != 1000 {
		t.Errorf("1,000,000 over 2,000: %d a folder, %d invalid; want 500, 1000", tree.perDir(), tree.invalid())
	}
}

func TestParseMemStatus(t *testing.T) {
	status := "Name:\ttracesync\nVmPeak:\t 1300000 kB\nVmHWM:\t   55512 kB\nVmRSS:\t   41000 kB\nRssAnon:\t   30120 kB\nRssFile:\t   10880 kB\nRssShmem:\t       0 kB\nThreads:\t8\n"
	m, ok := parseMemStatus(status)
	if want := (memStatus{rssAnon: 30120, rssFile: 10880, vmHWM: 55512}); !ok || m != want {
		t.Errorf("parseMemStatus = %+v, %v; want %+v, true", m, ok, want)
	}
	if _, ok := parseMemStatus("Name:\ttracesync\nState:\tZ (zombie)\n"); ok {
		t.Errorf("parseMemStatus of a zombie's status: ok, want not ok")
	}
}

func TestParseCtxSwitches(t *testing.T) {
	s := "Name:\ttracesync\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
	if got := parseCtxSwitches(s); got != 127 {
		t.Errorf("parseCtxSwitches = %d, want 127", got)
	}
}

func TestParseCounts(t *testing.T) {
	summary := `backfill done in 9m12s: 1,000,000 files read, 11.9 MB
  uploaded      999,000  (11.9 MB sent)
  linked              0  (same bytes as an uploaded file: no upload)
  unchanged           0  (recorded by an earlier run with these bytes: not read again)
  quarantined     1,000  (this run: invalid 1,000)
      /tmp/x/d0001/f000999.json: invalid JSON at line 1, column 9 (byte offset 8): invalid character '}'
  rate         1,810 files/s, 21.5 kB/s
`
	got := parseCounts(summary)
	want := map[string]int{"uploaded": 999_000, "linked": 0, "unchanged": 0, "quarantined": 1000, "rate": 1810}
	if !maps.Equal(got, want) {
		t.Errorf("parseCounts = %v, want %v", got, want)
	}
	tree := newScaleTree("/w", 1_000_000, 2000)
	if msg := checkFirstCounts(tree, got); msg != "" {
		t.Errorf("checkFirstCounts of a right summary: %q, want none", msg)
	}
	got["uploaded"] = 0
	if msg := checkFirstCounts(tree, got); !strings.Contains(msg, "0 uploaded, want 999000") {
		t.Errorf("checkFirstCounts with 0 uploaded: %q", msg)
	}
}

func TestTableRows(t *testing.T) {
	out := "STATE        ATTEMPTS  HASH          TRACES  PATH  LAST ERROR\nquarantined  0  7d43c34a1ff1  -  /a.json  invalid JSON\nquarantined  0  8d43c34a1ff1  -  /b.json  invalid JSON\n"
	if got := tableRows(out); got != 2 {
		t.Errorf("tableRows = %d, want 2", got)
	}
	if got := tableRows("STATE  ATTEMPTS  HASH  TRACES  PATH  LAST ERROR\n"); got != 0 {
		t.Errorf("tableRows of a header alone = %d, want 0", got)
	}
}

func TestFirstScanMessage(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{`{"level":"info","files":22,"unchanged":21,"other_shards":0,"time":"2026-12-06T21:09:13Z","message":"watching 1 folder, 22 files (21 unchanged since the last run)"}`, true},
		{`{"level":"info","addr":"127.0.0.1:39907","message":"serving /metrics, /healthz and /readyz"}`, false},
		{`{"level":"info","files":3,"message":"watching for changes"}`, false},
		{`panic: runtime error`, false},
	} {
		if _, got := firstScanMessage([]byte(c.line)); got != c.want {
			t.Errorf("firstScanMessage(%s) = %v, want %v", c.line, got, c.want)
		}
	}
}

func TestLineTap(t *testing.T) {
	var lines []string
	var all bytes.Buffer
	tap := &lineTap{next: &all, match: func(b []byte) { lines = append(lines, string(b)) }}
	for _, p := range []string{"one\ntw", "o\n", "thr", "ee\nfour"} {
		if _, err := tap.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(lines, "|"); got != "one|two|three" {
		t.Errorf("lines = %q, want one|two|three (four has no newline yet)", got)
	}
	if all.String() != "one\ntwo\nthree\nfour" {
		t.Errorf("passed on %q, want everything written", all.String())
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1_000_000: "1,000,000", -12345: "-12,345"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
