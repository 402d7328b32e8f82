package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// The mass-delete guard on the real binary: a budget over time, renames
// that never count, and confirming while the daemon runs.

const guardLimit = 90 * time.Second

// startGuarded writes files (name → seed) under root, starts the daemon
// with delete-on-remove and --max-delete 100, and waits until every file
// is created.
func startGuarded(t *testing.T, e *e2eEnv, root string, names []string) *proc {
	t.Helper()
	var hashes []string
	for _, n := range names {
		hashes = append(hashes, writeFile(t, root, n, traceJSON(n)))
	}
	p := e.start("run", "--settle", "100ms", "--delete-on-remove", "--max-delete", "100", "--rescan-interval", "0", root)
	p.waitFor(fmt.Sprintf("%d files created", len(names)), guardLimit, func() bool { return allCreatedOnce(e.srv, hashes) })
	return p
}

func numbered(dir string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s/t%03d.json", dir, i))
	}
	return out
}

// TestE2EGuardMassRemoval removes 150 tracked files, at once and 10 ms
// apart: nothing is deleted remotely, all 150 are held back, and
// `tracesync reconcile --confirm --delete-on-remove` while the daemon runs
// deletes their traces.
func TestE2EGuardMassRemoval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{{"at once", 0}, {"10ms apart", 10 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t, stratixtest.Options{})
			root := t.TempDir()
			gone := numbered("gone", 150)
			p := startGuarded(t, e, root, append([]string{"keep.json"}, gone...))
			for _, n := range gone {
				if err := os.Remove(filepath.Join(root, n)); err != nil {
					t.Fatal(err)
				}
				if tc.gap > 0 {
					time.Sleep(tc.gap) // the rm's pace: the scenario, not a wait for tracesync
				}
			}
			p.waitFor("150 removals held back", guardLimit, func() bool { return e.status().HeldBack == 150 })
			if d := e.srv.Deleted(); len(d) != 0 {
				t.Fatalf("150 files removed with --max-delete 100: %d traces deleted, want 0", len(d))
			}
			if n := strings.Count(p.stderr.String(), "held back: 150 tracked files"); n != 1 {
				t.Errorf("got %d 'held back: 150 tracked files' errors, want 1\n%s", n, tail(p.stderr.String(), 4000))
			}

			r := e.run("reconcile", "--confirm", "--delete-on-remove", root)
			if r.code != 0 || !strings.Contains(r.stdout, "marked 150 files removed") {
				t.Fatalf("reconcile --confirm with the daemon running: exit %d, want 0 and 150 marked removed\n%s%s", r.code, r.stdout, r.stderr)
			}
			p.waitFor("the 150 confirmed deletes", guardLimit, func() bool { return len(e.srv.Deleted()) == 150 })
			p.waitFor("nothing held back", guardLimit, func() bool { return e.status().HeldBack == 0 })
			if n := len(e.srv.Traces()); n != 1 {
				t.Errorf("%d traces left, want 1 (keep.json's)", n)
			}
			p.terminate(guardLimit)
		})
	}
}

// TestE2EGuardRenamedFolder renames a folder of 500 tracked files with
// --max-delete 100: a rename, so nothing is held back, uploaded or
// deleted, and status shows the 500 files under their new names.
func TestE2EGuardRenamedFolder(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	old := numbered("incoming", 500)
	p := startGuarded(t, e, root, old)
	presigns := e.srv.Calls(stratixtest.EndpointPresign)
	if err := os.Rename(filepath.Join(root, "incoming"), filepath.Join(root, "done")); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the 500 new paths uploaded and the 500 old ones removed", guardLimit, func() bool {
		rows := e.files()
		for _, n := range old {
			if !gone(rows, filepath.Join(root, n)) || rows[filepath.Join(root, "done", filepath.Base(n))].State != "uploaded" {
				return false
			}
		}
		return true
	})
	st := e.status()
	if st.HeldBack != 0 || strings.Contains(p.stderr.String(), "held back") {
		t.Errorf("renamed folder: %d held back, want 0\n%s", st.HeldBack, tail(p.stderr.String(), 4000))
	}
	if n := st.Files["uploaded"]; n != 500 {
		t.Errorf("renamed folder: status shows %d uploaded paths, want 500", n)
	}
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Errorf("renamed folder: %d traces deleted, want 0", len(d))
	}
	if n := e.srv.Calls(stratixtest.EndpointPresign); n != presigns {
		t.Errorf("renamed folder: %d uploads started after the rename, want 0", n-presigns)
	}
	p.terminate(guardLimit)
}

// TestE2EGuardRootEmptiedByEvents removes every file of a watched folder
// (inotify events, no rescan): held back like a rescan that finds it empty.
func TestE2EGuardRootEmptiedByEvents(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	names := numbered("d", 5)
	p := startGuarded(t, e, root, names)
	for _, n := range names {
		if err := os.Remove(filepath.Join(root, n)); err != nil {
			t.Fatal(err)
		}
	}
	p.waitFor("the 5 removals held back", guardLimit, func() bool { return e.status().HeldBack == 5 })
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Fatalf("folder emptied by events: %d traces deleted, want 0", len(d))
	}
	if !strings.Contains(p.stderr.String(), "tracesync reconcile --confirm --delete-on-remove "+root) {
		t.Errorf("the held-back error does not name the confirm command\n%s", tail(p.stderr.String(), 4000))
	}
	p.terminate(guardLimit)
}

// TestE2EGuardRootOnAnotherDevice restarts the daemon on a folder whose
// files were recorded on another device (its disk is not mounted, and the
// mount point holds other files): nothing is deleted, even after a rescan,
// and its new files are not synced, until `reconcile --confirm`. A device
// cannot be unmounted under a test here, so the records are rewritten to
// name another device while the daemon is stopped, which is what the
// daemon then meets.
func TestE2EGuardRootOnAnotherDevice(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	gone := numbered("d", 3)
	p := startGuarded(t, e, root, gone)
	p.terminate(guardLimit)
	var st syscall.Stat_t
	if err := syscall.Stat(root, &st); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(e.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		for _, n := range gone {
			rec, err := tx.GetPath(filepath.Join(root, n))
			if err != nil {
				return err
			}
			rec.Dev = uint64(st.Dev) + 1
			if err := tx.PutPath(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("rewrite the records' device: %v", err)
	}
	for _, n := range gone {
		if err := os.Remove(filepath.Join(root, n)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := writeFile(t, root, "new.json", traceJSON("new on the other disk"))

	// A second folder orders things: the watcher scans in its one loop,
	// so a file dropped there after the rescan began is reported after
	// the rescan's end, and the engine takes events in order.
	other := t.TempDir()
	p = e.start("run", "--settle", "100ms", "--delete-on-remove", "--max-delete", "100", "--rescan-interval", "0", root, other)
	p.waitFor("the 3 files held back", guardLimit, func() bool { return e.status().HeldBack == 3 })
	p.signal(syscall.SIGHUP) // a rescan
	p.waitFor("the rescan to start", guardLimit, func() bool { return strings.Contains(p.stderr.String(), "rescan requested") })
	marker := writeFile(t, other, "marker.json", traceJSON("marker"))
	p.waitFor("the marker after the rescan", guardLimit, func() bool { return allCreatedOnce(e.srv, []string{marker}) })
	// Removals are judged one remove grace (1.2 s here) after the last
	// one: wait past it, as a user would before looking.
	time.Sleep(3 * time.Second)
	if d := e.srv.Deleted(); len(d) != 0 {
		t.Fatalf("folder on another device, after a rescan: %d traces deleted, want 0", len(d))
	}
	if per, _ := createsOf(e.srv, []string{fresh}); per[fresh] != 0 {
		t.Fatalf("folder on another device: its new file was uploaded, want it held until confirmed")
	}
	if !strings.Contains(p.stderr.String(), "is now on device") {
		t.Fatalf("no error says the folder is on another device:\n%s", tail(p.stderr.String(), 4000))
	}

	r := e.run("reconcile", "--confirm", "--delete-on-remove", root)
	if r.code != 0 {
		t.Fatalf("reconcile --confirm with the daemon running: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.waitFor("the 3 confirmed deletes", guardLimit, func() bool { return len(e.srv.Deleted()) == 3 })
	p.waitFor("the new file uploaded after the confirm", guardLimit, func() bool { return allCreatedOnce(e.srv, []string{fresh}) })
	p.terminate(guardLimit)
}
