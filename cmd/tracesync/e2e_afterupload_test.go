package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// fileGone reports whether path no longer exists.
func fileGone(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}

// serverTraceIDs returns the trace_id fields of the traces on the server.
func serverTraceIDs(srv *stratixtest.Server) map[string]bool {
	out := map[string]bool{}
	for _, tr := range srv.Traces() {
		if id, ok := tr.Data["trace_id"].(string); ok {
			out[id] = true
		}
	}
	return out
}

// setOld sets path's modification time d in the past.
func setOld(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// afterUploadFolder fills root with files that must stay (quarantined,
// incomplete, empty, too old for --max-age 720h) and files that must leave
// after upload, and returns the contents to be uploaded once each.
func afterUploadFolder(t *testing.T, root string) (stay, leave []string, hashes []string) {
	t.Helper()
	a := traceJSON("after-a")
	hashes = append(hashes, writeFile(t, root, "a.json", a))
	writeFile(t, root, "sub/copy of a.json", a) // linked: deleted too
	hashes = append(hashes, writeFile(t, root, "b.jsonl", traceJSONL("after-b", 3)))
	leave = []string{"a.json", "sub/copy of a.json", "b.jsonl"}
	writeFile(t, root, "broken.json", []byte(`{"trace_id": "tr-broken", "events": [}`))
	writeFile(t, root, "cut.jsonl", []byte("{\"trace_id\":\"after-cut-1\"}\n{\"trace_id\":\"cut-2\",\"ev"))
	writeFile(t, root, "empty.json", nil)
	writeFile(t, root, "old.json", traceJSON("after-old"))
	setOld(t, filepath.Join(root, "old.json"), 60*24*time.Hour)
	stay = []string{"broken.json", "cut.jsonl", "empty.json", "old.json"}
	return stay, leave, hashes
}

// TestE2EAfterUploadBackfill backfills with --after-upload delete and
// --max-age: the uploaded files and the linked copy go, the quarantined,
// incomplete, empty and too old ones stay; a second run changes nothing.
func TestE2EAfterUploadBackfill(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	stay, leave, hashes := afterUploadFolder(t, root)
	dry := e.run("backfill", "--dry-run", "--settle", "50ms", "--settle-timeout", "1s", "--max-age", "720h", root)
	if dry.code != 0 || !strings.Contains(dry.stdout, "skip 1 older than --max-age") ||
		!strings.Contains(dry.stdout, "too-old    "+filepath.Join(root, "old.json")) {
		t.Errorf("backfill --dry-run --max-age: exit %d, want 0, a too-old row for old.json and \"skip 1 older than --max-age\":\n%s", dry.code, dry.stdout)
	}
	for run := 1; run <= 2; run++ {
		r := e.run("backfill", "--settle", "50ms", "--settle-timeout", "1s", "--after-upload", "delete", "--max-age", "720h", root)
		if r.code != 1 {
			t.Fatalf("backfill %d: exit %d, want 1 (a quarantined and an incomplete file)\nstdout:\n%s\nstderr:\n%s", run, r.code, r.stdout, tail(r.stderr, 4000))
		}
		if run == 1 {
			for _, want := range []string{`(?m)^\s+deleted\s+3\s`, `(?m)^\s+too old\s+1\s`} {
				if !regexp.MustCompile(want).MatchString(r.stdout) {
					t.Errorf("backfill summary: want a line matching %q in\n%s", want, r.stdout)
				}
			}
			for _, name := range leave {
				if !strings.Contains(r.stderr, "deleted after upload: "+filepath.Join(root, name)) {
					t.Errorf("no log line \"deleted after upload: %s\"", name)
				}
			}
		}
		for _, name := range leave {
			if !fileGone(filepath.Join(root, name)) {
				t.Errorf("backfill %d: %s still there, want deleted after upload", run, name)
			}
		}
		for _, name := range stay {
			if fileGone(filepath.Join(root, name)) {
				t.Errorf("backfill %d: %s deleted, want kept", run, name)
			}
		}
	}
	per, _ := createsOf(e.srv, hashes)
	for h, n := range per {
		if n != 1 {
			t.Errorf("content %s: %d creates, want 1", h[:12], n)
		}
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Errorf("remote deletes %v, want none", d)
	}
	rows := e.files()
	old := rows[filepath.Join(root, "old.json")]
	if old.State != store.StateSkipped || !strings.HasPrefix(old.LastError, "older than --max-age 720h") {
		t.Errorf("old.json: state %s, last error %q; want skipped, \"older than --max-age 720h ...\"", old.State, old.LastError)
	}
	if row := rows[filepath.Join(root, "a.json")]; row.State != store.StateRemoved {
		t.Errorf("a.json: state %s, want removed", row.State)
	}
	if st := e.status(); st.Files[store.StateSkipped] != 2 {
		t.Errorf("status: %d skipped, want 2 (empty.json and old.json)", st.Files[store.StateSkipped])
	}
	r := e.run("files", "--state", "skipped")
	if !strings.Contains(r.stdout, "older than --max-age 720h") {
		t.Errorf("files --state skipped does not say why old.json was skipped:\n%s", r.stdout)
	}
	if n := serverTraceIDs(e.srv); n["tr-e2e-after-old"] {
		t.Errorf("old.json was uploaded despite --max-age")
	}
}

// TestE2EAfterUploadFinishesAfterKeep: files uploaded by a run that kept
// them are deleted by a later run with --after-upload delete, without an
// upload (the restart fast path does not skip them).
func TestE2EAfterUploadFinishesAfterKeep(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	h := writeFile(t, root, "a.json", traceJSON("keep-then-delete"))
	if r := e.run("backfill", "--settle", "50ms", root); r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s", r.code, tail(r.stderr, 4000))
	}
	if fileGone(filepath.Join(root, "a.json")) {
		t.Fatalf("a.json deleted without --after-upload")
	}
	if r := e.run("backfill", "--settle", "50ms", "--after-upload", "delete", root); r.code != 0 {
		t.Fatalf("backfill --after-upload delete: exit %d\n%s", r.code, tail(r.stderr, 4000))
	}
	if !fileGone(filepath.Join(root, "a.json")) {
		t.Fatalf("a.json recorded uploaded is still there after a run with --after-upload delete")
	}
	if per, total := createsOf(e.srv, []string{h}); per[h] != 1 || total != 1 {
		t.Fatalf("creates: %v (total %d), want 1", per, total)
	}
}

// TestE2EAfterUploadDaemonArchive: a daemon with --after-upload archive
// moves each file dropped into its folder under --archive-dir once its
// traces are recorded, and keeps the quarantined one.
func TestE2EAfterUploadDaemonArchive(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root, archive := t.TempDir(), filepath.Join(t.TempDir(), "archive")
	p := e.start("run", "--settle", "50ms", "--after-upload", "archive", "--archive-dir", archive, root)
	p.waitFor("the daemon to watch", time.Minute, func() bool { return strings.Contains(p.stderr.String(), "watching 1 folder") })
	data := traceJSON("archive-a")
	h := writeFile(t, root, "in/a.json", data)
	writeFile(t, root, "in/dup.json", data)
	writeFile(t, root, "broken.json", []byte(`{"trace_id": "tr-broken", "events": [}`))
	for _, name := range []string{"in/a.json", "in/dup.json"} {
		p.waitFor(name+" archived", time.Minute, func() bool {
			b, err := os.ReadFile(filepath.Join(archive, name))
			return err == nil && string(b) == string(data) && fileGone(filepath.Join(root, name))
		})
		// The line follows the rename.
		p.waitFor("the log line of "+name+"'s archiving", time.Minute, func() bool {
			return strings.Contains(p.stderr.String(), "archived after upload: "+filepath.Join(root, name)+" -> "+filepath.Join(archive, name))
		})
	}
	p.waitFor("broken.json quarantined", time.Minute, func() bool {
		return e.files()[filepath.Join(root, "broken.json")].State == store.StateQuarantined
	})
	p.terminate(time.Minute)
	if fileGone(filepath.Join(root, "broken.json")) {
		t.Errorf("broken.json (quarantined) was archived")
	}
	if per, _ := createsOf(e.srv, []string{h}); per[h] != 1 {
		t.Errorf("a.json's content: %d creates, want 1", per[h])
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Errorf("remote deletes %v after archiving, want none", d)
	}
}

// TestE2EAfterUploadDaemonDelete: a daemon with --after-upload delete and
// --max-age deletes what it uploaded and linked, and skips an old file.
func TestE2EAfterUploadDaemonDelete(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	stay, leave, hashes := afterUploadFolder(t, root)
	p := e.start("run", "--settle", "50ms", "--settle-timeout", "1s", "--after-upload", "delete", "--max-age", "720h", root)
	for _, name := range leave {
		p.waitFor(name+" deleted", time.Minute, func() bool { return fileGone(filepath.Join(root, name)) })
	}
	p.waitFor("cut.jsonl quarantined as incomplete", time.Minute, func() bool {
		return e.files()[filepath.Join(root, "cut.jsonl")].State == store.StateQuarantined
	})
	// Dropped while it runs, into a folder it emptied.
	late := writeFile(t, root, "late.json", traceJSON("after-late"))
	hashes = append(hashes, late)
	p.waitFor("late.json deleted", time.Minute, func() bool { return fileGone(filepath.Join(root, "late.json")) })
	if st := e.status(); st.Files[store.StateSkipped] != 2 {
		t.Errorf("status: %d skipped, want 2 (empty.json and old.json)", st.Files[store.StateSkipped])
	}
	p.terminate(time.Minute)
	for _, name := range stay {
		if fileGone(filepath.Join(root, name)) {
			t.Errorf("%s deleted, want kept", name)
		}
	}
	per, _ := createsOf(e.srv, hashes)
	for h, n := range per {
		if n != 1 {
			t.Errorf("content %s: %d creates, want 1", h[:12], n)
		}
	}
	if strings.Contains(p.stderr.String(), "held back") {
		t.Errorf("the daemon's own deletes were judged as removals:\n%s", tail(p.stderr.String(), 4000))
	}
}

// TestE2EAfterUploadConfigErrors: the combinations that cannot work exit 2
// with one line that says why.
func TestE2EAfterUploadConfigErrors(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--after-upload", "delete", "--delete-on-remove", root}, "--after-upload delete cannot be used with --delete-on-remove"},
		{[]string{"run", "--after-upload", "archive", root}, "--after-upload archive needs --archive-dir"},
		{[]string{"backfill", "--after-upload", "archive", "--archive-dir", filepath.Join(root, "archive"), root}, "inside the synced folder"},
		{[]string{"run", "--after-upload", "move", root}, "use keep (the default), delete or archive"},
		{[]string{"backfill", "--max-age", "-1h", root}, "--max-age -1h0m0s"},
	} {
		r := e.run(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("tracesync %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if n := e.srv.Calls(stratixtest.EndpointPresign); n != 0 {
		t.Errorf("a configuration error made %d presigns", n)
	}
}

// TestE2EAfterUploadSIGKILL kills a daemon (and backfills) with
// --after-upload delete at random moments while files are dropped and the
// API fails now and then: after every kill, each file gone from the folder
// has its traces on the server; in the end every content is created once
// and only the quarantined file is left.
func TestE2EAfterUploadSIGKILL(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{Seed: seedFromEnv(t, fakeSeedEnv)})
	root := t.TempDir()
	seed := seedFromEnv(t, killSeedEnv)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill moments drawn with seed %d, fake server fault seed %d (rerun: %s=%d %s=%d)",
		seed, e.srv.Seed(), killSeedEnv, seed, fakeSeedEnv, e.srv.Seed())
	rng := rand.New(rand.NewPCG(seed, 14))
	api := []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut, stratixtest.EndpointCreate}
	for _, ep := range api {
		e.srv.FailRate(ep, 0.15, http.StatusServiceUnavailable)
		e.srv.RateLimitRate(ep, 0.1, "0")
	}
	writeFile(t, root, "broken.json", []byte(`{"trace_id": "tr-broken", "events": [}`))
	traceOf := map[string]string{} // file name -> its trace_id
	var hashes []string
	drop := func(i int) {
		for j := range 3 {
			name := fmt.Sprintf("d%02d/f%d.json", i, j)
			seedName := fmt.Sprintf("kill-after-%d-%d", i, j)
			hashes = append(hashes, writeFile(t, root, name, traceJSON(seedName)))
			traceOf[name] = "tr-e2e-" + seedName
		}
		dup := fmt.Sprintf("d%02d/copy.json", i) // the bytes of an earlier file: linked
		prev := fmt.Sprintf("kill-after-%d-0", max(i-1, 0))
		writeFile(t, root, dup, traceJSON(prev))
		traceOf[dup] = "tr-e2e-" + prev
	}
	checkGone := func(when string) {
		t.Helper()
		ids := serverTraceIDs(e.srv)
		for name, id := range traceOf {
			if fileGone(filepath.Join(root, name)) && !ids[id] {
				t.Fatalf("%s: %s is deleted but its trace %s is not on the server", when, name, id)
			}
		}
	}
	const kills = 12
	putsAt, createsAt := -1, -1
	for i := range kills {
		if n := e.srv.Calls(stratixtest.EndpointPut); n > putsAt {
			e.srv.DropNext(stratixtest.EndpointPut, 1) // the connection dies mid-PUT
			putsAt = n
		}
		if n := e.srv.Calls(stratixtest.EndpointCreate); n > createsAt {
			e.srv.LoseCreateResponseNext(1) // create runs, its answer is lost: adopted later (rule 9)
			createsAt = n
		}
		cmd := "run"
		if i%3 == 2 {
			cmd = "backfill"
		}
		p := e.start(cmd, "--settle", "50ms", "--settle-timeout", "1s", "--workers", "4", "--after-upload", "delete", root)
		// Killed at a random moment after it started (the point of the
		// test), files dropped meanwhile: some are read, uploaded, recorded
		// or deleted when it dies, and the next start finishes them.
		p.waitFor("tracesync to start", time.Minute, func() bool { return strings.Contains(p.stderr.String(), "tracesync starting") })
		drop(i)
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
			t.Fatalf("kill %d: %v", i, err)
		}
		p.wait(time.Minute)
		checkGone(fmt.Sprintf("after kill %d", i+1))
		if testing.Verbose() {
			n := 0
			for name := range traceOf {
				if fileGone(filepath.Join(root, name)) {
					n++
				}
			}
			t.Logf("after kill %d: %d of %d files deleted", i+1, n, len(traceOf))
		}
	}
	for _, ep := range api {
		e.srv.FailRate(ep, 0, 0)
		e.srv.RateLimitRate(ep, 0, "")
	}
	r := e.run("backfill", "--settle", "50ms", "--settle-timeout", "1s", "--after-upload", "delete", root)
	if r.code != 1 {
		t.Fatalf("final backfill: exit %d, want 1 (broken.json quarantined)\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	checkGone("after the final backfill")
	for name := range traceOf {
		if !fileGone(filepath.Join(root, name)) {
			t.Errorf("%s is still there after the final backfill, want deleted", name)
		}
	}
	if fileGone(filepath.Join(root, "broken.json")) {
		t.Errorf("broken.json (quarantined) was deleted")
	}
	per, _ := createsOf(e.srv, hashes)
	for h, n := range per {
		if n != 1 {
			t.Errorf("content %s: created %d times after %d kills, want 1", h[:12], n, kills)
		}
	}
}
