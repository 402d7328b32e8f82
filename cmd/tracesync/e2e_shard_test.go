package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// Two backfills with separate states share one folder with --shard 0/2 and
// 1/2, at the same time, without the check by name that would hide a file
// taken twice: every file is uploaded exactly once in total, each state
// records only its own share, and neither shows the other's as pending.
func TestE2EShardSplitsOneFolder(t *testing.T) {
	t.Parallel()
	a := newE2E(t, stratixtest.Options{})
	a.srv.SetLatency(stratixtest.EndpointCreate, 10*time.Millisecond)
	b := a.beside()
	root := t.TempDir()
	const files = 40
	var hashes []string
	for i := range files {
		hashes = append(hashes, writeFile(t, root, fmt.Sprintf("d%d/f%03d.json", i%3, i), traceJSON(fmt.Sprintf("shard-%d", i))))
	}
	pa := a.start("backfill", "--no-remote-check", "--shard", "0/2", root)
	pb := b.start("backfill", "--no-remote-check", "--shard", "1/2", root)
	for i, p := range []*proc{pa, pb} {
		if r := p.finish(); r.code != 0 {
			t.Fatalf("backfill --shard %d/2: exit %d\n%s\n%s", i, r.code, r.stdout, tail(r.stderr, 4000))
		}
	}
	per, total := createsOf(a.srv, hashes)
	for h, n := range per {
		if n != 1 {
			t.Fatalf("content %s created %d times by the two shares, want once (all creates: %d)", h[:12], n, total)
		}
	}
	if total != files {
		t.Fatalf("%d creates in all, want %d", total, files)
	}
	rowsA, rowsB := a.files(), b.files()
	if len(rowsA) == 0 || len(rowsB) == 0 || len(rowsA)+len(rowsB) != files {
		t.Fatalf("share 0 recorded %d files, share 1 %d: want both some, %d in all", len(rowsA), len(rowsB), files)
	}
	for path, row := range rowsA {
		if _, both := rowsB[path]; both {
			t.Fatalf("%s recorded by both shares", path)
		}
		if row.State != store.StateUploaded {
			t.Fatalf("share 0: %s is %s, want uploaded", path, row.State)
		}
	}
	for _, e := range []*e2eEnv{a, b} {
		if st := e.status(); st.Files[store.StatePending] != 0 || st.Files[store.StateRetrying] != 0 {
			t.Fatalf("status after a sharded backfill: %v, want nothing pending or retrying", st.Files)
		}
	}
	// A re-run of a share reads none of the other share's files.
	before := a.srv.Calls(stratixtest.EndpointPresign)
	if r := a.run("backfill", "--shard", "0/2", root); r.code != 0 || a.srv.Calls(stratixtest.EndpointPresign) != before {
		t.Fatalf("re-run of share 0: exit %d, %d presigns more, want 0 and none\n%s", r.code, a.srv.Calls(stratixtest.EndpointPresign)-before, r.stdout)
	}
}

// A running daemon's status shows its upload pool: adaptive by default,
// with its ceiling.
func TestE2EStatusShowsConcurrency(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	path := filepath.Join(root, "a.json")
	writeFile(t, root, "a.json", traceJSON("conc"))
	p := e.start("run", "--settle", "50ms", "--max-workers", "64", root)
	defer p.terminate(30 * time.Second)
	p.waitFor("a.json uploaded", time.Minute, func() bool { return e.files()[path].State == store.StateUploaded })
	st := e.status()
	if c := st.Concurrency; c == nil || c.Mode != "auto" || c.Max != 64 || c.Limit < 1 || c.Limit > 64 {
		t.Fatalf("status --json concurrency = %+v, want mode auto, max 64, a limit from 1 to 64", c)
	}
	if r := e.run("status"); !strings.Contains(r.stdout, "adaptive up to 64") {
		t.Fatalf("status does not show the adaptive pool:\n%s", r.stdout)
	}
}
