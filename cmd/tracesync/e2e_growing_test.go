package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// The growing-file tests count the server's traces line by line: every
// line written is there exactly once, and nothing else is.

// logLine is the i-th line writer w appends.
func logLine(w string, i int) string {
	return fmt.Sprintf(`{"trace_id":"tr-%s-%d","agent_name":"appender","status":"completed"}`, w, i)
}

// lineTally counts the server's live traces by their JSON.
func lineTally(srv *stratixtest.Server) map[string]int {
	out := map[string]int{}
	for _, j := range srv.TraceJSON() {
		out[j]++
	}
	return out
}

// missingOrExtra describes how the server's traces differ from want (each
// once, nothing else); "" when they do not.
func missingOrExtra(srv *stratixtest.Server, want []string) string {
	got := lineTally(srv)
	var bad []string
	for _, w := range want {
		c := stratixtest.CanonicalJSON([]byte(w))
		if got[c] != 1 {
			bad = append(bad, fmt.Sprintf("%d× %s", got[c], w))
		}
		delete(got, c)
	}
	for j, n := range got {
		bad = append(bad, fmt.Sprintf("unexpected %d× %s", n, j))
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("... %d more", len(bad)-5))
	}
	return strings.Join(bad, "; ")
}

// appendLine appends one line to path, opening and closing it (a writer
// that reopens the file for each line).
func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Error(err)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

// waitLines waits until the server holds exactly want.
func waitLines(p *proc, e *e2eEnv, want []string, limit time.Duration) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d lines, each once", len(want)), limit, func() bool { return missingOrExtra(e.srv, want) == "" })
}

// A slow writer (lines a second apart, settle 300ms) and a writer that
// reopens the file for each line: every line reaches the server once.
func TestE2EGrowingSlowAndReopeningWriters(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	p := e.start("run", "--settle", "300ms", "--rescan-interval", "0", root)
	slow, reopen := filepath.Join(root, "slow.jsonl"), filepath.Join(root, "reopen.jsonl")
	var want []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f, err := os.Create(slow) // kept open, like an agent's log
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for i := range 5 {
			l := logLine("slow", i)
			if _, err := f.WriteString(l + "\n"); err != nil {
				t.Error(err)
			}
			mu.Lock()
			want = append(want, l)
			mu.Unlock()
			time.Sleep(time.Second) // the writer's pace: the scenario, not a wait for tracesync
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 30 {
			l := logLine("reopen", i)
			appendLine(t, reopen, l)
			mu.Lock()
			want = append(want, l)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wg.Wait()
	waitLines(p, e, want, 60*time.Second)
	rows := e.files()
	if r := rows[slow]; r.State != "uploaded" || r.Segments < 2 {
		t.Errorf("slow.jsonl: %s with %d segments, want uploaded in several", r.State, r.Segments)
	}
	p.terminate(30 * time.Second)
}

// A writer that appends every 200 ms for 15 s, never quiet for --settle:
// its lines are on the server while it still writes (--max-lag), and at
// the end each is there once.
func TestE2EGrowingNeverQuiet(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	p := e.start("run", "--settle", "1s", "--max-lag", "2s", "--rescan-interval", "0", root)
	path := filepath.Join(root, "busy.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []string
	seenWhileWriting := 0
	end := time.Now().Add(15 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		l := logLine("busy", i)
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
		want = append(want, l)
		if i == 50 { // 10 s in
			seenWhileWriting = len(e.srv.TraceJSON())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if seenWhileWriting == 0 {
		t.Errorf("no line on the server 10 s into a writer that never pauses: --max-lag did not cut a segment")
	}
	waitLines(p, e, want, 60*time.Second)
	p.terminate(30 * time.Second)
}

// Rotation: a log renamed to a name the include patterns skip has moved,
// not gone (nothing deleted, even with --delete-on-remove); one renamed
// to an included name keeps its chain; the new log starts a new chain;
// a log cut short and written again (copytruncate) sends only new lines.
func TestE2EGrowingRotation(t *testing.T) {
	t.Parallel()
	for _, deletes := range []bool{true, false} {
		t.Run(fmt.Sprintf("delete-on-remove=%v", deletes), func(t *testing.T) {
			t.Parallel()
			testGrowingRotation(t, deletes)
		})
	}
}

func testGrowingRotation(t *testing.T, deletes bool) {
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	writeFile(t, root, "keep.json", traceJSON("keep")) // the folder never looks emptied
	args := []string{"run", "--settle", "200ms", "--rescan-interval", "0", root}
	if deletes {
		args = append(args, "--delete-on-remove")
	}
	p := e.start(args...)
	want := []string{strings.TrimSpace(string(traceJSON("keep")))}
	app, moved := filepath.Join(root, "app.jsonl"), filepath.Join(root, "app-old.jsonl")
	add := func(path, w string, from, to int) {
		for i := from; i < to; i++ {
			appendLine(t, path, logLine(w, i))
			want = append(want, logLine(w, i))
		}
	}
	add(app, "app", 0, 3)
	waitLines(p, e, want, 30*time.Second)
	add(app, "app", 3, 5)
	waitLines(p, e, want, 30*time.Second)

	// Renamed to an excluded name: moved, nothing deleted.
	if err := os.Rename(app, app+".1"); err != nil {
		t.Fatal(err)
	}
	add(app, "app2", 0, 2) // the new log
	waitLines(p, e, want, 30*time.Second)
	time.Sleep(2 * time.Second) // past the remove grace: a delete would have happened by now
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Fatalf("rotation to app.jsonl.1 deleted %d traces", len(d))
	}
	if r := e.files()[app+".1"]; r.Path != "" {
		t.Errorf("app.jsonl.1, a name the include patterns skip, is tracked: %+v", r)
	}

	// Renamed to an included name: the chain goes with it.
	if err := os.Rename(app, moved); err != nil {
		t.Fatal(err)
	}
	add(moved, "app2", 2, 4)
	waitLines(p, e, want, 30*time.Second)
	if r := e.files()[moved]; r.Segments < 2 {
		t.Errorf("app-old.jsonl: %d segments, want the chain it had as app.jsonl and more", r.Segments)
	}

	// copytruncate: the old lines were copied away, the log starts again.
	cp := filepath.Join(root, "ct.jsonl")
	add(cp, "ct", 0, 3)
	waitLines(p, e, want, 30*time.Second)
	if err := os.Truncate(cp, 0); err != nil {
		t.Fatal(err)
	}
	// Without --delete-on-remove the old lines stay; with it their traces
	// go, as the file no longer holds them.
	add(cp, "ct2", 0, 2)
	p.waitFor("the truncated log's new lines", 30*time.Second, func() bool {
		got := lineTally(e.srv)
		return got[stratixtest.CanonicalJSON([]byte(logLine("ct2", 1)))] == 1
	})
	if !deletes {
		waitLines(p, e, want, 30*time.Second)
		p.terminate(30 * time.Second)
		return
	}
	p.waitFor("the truncated log's old lines deleted", 30*time.Second, func() bool {
		return missingOrExtra(e.srv, slicesWithout(want, "tr-ct-")) == ""
	})
	p.terminate(30 * time.Second)
}

// slicesWithout returns the lines of want that do not contain sub.
func slicesWithout(want []string, sub string) []string {
	var out []string
	for _, w := range want {
		if !strings.Contains(w, sub) {
			out = append(out, w)
		}
	}
	return out
}

// A backfill uploads a .jsonl without a final newline, a .jsonl over the
// size limit in segments at line boundaries, and a .json array over it in
// parts of whole elements; a re-run uploads nothing.
func TestE2EBackfillLongAndUnterminatedJSONL(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	var want []string
	var joined []string
	for i := range 3 {
		joined = append(joined, logLine("joined", i))
	}
	want = append(want, joined...)
	writeFile(t, root, "joined.jsonl", []byte(strings.Join(joined, "\n"))) // '\n'.join(lines): no final newline
	// CI cuts at a 1 MiB limit; TRACESYNC_TEST_FULL_SIZE=1 runs files
	// larger than the API's own limit, at that limit.
	jsonlSize, arraySize, limit := 3<<20, 5<<19, []string{"--max-file-size", "1MiB"}
	if os.Getenv("TRACESYNC_TEST_FULL_SIZE") == "1" {
		jsonlSize, arraySize, limit = 120<<20, 60<<20, nil
	}
	var big strings.Builder
	for i := 0; big.Len() < jsonlSize; i++ {
		l := logLine("big", i)
		big.WriteString(l + "\n")
		want = append(want, l)
	}
	writeFile(t, root, "big.jsonl", []byte(big.String()))
	var arr strings.Builder
	arr.WriteString("[")
	for i := 0; arr.Len() < arraySize; i++ {
		if i > 0 {
			arr.WriteString(",\n")
		}
		l := logLine("arr", i)
		arr.WriteString(l)
		want = append(want, l)
	}
	arr.WriteString("]\n")
	writeFile(t, root, "big.json", []byte(arr.String()))
	res := e.run(append([]string{"backfill"}, append(limit, root)...)...)
	if res.code != 0 {
		t.Fatalf("backfill: exit %d\n%s", res.code, tail(res.stderr, 4000))
	}
	if d := missingOrExtra(e.srv, want); d != "" {
		t.Fatalf("after the backfill: %s", d)
	}
	rows := e.files()
	if r := rows[filepath.Join(root, "big.jsonl")]; r.State != "uploaded" || r.Segments < 3 {
		t.Errorf("big.jsonl (%d bytes): %s in %d segments, want uploaded in at least 3", jsonlSize, r.State, r.Segments)
	}
	if r := rows[filepath.Join(root, "big.json")]; r.State != "uploaded" || r.Segments < 2 {
		t.Errorf("big.json (an array of %d bytes): %s in %d parts, want uploaded in at least 2", arraySize, r.State, r.Segments)
	}
	creates := e.srv.Calls(stratixtest.EndpointCreate)
	res = e.run(append([]string{"backfill"}, append(limit, root)...)...)
	if res.code != 0 {
		t.Fatalf("re-run: exit %d\n%s", res.code, tail(res.stderr, 4000))
	}
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != creates {
		t.Errorf("re-run made %d creates, want none", n-creates)
	}
	if d := missingOrExtra(e.srv, want); d != "" {
		t.Fatalf("after the re-run: %s", d)
	}
}

// TestE2EGrowingSIGKILLLoop kills `tracesync run` at random moments, at
// least 10 times, while two writers append to their logs, under injected
// 5xx, 429 and dropped connections; in the end every line is on the server
// exactly once.
func TestE2EGrowingSIGKILLLoop(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{Seed: seedFromEnv(t, fakeSeedEnv)})
	root := t.TempDir()
	api := []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut, stratixtest.EndpointCreate}
	for _, ep := range api {
		e.srv.FailRate(ep, 0.15, http.StatusServiceUnavailable)
		e.srv.RateLimitRate(ep, 0.1, "0")
	}
	seed := seedFromEnv(t, killSeedEnv)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill moments drawn with seed %d, fake server fault seed %d (rerun: %s=%d %s=%d)",
		seed, e.srv.Seed(), killSeedEnv, seed, fakeSeedEnv, e.srv.Seed())
	rng := rand.New(rand.NewPCG(seed, 11))

	var mu sync.Mutex
	var want []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range []string{"alpha", "beta"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(root, w+".jsonl")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l := logLine(w, i)
				appendLine(t, path, l)
				mu.Lock()
				want = append(want, l)
				mu.Unlock()
				time.Sleep(40 * time.Millisecond) // the writers' pace
			}
		}()
	}
	putsAt, createsAt := -1, -1
	const kills = 12
	for i := range kills {
		if n := e.srv.Calls(stratixtest.EndpointPut); n > putsAt {
			e.srv.DropNext(stratixtest.EndpointPut, 1)
			putsAt = n
		}
		if n := e.srv.Calls(stratixtest.EndpointCreate); n > createsAt {
			e.srv.LoseCreateResponseNext(1) // create runs, its answer is lost
			createsAt = n
		}
		p := e.start("run", "--settle", "100ms", "--max-lag", "300ms", "--rescan-interval", "0", root)
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond) // a random moment: the point of the test
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
			t.Fatalf("kill %d: %v", i, err)
		}
		p.wait(time.Minute)
	}
	close(stop)
	wg.Wait()
	for _, ep := range api {
		e.srv.FailRate(ep, 0, 0)
		e.srv.RateLimitRate(ep, 0, "")
	}
	last := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	mu.Lock()
	all := slices.Clone(want)
	mu.Unlock()
	last.waitFor(fmt.Sprintf("%d lines after %d kills, each once", len(all), kills), 90*time.Second, func() bool {
		return missingOrExtra(e.srv, all) == ""
	})
	last.terminate(30 * time.Second)
	if d := missingOrExtra(e.srv, all); d != "" {
		t.Fatalf("after %d kills: %s", kills, d)
	}
}

// A state written by the previous schema (3: a whole .jsonl recorded as
// one content, no range, no print) is upgraded by the next run, and an
// append after it sends only the new lines.
func TestE2EGrowingAfterSchemaUpgrade(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	path := filepath.Join(root, "old.jsonl")
	var want []string
	for i := range 3 {
		appendLine(t, path, logLine("old", i))
		want = append(want, logLine("old", i))
	}
	if r := e.run("backfill", root); r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s", r.code, tail(r.stderr, 4000))
	}
	downgradeToSchema3(t, filepath.Join(e.state, store.FileName), path)
	p := e.start("run", "--settle", "200ms", "--rescan-interval", "0", root)
	p.waitFor("the upgraded state in use", 30*time.Second, func() bool { return e.status().Files["uploaded"] == 1 })
	for i := 3; i < 5; i++ {
		appendLine(t, path, logLine("old", i))
		want = append(want, logLine("old", i))
	}
	waitLines(p, e, want, 30*time.Second)
	if r := e.files()[path]; r.Segments != 2 {
		t.Errorf("old.jsonl after the append: %d segments, want 2 (the upgraded whole file, then the new lines)", r.Segments)
	}
	p.terminate(30 * time.Second)
}

// downgradeToSchema3 replaces a state file by the one schema 3 would have
// written for path alone: its record as a whole file (no range or print),
// keyed by the path, its content, the ref between them, no segments or
// inodes buckets, schema number 3. The records are read through the store,
// then written with the frozen encoding below.
func downgradeToSchema3(t *testing.T, file, path string) {
	t.Helper()
	db, err := store.Open(filepath.Dir(file), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	target := db.Target()
	rec, err := db.GetPath(path)
	if err != nil {
		t.Fatalf("no record of %s: %v", path, err)
	}
	c, err := db.GetContent(rec.Hash)
	if err != nil {
		t.Fatalf("no content of %s: %v", path, err)
	}
	if rec.Prior != 0 {
		t.Fatalf("the record of %s has %d earlier segments", path, rec.Prior)
	}
	db.Close()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(file, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket([]byte("meta"))
		_ = meta.Put([]byte("schema"), []byte{0, 0, 0, 3})
		_ = meta.Put([]byte("last_target"), []byte(target))
		targets, _ := tx.CreateBucket([]byte("targets"))
		ns, _ := targets.CreateBucket([]byte(target))
		for _, b := range []string{"paths", "contents", "intents", "deletes"} {
			if _, err := ns.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		if err := ns.Bucket([]byte("paths")).Put([]byte(path), schema3PathRecord(rec)); err != nil {
			return err
		}
		contents := ns.Bucket([]byte("contents"))
		if err := contents.Put(rec.Hash[:], schema3ContentRecord(c)); err != nil {
			return err
		}
		return contents.Put(append(rec.Hash[:], path...), []byte{'r'})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// schema3PathRecord is a whole file's path record as schema 3 encoded it
// (format 1): the root and the state as strings, times as seconds and
// nanoseconds.
func schema3PathRecord(r store.PathRecord) []byte {
	b := []byte{1}
	b = schema3Str(b, r.Root)
	b = append(b, r.Hash[:]...)
	b = binary.AppendVarint(b, r.Size)
	b = schema3Time(b, r.ModTime)
	b = binary.AppendUvarint(b, r.Dev)
	b = binary.AppendUvarint(b, r.Ino)
	b = schema3Str(b, string(r.State))
	b = binary.AppendVarint(b, int64(r.Attempts))
	b = schema3Time(b, r.NextAttempt)
	b = schema3Str(b, r.LastError)
	b = schema3Time(b, r.FirstSeen)
	b = schema3Time(b, r.UpdatedAt)
	return schema3Time(b, r.RemovedAt)
}

// schema3ContentRecord is a content record as schema 2 encoded it (format
// 1, the trace ids as strings), which schema 3 still read.
func schema3ContentRecord(c store.Content) []byte {
	b := schema3Str([]byte{1}, c.Filename)
	b = binary.AppendVarint(b, c.Size)
	b = binary.AppendUvarint(b, uint64(len(c.TraceIDs)))
	for _, id := range c.TraceIDs {
		b = schema3Str(b, id)
	}
	return schema3Time(b, c.UploadedAt)
}

func schema3Str(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func schema3Time(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendUvarint(binary.AppendVarint(append(b, 1), t.Unix()), uint64(t.Nanosecond()))
}
