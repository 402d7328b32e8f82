package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/internal/control"
)

func TestFilesTableAndJSON(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	code, out, errOut := stRun(t, "files", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("files: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "STATE") {
		t.Fatalf("files: want a header and 5 rows, got:\n%s", out)
	}
	if !strings.Contains(out, "trace-a1,trace-a2") || !strings.Contains(out, "invalid JSON: fix the file") {
		t.Errorf("files table lacks trace ids or last error:\n%s", out)
	}

	code, out, errOut = stRun(t, "files", "--state", "quarantined", "--json", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("files --state quarantined --json: exit %d, stderr %q", code, errOut)
	}
	var files []control.File
	if err := json.Unmarshal([]byte(out), &files); err != nil {
		t.Fatalf("files --json: %v\n%s", err, out)
	}
	if len(files) != 1 || files[0].Path != filepath.Join(dir, "in", "bad.json") || len(files[0].Hash) != 64 {
		t.Errorf("files --state quarantined = %+v, want only bad.json with its hash", files)
	}
}

func TestFilesViaDaemon(t *testing.T) {
	dir := stShortDir(t)
	stServe(t, dir, stFill(t, dir))
	code, out, errOut := stRun(t, "files", "--json", "--state-dir", dir)
	var files []control.File
	if code != 0 || json.Unmarshal([]byte(out), &files) != nil || len(files) != 5 {
		t.Fatalf("files via daemon: exit %d, %d rows, stderr %q", code, len(files), errOut)
	}
}

func TestFilesUnknownStateIsUsageError(t *testing.T) {
	code, _, errOut := stRun(t, "files", "--state", "done", "--state-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "quarantined") {
		t.Errorf("files --state done: exit %d, stderr %q; want 2 and the valid names", code, errOut)
	}
}
