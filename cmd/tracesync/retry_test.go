package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/store"
)

func TestRetryPathsAndAll(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	bad := filepath.Join(dir, "in", "bad.json")
	code, out, errOut := stRun(t, "retry", "--state-dir", dir, bad, filepath.Join(dir, "in", "a.json"))
	if code != 0 || !strings.Contains(out, "requeued 1 file") {
		t.Fatalf("retry bad.json a.json: exit %d, out %q, stderr %q; want 1 requeued (a.json is uploaded)", code, out, errOut)
	}
	if want := filepath.Join(dir, "in", "a.json") + ": uploaded, nothing to retry"; !strings.Contains(out, want) {
		t.Fatalf("retry of an uploaded path: out %q does not say %q", out, want)
	}
	code, out, _ = stRun(t, "retry", "--all", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "requeued 1 file") {
		t.Fatalf("retry --all: exit %d, out %q; want flaky.json requeued", code, out)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range []string{"bad.json", "flaky.json"} {
		r, err := db.GetPath(filepath.Join(dir, "in", p))
		if err != nil || r.State != store.StatePending || r.Attempts != 0 || !r.NextAttempt.IsZero() {
			t.Errorf("%s after retry: %+v (%v), want pending, 0 attempts, now", p, r, err)
		}
	}
}

func TestRetryRelativePathAndUnknownPath(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	t.Chdir(filepath.Join(dir))
	code, out, errOut := stRun(t, "retry", "--state-dir", dir, filepath.Join("in", "bad.json"))
	if code != 0 || !strings.Contains(out, "requeued 1 file") {
		t.Fatalf("retry with a relative path: exit %d, out %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = stRun(t, "retry", "--state-dir", dir, filepath.Join(dir, "in", "nope.json"))
	if code != 1 || !strings.Contains(errOut, "not tracked") || !strings.Contains(errOut, "nope.json") {
		t.Errorf("retry of an untracked path: exit %d, stderr %q; want 1 and the path named", code, errOut)
	}
}

func TestRetryViaDaemon(t *testing.T) {
	dir := stShortDir(t)
	db := stFill(t, dir)
	stServe(t, dir, db)
	code, out, errOut := stRun(t, "retry", "--all", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "requeued 2 files") {
		t.Fatalf("retry --all via daemon: exit %d, out %q, stderr %q", code, out, errOut)
	}
	if r, _ := db.GetPath(filepath.Join(dir, "in", "flaky.json")); r.State != store.StatePending {
		t.Errorf("daemon's store: flaky.json is %s after retry, want pending", r.State)
	}
}

func TestRetryUsage(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"retry"}, "give the paths to retry (tracesync files --state quarantined lists them), or --all"},
		{[]string{"retry", "--all", "x.json"}, "give --all or paths, not both"},
	} {
		code, _, errOut := stRun(t, append(c.args, "--state-dir", dir)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 saying %q", c.args, code, errOut, c.want)
		}
	}
}
