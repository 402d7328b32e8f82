package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
)

// The fleet tests run several tracesync processes, each with its own state,
// against one project: hosts of a fleet, or a backfill beside a daemon.

// beside returns another process's world on e's server: its own state
// directory and home, the same API.
func (e *e2eEnv) beside() *e2eEnv {
	e.t.Helper()
	home := e.t.TempDir()
	o := &e2eEnv{t: e.t, bin: e.bin, srv: e.srv, state: filepath.Join(home, "state")}
	for _, kv := range e.env {
		switch {
		case len(kv) > 5 && kv[:5] == "HOME=":
			kv = "HOME=" + home
		case len(kv) > 20 && kv[:20] == "TRACESYNC_STATE_DIR=":
			kv = "TRACESYNC_STATE_DIR=" + o.state
		}
		o.env = append(o.env, kv)
	}
	return o
}

// checkRecordedOwnTraces checks that each path of files (path → one JSON
// object) is recorded by e with one trace, whose data on the server is
// that file's.
func checkRecordedOwnTraces(t *testing.T, e *e2eEnv, files map[string][]byte) {
	t.Helper()
	rows := e.files()
	onServer := e.srv.TraceJSON()
	for path, data := range files {
		row, ok := rows[path]
		if !ok || row.State != "uploaded" || len(row.TraceIDs) != 1 {
			t.Fatalf("%s: recorded %+v, want uploaded with one trace", path, row)
		}
		if got, want := onServer[row.TraceIDs[0]], stratixtest.CanonicalJSON(data); got != want {
			t.Fatalf("%s: recorded with trace %s, which holds %s on the server, not this file's %s", path, row.TraceIDs[0], got, want)
		}
	}
}

// Two backfills with separate states, 15 files named t.json each with
// different bytes, at the same time into one project: every content
// reaches the server once, and each path is recorded with its own traces.
func TestE2ETwoBackfillsSameBasenames(t *testing.T) {
	t.Parallel()
	a := newE2E(t, stratixtest.Options{})
	a.srv.SetLatency(stratixtest.EndpointPresign, 20*time.Millisecond)
	a.srv.SetLatency(stratixtest.EndpointCreate, 20*time.Millisecond)
	b := a.beside()
	files := map[*e2eEnv]map[string][]byte{a: {}, b: {}}
	roots := map[*e2eEnv]string{a: t.TempDir(), b: t.TempDir()}
	var hashes []string
	for hi, e := range []*e2eEnv{a, b} {
		for i := range 15 {
			data := []byte(fmt.Sprintf(`{"host":%d,"run":%d}`, hi, i))
			hashes = append(hashes, writeFile(t, roots[e], fmt.Sprintf("run%02d/t.json", i), data))
			files[e][filepath.Join(roots[e], fmt.Sprintf("run%02d/t.json", i))] = data
		}
	}
	pa := a.start("backfill", "--workers", "8", roots[a])
	pb := b.start("backfill", "--workers", "8", roots[b])
	for _, p := range []*proc{pa, pb} {
		if r := p.finish(); r.code != 0 || !regexp.MustCompile(`uploaded\s+15\b`).MatchString(r.stdout) {
			t.Fatalf("backfill: exit %d, want 0 with 15 uploaded\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
		}
	}
	per, total := createsOf(a.srv, hashes)
	for h, n := range per {
		if n != 1 {
			t.Fatalf("content %s created %d times, want once (all creates: %d)", h[:12], n, total)
		}
	}
	if total != 30 {
		t.Fatalf("%d creates in all, want 30", total)
	}
	checkRecordedOwnTraces(t, a, files[a])
	checkRecordedOwnTraces(t, b, files[b])
}

// A state directory deleted (a reinstall, a wiped volume): the next run
// asks the server for each content's name, adopts what is there, and
// uploads nothing.
func TestE2ELostStateUploadsNothing(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	files := map[string][]byte{}
	for i := range 6 {
		data := []byte(fmt.Sprintf(`{"kept":%d}`, i))
		writeFile(t, root, fmt.Sprintf("d%d/trace.json", i), data)
		files[filepath.Join(root, fmt.Sprintf("d%d/trace.json", i))] = data
	}
	if r := e.run("backfill", root); r.code != 0 {
		t.Fatalf("first backfill: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, before := createsOf(e.srv, nil)
	if err := os.RemoveAll(e.state); err != nil {
		t.Fatal(err)
	}
	p := e.start("run", "--settle", "100ms", root)
	p.waitFor("every file recorded again", time.Minute, func() bool {
		rows := e.files()
		for path := range files {
			if rows[path].State != "uploaded" {
				return false
			}
		}
		return true
	})
	if _, after := createsOf(e.srv, nil); after != before {
		t.Fatalf("after the state was lost: %d creates, want still %d", after, before)
	}
	if n := e.srv.Calls(stratixtest.EndpointPut); n != before {
		t.Fatalf("after the state was lost: %d PUTs in all, want still %d (nothing uploaded again)", n, before)
	}
	checkRecordedOwnTraces(t, e, files)
	p.signal(os.Interrupt)
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, tail(p.stderr.String(), 4000))
	}
	if !regexp.MustCompile(`already on the server: adopted`).MatchString(p.stderr.String()) {
		t.Fatalf("no line says the contents were adopted:\n%s", tail(p.stderr.String(), 4000))
	}
}

// A process killed while its create hangs, and another process with its
// own state that meanwhile uploads a file of the same basename from other
// bytes: on restart the first adopts nothing of the other's and uploads
// its own file.
func TestE2EKilledBeforeCreateBesideAnotherUploader(t *testing.T) {
	t.Parallel()
	a := newE2E(t, stratixtest.Options{})
	b := a.beside()
	rootA, rootB := t.TempDir(), t.TempDir()
	dataA, dataB := []byte(`{"from":"a"}`), []byte(`{"from":"b"}`)
	hA := writeFile(t, rootA, "t.json", dataA)
	hB := writeFile(t, rootB, "t.json", dataB)
	a.srv.HangNext(stratixtest.EndpointCreate, 1)
	pa := a.start("run", "--settle", "100ms", rootA)
	pa.waitFor("a's create to hang", time.Minute, func() bool { return a.srv.Calls(stratixtest.EndpointCreate) >= 1 })
	pa.signal(syscall.SIGKILL)
	pa.wait(time.Minute)
	if r := b.run("backfill", rootB); r.code != 0 {
		t.Fatalf("b's backfill: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := a.run("backfill", rootA); r.code != 0 {
		t.Fatalf("a's restart: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	per, total := createsOf(a.srv, []string{hA, hB})
	if per[hA] != 1 || per[hB] != 1 || total != 2 {
		t.Fatalf("creates %v (total %d), want each content once", per, total)
	}
	checkRecordedOwnTraces(t, a, map[string][]byte{filepath.Join(rootA, "t.json"): dataA})
	checkRecordedOwnTraces(t, b, map[string][]byte{filepath.Join(rootB, "t.json"): dataB})
	if rows := a.files(); slices.Equal(rows[filepath.Join(rootA, "t.json")].TraceIDs, b.files()[filepath.Join(rootB, "t.json")].TraceIDs) {
		t.Fatalf("both processes recorded the same traces")
	}
}

// An outage that answers (every call 503): the pool pauses as one and
// probes, instead of each of 200 files backing off on its own; when the
// API is back, everything is uploaded once.
func TestE2EServiceUnavailableStorm(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	var hashes []string
	for i := range 200 {
		hashes = append(hashes, writeFile(t, root, fmt.Sprintf("f%03d.json", i), []byte(fmt.Sprintf(`{"storm":%d}`, i))))
	}
	t.Logf("fake server fault seed %d", e.srv.Seed())
	for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointList} {
		e.srv.FailRate(ep, 1, http.StatusServiceUnavailable)
	}
	p := e.start("backfill", "--no-remote-check", "--workers", "8", "--probe-interval", "200ms", root)
	p.waitFor("the pool to pause", time.Minute, func() bool { return regexp.MustCompile(`uploads paused`).MatchString(p.stderr.String()) })
	time.Sleep(2 * time.Second) // an upper bound on calls over a span: a slower machine makes fewer
	if n := e.srv.Calls(stratixtest.EndpointPresign); n > 40 {
		t.Fatalf("%d presigns during a 503 storm, want about 10 before the pool pauses (each file backed off on its own)", n)
	}
	for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointList} {
		e.srv.FailRate(ep, 0, 0)
	}
	if r := p.finish(); r.code != 0 {
		t.Fatalf("backfill after the storm: exit %d\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	if !allCreatedOnce(e.srv, hashes) {
		per, total := createsOf(e.srv, hashes)
		t.Fatalf("after the storm: creates %v (total %d), want each of 200 once", per, total)
	}
}
