package uploader_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// guardConfig is delete-on-remove with the daemon's kind of gather delay:
// removals a few milliseconds apart are judged as one set.
func guardConfig(maxDelete int) uploader.Config {
	cfg := deleteConfig()
	cfg.MaxDelete = maxDelete
	cfg.DeleteDelay = time.Second
	return cfg
}

// uploadAll writes n files under dir (relative to the root), sends them
// Ready and waits until each is uploaded.
func (h *harness) uploadAll(dir string, n int) []string {
	h.t.Helper()
	var paths []string
	for i := range n {
		p := h.write(fmt.Sprintf("%s/f%03d.json", dir, i), fmt.Sprintf(`{"dir": %q, "n": %d}`, dir, i))
		paths = append(paths, p)
		h.ready(p)
	}
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	return paths
}

// Rule 6: removals that arrive one by one (rm -rf) are one budget: 150
// tracked files removed 10 ms apart with --max-delete 100 delete nothing,
// the first ones included, until reconcile --confirm.
func TestGuardBudgetRemovalsOneByOne(t *testing.T) {
	h := newHarness(t, guardConfig(100), stratixtest.Options{})
	h.uploadAll("keep", 1) // the folder is not emptied: the budget is what holds
	paths := h.uploadAll("gone", 150)
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		h.removed(p)
		time.Sleep(10 * time.Millisecond) // the rm's pace: the scenario, not a wait for the engine
	}
	h.waitFor("150 removals held back", func() bool { return h.eng.Progress().HeldBack == 150 })
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("removals one by one past --max-delete: %d traces deleted, want 0", len(d))
	}
	checkStillUploaded(t, h, paths)
	rep, err := h.eng.Reconcile(context.Background(), []string{h.root}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Removed != 150 || rep.DeletesQueued != 150 {
		t.Fatalf("reconcile --confirm: removed %d, deletes queued %d, want 150 each", rep.Removed, rep.DeletesQueued)
	}
	h.waitFor("the 150 confirmed deletes", func() bool { return len(h.srv.Deleted()) == 150 })
	h.waitFor("nothing held back after the confirm", func() bool { return h.eng.Progress().HeldBack == 0 })
}

// Rule 6: a folder emptied through events (not a rescan) is held like a
// rescan that finds it empty.
func TestGuardRootEmptiedByEvents(t *testing.T) {
	h := newHarness(t, guardConfig(100), stratixtest.Options{})
	paths := h.uploadAll("d", 5)
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		h.removed(p)
	}
	h.waitFor("the 5 removals held back", func() bool { return h.eng.Progress().HeldBack == 5 })
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("folder emptied by events: %d traces deleted, want 0", len(d))
	}
	checkStillUploaded(t, h, paths)
}

// Rules 5 and 6: a renamed folder (mv incoming done) of more files than
// --max-delete is a rename: nothing held back, deleted or uploaded.
func TestGuardRenamedFolderIsNotHeld(t *testing.T) {
	h := newHarness(t, guardConfig(5), stratixtest.Options{})
	old := h.uploadAll("incoming", 12)
	presigns := h.srv.Calls(stratixtest.EndpointPresign)
	if err := os.Rename(filepath.Join(h.root, "incoming"), filepath.Join(h.root, "done")); err != nil {
		t.Fatal(err)
	}
	var renamed []string
	for _, p := range old {
		np := filepath.Join(h.root, "done", filepath.Base(p))
		renamed = append(renamed, np)
		h.ready(np)
	}
	h.removed(filepath.Join(h.root, "incoming"))
	for _, p := range old {
		h.waitState(p, store.StateRemoved)
	}
	for _, p := range renamed {
		h.waitState(p, store.StateUploaded)
	}
	h.idle()
	if n := h.eng.Progress().HeldBack; n != 0 {
		t.Fatalf("renamed folder: %d removals held back, want 0", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("renamed folder: %d traces deleted, want 0", len(d))
	}
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != presigns {
		t.Fatalf("renamed folder: %d presigns after the rename, want 0", n-presigns)
	}
	if ds, _ := h.db.Deletes(); len(ds) != 0 {
		t.Fatalf("renamed folder: %d deletes queued, want 0", len(ds))
	}
}

// Rule 6: after a restart with the folder on another device than its
// records (an unmounted disk), nothing is deleted and new files there are
// not recorded, across rescans, until reconcile --confirm.
func TestGuardDeviceMismatchOnRestart(t *testing.T) {
	h := newHarness(t, guardConfig(100), stratixtest.Options{})
	paths := h.uploadAll("d", 3)
	h.stop()
	h.openStore()
	dev := h.rootDev()
	// The records were made on another disk, mounted where the folder is.
	if err := h.db.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range paths {
			rec, err := tx.GetPath(p)
			if err != nil {
				return err
			}
			rec.Dev = dev + 1
			if err := tx.PutPath(rec); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	fresh := h.write("new.json", traceA)
	h.ready(fresh)
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: dev})
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: dev})
	// A file of another folder: once it is uploaded, the events before it
	// have been handled.
	other := t.TempDir()
	marker := filepath.Join(other, "marker.json")
	if err := os.WriteFile(marker, []byte(traceB), 0o644); err != nil {
		t.Fatal(err)
	}
	h.send(watcher.Event{Kind: watcher.Ready, Root: other, Path: marker, Stat: statOf(t, marker)})
	h.waitState(marker, store.StateUploaded)
	h.waitFor("the 3 gone files held back", func() bool { return h.eng.Progress().HeldBack == 3 })
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("folder on another device: %d traces deleted, want 0", len(d))
	}
	if _, err := h.db.GetPath(fresh); err == nil {
		t.Fatalf("folder on another device: its new file %s was recorded, want it parked", fresh)
	}
	checkStillUploaded(t, h, paths)
	rep, err := h.eng.Reconcile(context.Background(), []string{h.root}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Removed != 3 {
		t.Fatalf("reconcile --confirm: removed %d, want 3", rep.Removed)
	}
	h.waitState(fresh, store.StateUploaded)
	h.waitFor("the 3 confirmed deletes", func() bool { return len(h.srv.Deleted()) == 3 })
	h.waitFor("nothing held back after the confirm", func() bool { return h.eng.Progress().HeldBack == 0 })
}

// Rule 6: the budget survives a restart: removals that deleted traces
// before it still count within the window.
func TestGuardBudgetSurvivesRestart(t *testing.T) {
	cfg := deleteConfig()
	cfg.MaxDelete = 3
	h := newHarness(t, cfg, stratixtest.Options{})
	h.uploadAll("keep", 1)
	paths := h.uploadAll("d", 4)
	for _, p := range paths[:2] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		h.removed(p)
	}
	h.waitFor("the first 2 removals' traces deleted", func() bool { return len(h.srv.Deleted()) == 2 })
	h.restart()
	for _, p := range paths[2:] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		h.removed(p)
	}
	h.waitFor("the next 2 removals held back", func() bool { return h.eng.Progress().HeldBack == 2 })
	if d := h.srv.Deleted(); len(d) != 2 {
		t.Fatalf("after a restart, 4 removals with --max-delete 3: %d traces deleted, want the first 2 only", len(d))
	}
}

// checkStillUploaded checks that held-back paths keep their state: none is
// marked removed.
func checkStillUploaded(t *testing.T, h *harness, paths []string) {
	t.Helper()
	for _, p := range paths {
		if s := h.rec(p).State; s != store.StateUploaded {
			t.Fatalf("%s: %s, want uploaded (held back)", filepath.Base(p), s)
		}
	}
}
