package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// mainIn runs tracesync in process with env and returns the exit code,
// stdout and stderr.
func mainIn(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	code := Main(ctx, args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

// withEnv returns a copy of base with extra set.
func withEnv(base map[string]string, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// The --exclude help and the README name exactly the patterns the watcher
// always ignores, and the watcher does ignore a name of each.
func TestExcludeHelpListsTheAlwaysIgnoredNames(t *testing.T) {
	want := []string{".*", "*.tmp", "*.part", "*.swp", "*~", "#*#"}
	var f syncFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	addSyncFlags(fs, &f)
	usage := fs.Lookup("exclude").Usage
	m := regexp.MustCompile(`always skipped \(([^)]*)\)`).FindStringSubmatch(usage)
	if m == nil || m[1] != strings.Join(want, ", ") {
		t.Fatalf("--exclude help %q: want the list (%s)", usage, strings.Join(want, ", "))
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var quoted []string
	for _, p := range want {
		quoted = append(quoted, "`"+p+"`")
	}
	row, rows := "| `--exclude GLOB` |", 0
	for _, l := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(l, row) {
			continue
		}
		rows++
		if !strings.Contains(l, "("+strings.Join(quoted, ", ")+")") {
			t.Errorf("README's --exclude row does not list (%s):\n%s", strings.Join(quoted, ", "), l)
		}
	}
	if rows != 1 {
		t.Errorf("README has %d rows starting %q, want 1", rows, row)
	}

	// The watcher ignores a name of each pattern, even with --include '*'.
	root := t.TempDir()
	names := map[string]bool{"kept.json": true}
	for _, p := range want {
		names[strings.Replace(p, "*", "x.json", 1)] = false
	}
	for name := range names {
		if err := os.WriteFile(filepath.Join(root, name), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := watcher.New(watcher.Config{Roots: []string{root}, Include: []string{"*"}, Settle: 10 * time.Millisecond,
		SettleTimeout: time.Second, Once: true, Known: func(string, watcher.Stat) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	seen := map[string]bool{}
	for ev := range w.Events() {
		if ev.Kind == watcher.Ready {
			seen[filepath.Base(ev.Path)] = true
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for name, reported := range names {
		if seen[name] != reported {
			t.Errorf("watcher reported %s: %v, want %v", name, seen[name], reported)
		}
	}
}

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

// A .jsonl cut mid-line is "incomplete" in a dry run, as the real backfill
// reports it, not "quarantine".
func TestDryRunCallsACutFileIncompleteLikeBackfill(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "ok.json", traceJSON("ok"))
	writeFile(t, w.folder, "cut.jsonl", []byte("{\"trace_id\":\"ok-1\"}\n{\"trace_id\":\"cut-2\",\"ev"))
	writeFile(t, w.folder, "broken.json", []byte(`not json`))
	cut := filepath.Join(w.folder, "cut.jsonl")

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
}

// TRACESYNC_CONFIRM (or any command-line-only switch) in the environment
// does not confirm: reconcile changes nothing and deletes nothing, and says
// the variable is ignored.
func TestEnvironmentCannotConfirm(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "a.json", traceJSON("a"))
	if code, out, errOut := mainIn(t, context.Background(), w.env, "backfill", "--settle", "50ms", w.folder); code != 0 {
		t.Fatalf("backfill: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.Remove(filepath.Join(w.folder, "a.json")); err != nil {
		t.Fatal(err)
	}
	env := withEnv(w.env, map[string]string{"TRACESYNC_CONFIRM": "1", "TRACESYNC_DELETE_ON_REMOVE": "true", "TRACESYNC_JSON": "true"})
	code, out, errOut := mainIn(t, context.Background(), env, "reconcile", w.folder)
	if code != 0 || !strings.Contains(out, "nothing changed") || !strings.Contains(errOut, "TRACESYNC_CONFIRM is ignored") {
		t.Fatalf("reconcile with TRACESYNC_CONFIRM=1: exit %d, want 0, nothing changed and a warning\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if d := w.srv.Deleted(); len(d) != 0 {
		t.Fatalf("TRACESYNC_CONFIRM=1 deleted traces %v, want none", d)
	}
	// The status is a table, not JSON: TRACESYNC_JSON is not read either.
	if code, out, _ := mainIn(t, context.Background(), env, "files"); code != 0 || strings.HasPrefix(out, "[") || !strings.Contains(out, "uploaded") {
		t.Fatalf("files with TRACESYNC_JSON=true: exit %d, want the table with a.json still uploaded:\n%s", code, out)
	}
	// --confirm on the command line does act (the test can tell).
	code, out, errOut = mainIn(t, context.Background(), env, "reconcile", "--confirm", w.folder)
	if code != 0 || !strings.Contains(out, "marked 1 files removed") || len(w.srv.Deleted()) != 1 {
		t.Fatalf("reconcile --confirm: exit %d, %d deleted; want 1 marked and 1 deleted\nstdout:\n%s\nstderr:\n%s", code, len(w.srv.Deleted()), out, errOut)
	}
}

// The daemon prunes after its first scan: records of files removed longer
// ago than --retention go, and contents nothing refers to; records of
// files on disk, and their contents, stay, even a file that came back
// under a path recorded as removed long ago (it is linked to its content,
// not uploaded again).
func TestRunPrunesAfterFirstScan(t *testing.T) {
	w := newCheckConfigWorld(t)
	keep := writeFile(t, w.folder, "keep.json", traceJSON("keep"))
	back := writeFile(t, w.folder, "back.json", traceJSON("back"))
	gone := writeFile(t, w.folder, "gone.json", traceJSON("gone"))
	if code, out, errOut := mainIn(t, context.Background(), w.env, "backfill", "--settle", "50ms", w.folder); code != 0 {
		t.Fatalf("backfill: exit %d\n%s%s", code, out, errOut)
	}
	// back.json and gone.json were removed 40 days ago (as a daemon records
	// it); back.json has been restored since, gone.json has not.
	if err := os.Remove(filepath.Join(w.folder, "gone.json")); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-40 * 24 * time.Hour)
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		for _, name := range []string{"back.json", "gone.json"} {
			if _, err := tx.RemovePath(filepath.Join(w.folder, name), longAgo); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// The restored file must look new to the daemon's restart check.
	if err := os.Chtimes(filepath.Join(w.folder, "back.json"), time.Now(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	env := withEnv(w.env, map[string]string{"TRACESYNC_LOG_FORMAT": "json"})
	go func() {
		done <- Main(ctx, []string{"run", "--settle", "100ms", w.folder}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	}()
	deadline := time.Now().Add(time.Minute) // a hang guard, not a speed assertion
	for !strings.Contains(stderr.String(), `"message":"pruned`) {
		select {
		case code := <-done:
			t.Fatalf("run exited %d before pruning:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not prune within a minute:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run: exit %d after SIGTERM-like stop\n%s", code, stderr.String())
	}
	if !regexp.MustCompile(`"paths":1,"contents":1,`).MatchString(stderr.String()) {
		t.Errorf("prune log line: want paths 1 (gone.json) and contents 1 (gone.json's):\n%s", stderr.String())
	}
	if per, _ := createsOf(w.srv, []string{keep, back, gone}); per[keep] != 1 || per[back] != 1 || per[gone] != 1 {
		t.Errorf("creates per content: %v, want each once (back.json, restored, must be linked, not uploaded again)", per)
	}
	db, err = store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, want := range map[string]store.State{"keep.json": store.StateUploaded, "back.json": store.StateUploaded} {
		if rec, err := db.GetPath(filepath.Join(w.folder, name)); err != nil || rec.State != want {
			t.Errorf("%s after prune: %+v, %v; want %s", name, rec.State, err, want)
		}
	}
	if _, err := db.GetPath(filepath.Join(w.folder, "gone.json")); err == nil {
		t.Errorf("gone.json (removed 40 days ago) still recorded after prune")
	}
	for name, h := range map[string]string{"keep.json": keep, "back.json": back} {
		hash, _ := store.ParseHash(h)
		if _, err := db.GetContent(hash); err != nil {
			t.Errorf("content of %s pruned: %v", name, err)
		}
	}
	hash, _ := store.ParseHash(gone)
	if _, err := db.GetContent(hash); err == nil {
		t.Errorf("content of gone.json (no path left) kept after prune")
	}
}

// The daemon's first wait for an unreachable API starts from its own
// initial interval (1s, randomized by half), not backoff's 500ms default.
func TestConnectBackoffStartsAtOneSecond(t *testing.T) {
	for range 20 {
		bo := newConnectBackoff()
		if d := bo.NextBackOff(); d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("first wait %s, want 0.5s to 1.5s (1s randomized by half)", d)
		}
	}
}
