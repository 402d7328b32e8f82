package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	if code != 0 || !strings.Contains(out, "marked 1 file removed") || len(w.srv.Deleted()) != 1 {
		t.Fatalf("reconcile --confirm: exit %d, %d deleted; want 1 marked and 1 deleted\nstdout:\n%s\nstderr:\n%s", code, len(w.srv.Deleted()), out, errOut)
	}
}
