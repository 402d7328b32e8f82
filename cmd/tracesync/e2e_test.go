package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

// fileRow is one row of `tracesync files --json`.
type fileRow = control.File

// files returns the store's view of every tracked path, through the
// user-facing command (the control socket while a daemon runs).
func (e *e2eEnv) files() map[string]fileRow {
	e.t.Helper()
	r := e.run("files", "--json")
	if r.code != 0 {
		e.t.Fatalf("tracesync files --json: exit %d\n%s", r.code, r.stderr)
	}
	var rows []fileRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("tracesync files --json: %v\n%s", err, r.stdout)
	}
	out := make(map[string]fileRow, len(rows))
	for _, row := range rows {
		out[row.Path] = row
	}
	return out
}

// status returns `tracesync status --json`.
func (e *e2eEnv) status() control.Status {
	e.t.Helper()
	r := e.run("status", "--json")
	if r.code != 0 {
		e.t.Fatalf("tracesync status --json: exit %d\n%s", r.code, r.stderr)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		e.t.Fatalf("tracesync status --json: %v\n%s", err, r.stdout)
	}
	return st
}

// TestE2EBackfillMessyFolder backfills a folder with everything that goes
// wrong in real archives, then runs again.
func TestE2EBackfillMessyFolder(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()

	valid := map[string]string{} // relative path -> hash, for files that must be uploaded or linked
	put := func(name string, data []byte) string {
		h := writeFile(t, root, name, data)
		return h
	}
	dup := traceJSON("dup")
	for _, name := range []string{"dup.json", "copy of dup.json", "sub/dup (2).json", "sub/deeper/ünïcode café.json"} {
		valid[name] = put(name, dup)
	}
	valid["a/trace.json"] = put("a/trace.json", traceJSON("a"))
	valid["b/trace.json"] = put("b/trace.json", traceJSON("b"))
	valid["résumé trace.jsonl"] = put("résumé trace.jsonl", traceJSONL("resume", 3))
	valid["日本語 トレース.json"] = put("日本語 トレース.json", traceJSON("ja"))
	valid["with space/batch.jsonl"] = put("with space/batch.jsonl", traceJSONL("batch", 5))

	put("broken.json", []byte(`{"trace_id": "tr-broken", "events": [}`))
	put("cut.jsonl", []byte("{\"trace_id\":\"ok-1\"}\n{\"trace_id\":\"cut-2\",\"ev"))                               // cut at the end
	put("midcut.jsonl", []byte("{\"trace_id\":\"ok-1\"}\n{\"trace_id\":\"cut-2\",\"ev\n{\"trace_id\":\"ok-3\"}\n")) // a record cut, then more appended
	put("empty.json", nil)
	big := bytes.Repeat([]byte(`{"trace_id":"tr-big","payload":"`+strings.Repeat("x", 1000)+`"}`+"\n"), 51<<10) // 51 MiB of valid JSONL
	put("huge.json", big)                                                                                       // a .json over the limit (a .jsonl would go up in segments)
	temps := map[string][]byte{
		".hidden.json":       traceJSON("hidden"),
		"w.json.tmp":         traceJSON("tmp"),
		"w.jsonl.part":       traceJSONL("part", 1),
		"w.json~":            traceJSON("tilde"),
		".w.json.swp":        traceJSON("swp"),
		"notes.txt":          []byte("not a trace\n"),
		"sub/.x.jsonl":       traceJSONL("dot", 1),
		"sub/y.json.gz.part": []byte("\x1f\x8b"),
	}
	put("sub/y.json.gz", []byte("\x1f\x8b")) // an archive cut after its magic number
	for name, data := range temps {
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// --dry-run lists what would be uploaded and touches nothing remote.
	dry := e.run("backfill", "--dry-run", "--settle", "100ms", "--settle-timeout", "1s", root)
	if dry.code != 0 {
		t.Fatalf("backfill --dry-run: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", dry.code, dry.stdout, dry.stderr)
	}
	if n := e.srv.Calls(stratixtest.EndpointPresign) + e.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("backfill --dry-run made %d presign/create calls, want 0", n)
	}
	if !strings.Contains(dry.stdout, "would upload 7 files") || !strings.Contains(dry.stdout, "link 3") {
		t.Errorf("backfill --dry-run: want 'would upload 7 files' (one per distinct valid content, and cut.jsonl's complete line) and 'link 3' (the duplicates), got:\n%s", dry.stdout)
	}

	r := e.run("backfill", "--settle", "100ms", "--settle-timeout", "1s", root)
	if r.code != 1 {
		t.Fatalf("backfill of a folder with bad files: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	// The dry run decides with the engine's own rules: its plan and the
	// real run agree, count by count.
	planned := regexp.MustCompile(`would upload (\d+) files \(.*?\), link (\d+), skip (\d+) empty, quarantine (\d+), leave (\d+) incomplete`).FindStringSubmatch(dry.stdout)
	if planned == nil {
		t.Fatalf("no totals line in the dry run:\n%s", dry.stdout)
	}
	for i, label := range []string{"uploaded", "linked", "skipped", "quarantined", "incomplete"} {
		got := "0"
		if m := regexp.MustCompile(`(?m)^  ` + label + `\s+(\d+)`).FindStringSubmatch(r.stdout); m != nil {
			got = m[1]
		}
		if got != planned[i+1] {
			t.Errorf("%s: the dry run planned %s, the backfill did %s\ndry run:\n%s\nbackfill:\n%s", label, planned[i+1], got, dry.stdout, r.stdout)
		}
	}
	distinct := map[string]bool{}
	for _, h := range valid {
		distinct[h] = true
	}
	creates := e.srv.CreatesByHash()
	for name, h := range valid {
		if creates[h] != 1 {
			t.Errorf("content of %s: created %d times, want 1", name, creates[h])
		}
	}
	total := 0
	for _, n := range creates {
		total += n
	}
	cutLine := hashOf([]byte("{\"trace_id\":\"ok-1\"}\n"))
	if creates[cutLine] != 1 {
		t.Errorf("cut.jsonl's complete first line: created %d times, want 1", creates[cutLine])
	}
	if total != len(distinct)+1 {
		t.Errorf("creates: got %d, want %d (one per distinct valid content, cut.jsonl's complete line; nothing for temp, bad or huge files)", total, len(distinct)+1)
	}
	if got := e.srv.MaxInflightPerBasename(); got > 1 {
		t.Errorf("two uploads of one basename were between presign and create at once (%d): rule 8", got)
	}

	rows := e.files()
	want := map[string]struct {
		state  string
		reason string // part of the last error
	}{
		"broken.json":   {"quarantined", "invalid JSON"},
		"midcut.jsonl":  {"quarantined", "line 2"},
		"huge.json":     {"quarantined", "larger than"},
		"empty.json":    {"skipped", ""},
		"sub/y.json.gz": {"quarantined", "truncated"},
	}
	for name := range valid {
		want[name] = struct{ state, reason string }{"uploaded", ""}
	}
	for name, w := range want {
		row, ok := rows[filepath.Join(root, name)]
		if !ok {
			t.Errorf("%s: not tracked, want %s", name, w.state)
			continue
		}
		if string(row.State) != w.state || !strings.Contains(strings.ToLower(row.LastError), strings.ToLower(w.reason)) {
			t.Errorf("%s: state %s (%q), want %s with a reason containing %q", name, row.State, row.LastError, w.state, w.reason)
		}
	}
	for name := range temps {
		if _, ok := rows[filepath.Join(root, name)]; ok {
			t.Errorf("%s: tracked, want ignored (temporary or not a trace name)", name)
		}
	}
	// A .jsonl cut at the end: its complete line goes up, and the backfill
	// does not pass over the cut one in silence (named as not finished).
	if row := rows[filepath.Join(root, "cut.jsonl")]; row.State != "uploaded" || row.Sent != int64(len("{\"trace_id\":\"ok-1\"}\n")) {
		t.Errorf("cut.jsonl: state %s, sent %d bytes; want uploaded up to its complete line", row.State, row.Sent)
	}
	for _, re := range []string{`uploaded\s+7\b`, `linked\s+3\b`, `broken\.json: .*invalid JSON`, `huge\.json[: ].*larger than`, `midcut\.jsonl: .*line 2`, `cut\.jsonl: .*incomplete`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("summary does not match %q:\n%s", re, r.stdout)
		}
	}

	// Re-running creates nothing, and still reports the quarantined files.
	r2 := e.run("backfill", "--settle", "100ms", "--settle-timeout", "1s", root)
	if r2.code != 1 {
		t.Errorf("re-run: exit %d, want 1 (files still quarantined)\n%s", r2.code, r2.stdout)
	}
	if _, total2 := createsOf(e.srv, nil); total2 != total {
		t.Errorf("re-run: %d creates in all, want still %d", total2, total)
	}
}

// TestE2ERunDropFolder runs the daemon on a drop folder: atomic renames, a
// slow writer, renames and moves, removal with --delete-on-remove, SIGTERM.
func TestE2ERunDropFolder(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	p := e.start("run", "--settle", "100ms", "--settle-timeout", "1s", "--delete-on-remove", "--rescan-interval", "0", root)
	const limit = 60 * time.Second

	// A writer that stopped mid-line: quarantined as incomplete after --settle-timeout.
	if err := os.WriteFile(filepath.Join(root, "partial.jsonl"), []byte("{\"trace_id\":\"p-1\"}\n{\"trace_id\":\"p-2\",\"ev"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitFor("partial.jsonl quarantined", limit, func() bool {
		row := e.files()[filepath.Join(root, "partial.jsonl")]
		return row.State == "quarantined" && strings.Contains(row.LastError, "incomplete")
	})

	// A producer that writes a temp name and renames it into place.
	hA := writeFile(t, root, "a.json", traceJSON("a"))
	hB := writeFile(t, root, "in/b.jsonl", traceJSONL("b", 2))
	p.waitFor("a.json and b.jsonl created", limit, func() bool { return allCreatedOnce(e.srv, []string{hA, hB}) })

	// A slow writer: a .json written in pieces, with pauses longer than the
	// settle time; only the whole file may be uploaded.
	slow := filepath.Join(root, "slow.json")
	f, err := os.Create(slow)
	if err != nil {
		t.Fatal(err)
	}
	pieces := []string{`{"trace_id":"tr-slow",`, `"events":[{"type":"agent.input","dt":0},`, `{"type":"agent.output","dt":5}]`, "}\n"}
	var whole []byte
	for i, piece := range pieces {
		if _, err := f.WriteString(piece); err != nil {
			t.Fatal(err)
		}
		whole = append(whole, piece...)
		if i < len(pieces)-1 {
			time.Sleep(300 * time.Millisecond) // the writer is slow: this is the scenario, not a wait for tracesync
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	hSlow := hashOf(whole)
	p.waitFor("slow.json created", limit, func() bool { return allCreatedOnce(e.srv, []string{hSlow}) })
	if _, total := createsOf(e.srv, nil); total != 4 {
		t.Fatalf("after the slow writer: %d creates, want 4 (partial.jsonl's complete line, a.json, b.jsonl, slow.json: was a partial slow.json uploaded?) %v", total, e.srv.CreatesByHash())
	}

	// A rename and a move into another folder: nothing uploaded, nothing deleted.
	if err := os.Rename(filepath.Join(root, "a.json"), filepath.Join(root, "a-renamed.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "archive"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "in", "b.jsonl"), filepath.Join(root, "archive", "b.jsonl")); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the renamed paths tracked and the old ones removed", limit, func() bool {
		rows := e.files()
		return rows[filepath.Join(root, "a-renamed.json")].State == "uploaded" &&
			rows[filepath.Join(root, "archive", "b.jsonl")].State == "uploaded" &&
			gone(rows, filepath.Join(root, "a.json")) && gone(rows, filepath.Join(root, "in", "b.jsonl"))
	})
	if _, total := createsOf(e.srv, nil); total != 4 {
		t.Errorf("after renames and moves: %d creates, want still 4", total)
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Errorf("after renames and moves: traces %v deleted, want none (rule 5)", d)
	}

	// Removal with --delete-on-remove: the content's traces are deleted.
	before := tracesOf(e.srv, remoteName("b.jsonl", hB))
	if len(before) != 2 {
		t.Fatalf("b.jsonl: %d traces on the server, want 2", len(before))
	}
	if err := os.Remove(filepath.Join(root, "archive", "b.jsonl")); err != nil {
		t.Fatal(err)
	}
	p.waitFor("b.jsonl's traces deleted", limit, func() bool { return len(tracesOf(e.srv, remoteName("b.jsonl", hB))) == 0 })
	if d := e.srv.Deleted(); len(d) != 2 || !slices.Contains(d, before[0]) || !slices.Contains(d, before[1]) {
		t.Errorf("deleted %v, want exactly b.jsonl's traces %v", d, before)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(limit); code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}
}

// gone reports whether path is untracked or recorded as removed.
func gone(rows map[string]fileRow, path string) bool {
	row, ok := rows[path]
	return !ok || row.State == "removed"
}

// remoteName is the unique name a file of this basename and content (hex
// SHA-256) is uploaded under.
func remoteName(base, hexHash string) string {
	var h store.Hash
	if _, err := hex.Decode(h[:], []byte(hexHash)); err != nil {
		panic(err)
	}
	return uploader.UploadName(base, h, uploader.RemoteNameUnique)
}

// tracesOf returns the ids of the live traces created from filename.
func tracesOf(srv *stratixtest.Server, filename string) []string {
	var ids []string
	for _, tr := range srv.Traces() {
		if tr.Filename != nil && *tr.Filename == filename {
			ids = append(ids, tr.ID)
		}
	}
	return ids
}

// TestE2ERunVanishedRoot removes a watched folder under a daemon with
// --delete-on-remove: nothing is deleted remotely; reconcile shows what
// was held back and acts only with --confirm.
func TestE2ERunVanishedRoot(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	parent := t.TempDir()
	root := filepath.Join(parent, "drop")
	var hashes []string
	for i := range 3 {
		hashes = append(hashes, writeFile(t, root, fmt.Sprintf("t%d.json", i), traceJSON(fmt.Sprint("vanish", i))))
	}
	p := e.start("run", "--settle", "100ms", "--delete-on-remove", "--rescan-interval", "0", root)
	const limit = 60 * time.Second
	p.waitFor("3 files created", limit, func() bool { return allCreatedOnce(e.srv, hashes) })

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	// The engine's own line, not any line naming the root: the root's
	// path (this test's name) would match a looser pattern at startup.
	p.waitFor("the engine to report the root gone", limit, func() bool {
		return strings.Contains(p.stderr.String(), "watched root is gone")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(limit); code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0", code)
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Fatalf("a vanished root deleted traces %v, want none (rule 6)", d)
	}
	if n := len(e.srv.Traces()); n != 3 {
		t.Fatalf("%d traces left, want 3", n)
	}

	r := e.run("reconcile", "--delete-on-remove", root)
	if r.code != 0 || !strings.Contains(r.stdout, "3 gone from disk") || !strings.Contains(r.stdout, "--confirm") {
		t.Fatalf("reconcile without --confirm: exit %d, want 0 and the 3 gone files with how to confirm\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Fatalf("reconcile without --confirm deleted %v, want nothing", d)
	}
	r = e.run("reconcile", "--confirm", "--delete-on-remove", root)
	if r.code != 0 {
		t.Fatalf("reconcile --confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := e.srv.Deleted(); len(d) != 3 {
		t.Fatalf("reconcile --confirm --delete-on-remove: %d traces deleted, want 3\n%s", len(d), r.stdout)
	}
}

// TestE2ESIGTERMDrainsInFlight sends SIGTERM while an upload is in flight:
// it finishes, the store records it, and the exit code is 0.
func TestE2ESIGTERMDrainsInFlight(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	// Long enough that the status below, a process of its own, surely
	// asks while the drain waits for this create.
	e.srv.SetLatency(stratixtest.EndpointCreate, 8*time.Second)
	p := e.start("run", "--settle", "100ms", "--shutdown-timeout", "30s", root)
	h := writeFile(t, root, "inflight.json", traceJSON("inflight"))
	p.waitFor("the create to be in flight", time.Minute, func() bool { return e.srv.Calls(stratixtest.EndpointCreate) >= 1 })
	p.signal(syscall.SIGTERM)
	// While it drains, the daemon still holds the state file: status asks
	// it over the control socket, and sees the upload in flight.
	if st := e.status(); !st.Daemon || st.Intents != 1 {
		t.Errorf("status during the drain: daemon %v, %d intents; want the daemon's answer with the in-flight upload's intent", st.Daemon, st.Intents)
	}
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("SIGTERM during an upload: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}
	if n := e.srv.CreatesByHash()[h]; n != 1 {
		t.Fatalf("in-flight upload: created %d times, want 1 (drained before exit)", n)
	}
	st := e.status()
	if st.Intents != 0 || st.Files["uploaded"] != 1 {
		t.Fatalf("after the drain: %d intents and %d uploaded, want 0 and 1 (store consistent)", st.Intents, st.Files["uploaded"])
	}
}

// TestE2ESIGKILLLoop kills tracesync at random moments, at least 20 times,
// under injected 5xx, 429 and dropped connections; in the end every content
// is created exactly once.
func TestE2ESIGKILLLoop(t *testing.T) {
	t.Parallel()
	testSIGKILLLoop(t, func(i int) string { return fmt.Sprintf("k%02d.json", i) })
}

// TestE2ESIGKILLLoopBasenames is the SIGKILL loop with bare basenames as
// upload names (--remote-name basename), where recovery lists within the
// clock-skew window.
func TestE2ESIGKILLLoopBasenames(t *testing.T) {
	t.Parallel()
	testSIGKILLLoop(t, func(i int) string { return fmt.Sprintf("b%02d.json", i) }, "--remote-name", "basename")
}

// killLoopFiles is how many distinct contents the SIGKILL loop syncs.
const killLoopFiles = 30

// killSeedEnv and fakeSeedEnv rerun the SIGKILL loops with the seeds a
// failed run logged: of the kill moments, and of the fake server's faults.
const (
	killSeedEnv = "TRACESYNC_TEST_KILL_SEED"
	fakeSeedEnv = "TRACESYNC_TEST_FAKE_SEED"
)

// seedFromEnv returns the seed in the environment variable name, or 0 when
// it is not set.
func seedFromEnv(t *testing.T, name string) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	seed, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return seed
}

func testSIGKILLLoop(t *testing.T, name func(i int) string, flags ...string) {
	e := newE2E(t, stratixtest.Options{Seed: seedFromEnv(t, fakeSeedEnv)})
	root := t.TempDir()
	var hashes []string
	for i := range killLoopFiles {
		data := traceJSON(fmt.Sprint("kill", i))
		if strings.HasSuffix(name(i), ".jsonl") {
			data = traceJSONL(fmt.Sprint("kill", i), 2)
		}
		hashes = append(hashes, writeFile(t, root, name(i), data))
	}
	dupData, _ := os.ReadFile(filepath.Join(root, name(1)))
	writeFile(t, root, "copy/"+filepath.Base(name(1)), dupData) // a duplicate: linked, never uploaded again

	api := []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut, stratixtest.EndpointCreate}
	for _, ep := range api {
		e.srv.FailRate(ep, 0.15, http.StatusServiceUnavailable)
		e.srv.RateLimitRate(ep, 0.1, "0")
	}
	// Queued faults: at most one of each waits at a time (a new one only
	// once the endpoint was called since the last), so none piles up.
	putsAt, createsAt := -1, -1
	var procs []*proc // kept for the failure report
	seed := seedFromEnv(t, killSeedEnv)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill moments drawn with seed %d, fake server fault seed %d (rerun: %s=%d %s=%d)",
		seed, e.srv.Seed(), killSeedEnv, seed, fakeSeedEnv, e.srv.Seed())
	rng := rand.New(rand.NewPCG(seed, 7))
	const kills = 24
	for i := range kills {
		if n := e.srv.Calls(stratixtest.EndpointPut); n > putsAt {
			e.srv.DropNext(stratixtest.EndpointPut, 1) // the connection dies mid-PUT
			putsAt = n
		}
		if n := e.srv.Calls(stratixtest.EndpointCreate); n > createsAt {
			e.srv.LoseCreateResponseNext(1) // create runs, its answer is lost: the crash window of rule 9
			createsAt = n
		}
		cmd := "backfill"
		if i%2 == 1 {
			cmd = "run"
		}
		p := e.start(append([]string{cmd, "--settle", "50ms", "--workers", "4", root}, flags...)...)
		procs = append(procs, p)
		time.Sleep(time.Duration(50+rng.IntN(600)) * time.Millisecond) // a random moment: the point of the test
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
			t.Fatalf("kill %d: %v", i, err)
		}
		p.wait(time.Minute)
	}
	for _, ep := range api {
		e.srv.FailRate(ep, 0, 0)
		e.srv.RateLimitRate(ep, 0, "")
	}
	last := e.start(append([]string{"backfill", "--settle", "50ms", root}, flags...)...)
	procs = append(procs, last)
	r := last.finish()
	if r.code != 0 {
		t.Fatalf("final backfill after %d kills: exit %d, want 0\n%s\n%s", kills, r.code, r.stdout, tail(r.stderr, 4000))
	}
	per, total := createsOf(e.srv, hashes)
	for i, h := range hashes {
		if per[h] != 1 {
			t.Errorf("content of %s: created %d times after %d kills, want 1", name(i), per[h], kills)
		}
	}
	if total != len(hashes) {
		t.Errorf("%d creates in all, want %d (one per content)", total, len(hashes))
	}
	if got := e.srv.MaxInflightPerBasename(); got > 1 {
		t.Errorf("two uploads of one basename were between presign and create at once (%d): rule 8", got)
	}
	if t.Failed() {
		rows := e.files()
		byID := map[string]string{}
		for _, tr := range e.srv.Traces() {
			byID[tr.ID] = fmt.Sprintf("%v@%s", tr.Data["trace_id"], tr.CreatedAt.Format("15:04:05.000000"))
		}
		for i, h := range hashes {
			if per[h] != 1 {
				row := rows[filepath.Join(root, name(i))]
				var got []string
				for _, id := range row.TraceIDs {
					got = append(got, id+"="+byID[id])
				}
				t.Logf("%s: recorded %s with traces %v", name(i), row.State, got)
				// What each process said of it, in order.
				for k, p := range procs {
					for _, line := range strings.Split(p.stderr.String(), "\n") {
						if strings.Contains(line, name(i)) {
							t.Logf("  process %d (%s): %s", k, p.cmd.Args[1], line)
						}
					}
				}
			}
		}
	}
}

// TestE2EFileModifiedDuringUpload changes a file's bytes while its PUT is
// streaming: the traces created must match the recorded hash (rule 7).
func TestE2EFileModifiedDuringUpload(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	// Large enough that the PUT body cannot all sit in socket buffers while
	// the server waits, so the tail is read from disk after the change.
	line := `{"trace_id":"tr-mod","payload":"` + strings.Repeat("v", 2000) + `"}` + "\n"
	v1 := bytes.Repeat([]byte(line), (24<<20)/len(line))
	h1 := writeFile(t, root, "mod.jsonl", v1)
	// The change below must land while the server holds the PUT.
	e.srv.SetLatency(stratixtest.EndpointPut, 4*time.Second)
	p := e.start("run", "--settle", "100ms", root)
	p.waitFor("the PUT to start", time.Minute, func() bool { return e.srv.Calls(stratixtest.EndpointPut) >= 1 })

	v2 := bytes.Clone(v1)
	copy(v2[len(v2)-len(line):], strings.ReplaceAll(line, "tr-mod", "tr-MOD")) // same size, new last line
	h2 := hashOf(v2)
	f, err := os.OpenFile(filepath.Join(root, "mod.jsonl"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(v2[len(v2)-len(line):], int64(len(v2)-len(line))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the new bytes created and recorded", 2*time.Minute, func() bool {
		if e.srv.CreatesByHash()[h2] != 1 {
			return false
		}
		row := e.files()[filepath.Join(root, "mod.jsonl")]
		return row.State == "uploaded"
	})
	if n := e.srv.Calls(stratixtest.EndpointPut); n < 2 {
		t.Errorf("%d PUTs, want at least 2 (the one that streamed changed bytes, then the new content's)", n)
	}
	creates := e.srv.CreatesByHash()
	if creates[h1] != 0 {
		t.Errorf("old bytes: created %d times, want 0 (the file changed during its PUT; create must not run)", creates[h1])
	}
	for h, n := range creates {
		if h != h2 && h != h1 {
			t.Errorf("created content %s (%d times) that is neither version of the file: a mixture of old and new bytes", h, n)
		}
	}
	rows := e.files()
	if row := rows[filepath.Join(root, "mod.jsonl")]; row.Hash != h2 || row.State != "uploaded" {
		t.Errorf("mod.jsonl recorded as %s %s, want uploaded with the new hash %s", row.State, row.Hash, h2)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(time.Minute); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
}

// TestE2EDemo runs the README's "run it" command for a few seconds: the
// embedded API starts, the sample traces upload, and the printed command
// lists them.
func TestE2EDemo(t *testing.T) {
	t.Parallel()
	bin := tracesyncBinary(t)
	home := t.TempDir()
	// A key exported for the real API is not used without --real.
	real := stratixtest.NewServer(stratixtest.Options{})
	t.Cleanup(real.Close)
	e := &e2eEnv{t: t, bin: bin, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TRACESYNC_LOG_FORMAT=json",
		"LAYERLENS_STRATIX_API_KEY=" + stratixtest.DefaultAPIKey, "LAYERLENS_STRATIX_BASE_URL=" + real.URL()}}
	dir := filepath.Join(home, "demo")
	p := e.start("demo", "--dir", dir, "--duration", "60s", "--settle", "100ms", "--api-addr", "127.0.0.1:0")

	// The binary is not on PATH: the printed commands name it by its path.
	urlRE := regexp.MustCompile(`LAYERLENS_STRATIX_API_KEY=(\S+) ` + regexp.QuoteMeta(bin) + ` traces list --base-url (\S+)`)
	var m []string
	p.waitFor("the list command to be printed", time.Minute, func() bool {
		m = urlRE.FindStringSubmatch(p.stdout.String())
		return m != nil
	})
	lister := &e2eEnv{t: t, bin: bin, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LAYERLENS_STRATIX_API_KEY=" + m[1]}}
	const wantTraces = 8 // 1 + 1 + 2 (a .json array) + 4 (.jsonl lines)
	var listed []map[string]any
	p.waitFor("the sample traces to be listed", time.Minute, func() bool {
		r := lister.run("traces", "list", "--base-url", m[2], "--all", "--json")
		if r.code != 0 {
			t.Fatalf("the printed list command failed: exit %d\n%s", r.code, r.stderr)
		}
		listed = nil
		_ = json.Unmarshal([]byte(r.stdout), &listed)
		return len(listed) >= wantTraces
	})
	if len(listed) != wantTraces {
		t.Errorf("demo: %d traces listed, want %d", len(listed), wantTraces)
	}
	p.signal(os.Interrupt)
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("demo after Ctrl-C: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}
	if out := p.stdout.String(); !strings.Contains(out, "an embedded Stratix-compatible API runs at") || !strings.Contains(out, "pass --real") ||
		!strings.Contains(out, "status: "+bin+" status --state-dir") {
		t.Errorf("demo did not say it runs the embedded API, that --real uses the configured key, and how to run status:\n%s", out)
	}
	if n := real.Calls(stratixtest.EndpointOrganizations); n != 0 {
		t.Errorf("demo without --real called the configured API %d times, want 0", n)
	}
}

// TestE2ESIGKILLLoopOneBasename is the SIGKILL loop with one basename in
// many folders: rule 8 (one upload per basename between presign and create)
// and rule 9 (adopt only our own traces after a crash) under kills.
func TestE2ESIGKILLLoopOneBasename(t *testing.T) {
	t.Parallel()
	// This test found a rule-9 bug: recovery of an upload of
	// d03/same-name.jsonl adopted the traces created (and recorded) for d09,
	// d00, ... because they fell inside the recovery's clock-skew window.
	// Recovery now skips every trace id the store already attributes.
	testSIGKILLLoop(t, func(i int) string {
		if i%3 == 0 {
			return fmt.Sprintf("d%02d/same-name.jsonl", i)
		}
		return fmt.Sprintf("k%02d.json", i)
	})
}

// TestE2EStatusDuringBackfill: a backfill answers `tracesync status` on
// the control socket while it runs (the state file is locked to it), so
// someone backfilling an archive can ask from another terminal.
func TestE2EStatusDuringBackfill(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	var hashes []string
	for i := range 3 {
		hashes = append(hashes, writeFile(t, root, fmt.Sprintf("b%d.json", i), traceJSON(fmt.Sprintf("during-%d", i))))
	}
	e.srv.SetLatency(stratixtest.EndpointCreate, 700*time.Millisecond)
	p := e.start("backfill", "--workers", "1", root)
	p.waitFor("the first create to be in flight", time.Minute, func() bool { return e.srv.Calls(stratixtest.EndpointCreate) >= 1 })
	st := e.status()
	if got := st.Files["uploaded"] + st.Files["pending"] + st.Files["retrying"]; got != 3 {
		t.Errorf("status during the backfill: %v, want the 3 files tracked", st.Files)
	}
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("backfill: exit %d\n%s", code, tail(p.stderr.String(), 4000))
	}
	if !allCreatedOnce(e.srv, hashes) {
		t.Fatalf("backfill with a status call: not every content created exactly once")
	}
}
