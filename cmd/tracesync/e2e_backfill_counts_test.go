package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
)

// summaryCount reads one row of a backfill summary ("  uploaded   1,234").
func summaryCount(t *testing.T, out, row string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + row + ` +([0-9,]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("summary has no %q row:\n%s", row, out)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatalf("summary row %q: %v", row, err)
	}
	return n
}

// A backfill interrupted midway and run again counts each file once: the
// files the first run finished are "unchanged", the rest "uploaded", and
// none is both (the paths left pending were counted as unchanged by the
// restart's scan and again as uploaded when the engine finished them).
func TestE2EBackfillRerunCountsEachFileOnce(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	const files = 60
	for i := range files {
		writeFile(t, root, fmt.Sprintf("f%03d.json", i), traceJSON(fmt.Sprintf("rerun-%d", i)))
	}
	e.srv.SetLatency(stratixtest.EndpointCreate, 100*time.Millisecond)
	p := e.start("backfill", "--workers", "2", "--settle", "50ms", root)
	p.waitFor("some creates", time.Minute, func() bool { return e.srv.Calls(stratixtest.EndpointCreate) >= 5 })
	p.signal(syscall.SIGINT)
	first := p.finish()
	if first.code != 1 || !strings.Contains(first.stdout, "INTERRUPTED") {
		t.Fatalf("interrupted backfill: exit %d, want 1 and INTERRUPTED\nstdout:\n%s\nstderr:\n%s", first.code, first.stdout, tail(first.stderr, 4000))
	}
	done := summaryCount(t, first.stdout, "uploaded")
	if done == 0 || done == files {
		t.Fatalf("interrupted backfill uploaded %d of %d: not midway, the test proves nothing\n%s", done, files, first.stdout)
	}

	e.srv.SetLatency(stratixtest.EndpointCreate, 0)
	second := e.run("backfill", "--settle", "50ms", root)
	if second.code != 0 {
		t.Fatalf("re-run: exit %d\nstdout:\n%s\nstderr:\n%s", second.code, second.stdout, tail(second.stderr, 4000))
	}
	uploaded := summaryCount(t, second.stdout, "uploaded")
	unchanged := summaryCount(t, second.stdout, "unchanged")
	adopted := 0
	if strings.Contains(second.stdout, "  adopted") {
		adopted = summaryCount(t, second.stdout, "adopted")
	}
	if unchanged != done || uploaded+adopted+unchanged != files {
		t.Errorf("re-run after %d of %d: uploaded %d, adopted %d, unchanged %d; want unchanged %d and the three summing to %d\n%s",
			done, files, uploaded, adopted, unchanged, done, files, second.stdout)
	}
}
