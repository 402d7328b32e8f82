package main

// End-to-end tests of the state watch (design.md rule 15, issue 13): the
// real binary against stratixtest, its state file deleted, replaced, or its
// state directory removed while `tracesync run` runs. Each must exit 1 with
// one error line that names the state file.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// statewatchLimit bounds every wait of these tests: a hang guard, not a
// speed assertion.
const statewatchLimit = time.Minute

// daemonExits is what the daemon's line says it does.
const daemonExits = "exiting so that the service manager restarts tracesync on a fresh state"

// statewatchStart starts a daemon on a drop folder holding one file and
// waits until that file is uploaded and recorded. It returns the daemon
// and the drop folder.
func statewatchStart(t *testing.T, e *e2eEnv) (*proc, string) {
	t.Helper()
	root := t.TempDir()
	h := writeFile(t, root, "a.json", traceJSON("statewatch-"+t.Name()))
	p := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	p.waitFor("a.json created", statewatchLimit, func() bool { return allCreatedOnce(e.srv, []string{h}) })
	p.waitFor("a.json recorded", statewatchLimit, func() bool { return e.status().Files["uploaded"] == 1 })
	return p, root
}

// statewatchExit waits for p to exit and checks it exited 1 with exactly
// one error about the state file, whose text holds each of want.
func statewatchExit(t *testing.T, p *proc, file string, want ...string) {
	t.Helper()
	code := p.wait(statewatchLimit)
	stderr := p.stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (runtime failure)\nstderr:\n%s", code, tail(stderr, 4000))
	}
	var lines []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, file) && (strings.HasPrefix(line, "tracesync: ") || isErrorLogLine(line)) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d error lines naming %s, want 1\nstderr:\n%s", len(lines), file, tail(stderr, 4000))
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line %q does not say %q", lines[0], w)
		}
	}
}

// isErrorLogLine reports whether line is a JSON log line of level error.
func isErrorLogLine(line string) bool {
	var l struct {
		Level string `json:"level"`
	}
	return json.Unmarshal([]byte(line), &l) == nil && l.Level == "error"
}

// TestE2EStateWatchDeleted deletes the state file under a running daemon:
// it exits 1 naming the file; the service manager's restart then starts on
// a fresh state and records the folder's file again.
func TestE2EStateWatchDeleted(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	p, root := statewatchStart(t, e)
	file := filepath.Join(e.state, store.FileName)

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	statewatchExit(t, p, file, "was deleted", daemonExits)

	// Nothing the exit left behind (pid file, control socket) stops the
	// restart, and the fresh state adopts a.json's traces by name.
	_, creates := createsOf(e.srv, nil)
	p2 := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	p2.waitFor("a.json recorded in the fresh state", statewatchLimit, func() bool { return e.status().Files["uploaded"] == 1 })
	if _, after := createsOf(e.srv, nil); after != creates {
		t.Fatalf("the restart on a fresh state: %d creates, want still %d (adopted by name)", after, creates)
	}
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(statewatchLimit); code != 0 {
		t.Fatalf("restart, SIGTERM: exit %d, want 0\n%s", code, tail(p2.stderr.String(), 4000))
	}
}

// TestE2EStateWatchReplaced renames another file over the state file (a
// restore from a backup): the daemon exits 1 naming it.
func TestE2EStateWatchReplaced(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	p, _ := statewatchStart(t, e)
	file := filepath.Join(e.state, store.FileName)

	restored := filepath.Join(e.state, "state.db.restored")
	if err := os.WriteFile(restored, []byte("not the file the daemon has open"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(restored, file); err != nil {
		t.Fatal(err)
	}
	statewatchExit(t, p, file, "was replaced by another file", daemonExits)
}

// TestE2EStateWatchDirRemoved removes the whole state directory under a
// running daemon: it exits 1 naming the state file.
func TestE2EStateWatchDirRemoved(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	p, _ := statewatchStart(t, e)
	file := filepath.Join(e.state, store.FileName)

	if err := os.RemoveAll(e.state); err != nil {
		t.Fatal(err)
	}
	// RemoveAll unlinks the file before the directory: the daemon may see
	// either first, and says "deleted" or "state directory" accordingly.
	statewatchExit(t, p, file, daemonExits)
}

// TestE2EStateWatchBackfill deletes the state file under a backfill whose
// create is in flight: it stops with exit 1 and says to run it again.
func TestE2EStateWatchBackfill(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	writeFile(t, root, "a.json", traceJSON("statewatch-backfill"))
	writeFile(t, root, "b.json", traceJSON("statewatch-backfill-b"))
	e.srv.SetLatency(stratixtest.EndpointCreate, 5*time.Second)
	p := e.start("backfill", "--workers", "1", root)
	p.waitFor("the first create in flight", statewatchLimit, func() bool { return e.srv.Calls(stratixtest.EndpointCreate) >= 1 })
	file := filepath.Join(e.state, store.FileName)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	statewatchExit(t, p, file, "was deleted", "stopping the backfill: run it again")
}
