package uploader_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// A rename that the end of a rescan catches halfway uploads nothing and
// deletes nothing (rule 5). The watcher's events are then: ScanDone (the
// old name is gone, the new one is still settling), Ready(new) one settle
// after the rename, Removed(old) once the remove grace has passed. The
// ScanDone marks the old path removed at once, with no Ready for the new
// name yet, so the content is orphaned; orphans wait one remove grace (the
// engine's default DeleteDelay, watcher.DefaultRemoveGrace), and the new
// name is linked to the content before the delete is checked again. With
// the least wait (a negative DeleteDelay) the content is created twice and
// its traces deleted once.
func TestRenameAcrossRescanEndNoUploadNoDelete(t *testing.T) {
	cfg := deleteConfig()
	// The engine's own default: orphans wait one remove grace.
	cfg.DeleteDelay = 0
	h := newHarness(t, cfg, stratixtest.Options{})
	old := h.write("trace-000942.json", traceA)
	// Another file stays, so the folder is not left empty (which the guard
	// would hold back on its own): the grace alone must keep the rename.
	keep := h.write("trace-000001.json", traceB)
	h.ready(old)
	h.ready(keep)
	h.waitState(old, store.StateUploaded)
	h.waitState(keep, store.StateUploaded)

	renamed := filepath.Join(h.root, "trace-001003.json")
	if err := os.Rename(old, renamed); err != nil {
		t.Fatal(err)
	}
	// The rescan ends: it saw one file (the new name, handed to the settler).
	h.scanDone(watcher.ScanSummary{Files: 2, RootDev: h.rootDev()})
	// The watcher's settle (the daemon's default, 1s) before the new name is
	// Ready: the engine may act on the scan meanwhile, as it does in the soak.
	// This wait is the environment's timing, not an assertion.
	settleEnd := time.Now().Add(time.Second)
	for time.Now().Before(settleEnd) && len(h.srv.Deleted()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	h.ready(renamed)
	h.removed(old) // after the remove grace

	h.waitState(renamed, store.StateUploaded)
	h.waitFor("the engine to settle down", func() bool {
		p := h.eng.Progress()
		return p.Hashing == 0 && p.Queued == 0 && p.InFlight == 0 && p.DeletesPending == 0
	})
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Errorf("renamed during a rescan: got %d creates of its content, want 1 (rule 5: a rename uploads nothing)", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Errorf("renamed during a rescan: got %d traces deleted (%v), want none (rule 5: a rename deletes nothing)", len(d), d)
	}
	if n := len(h.srv.Traces()); n != 2 {
		t.Errorf("renamed during a rescan: got %d live traces, want 2", n)
	}
}

// A full scan tells the engine which files it met (their keys): a tracked
// file it did not meet and that is gone is removed, its traces deleted; one
// it did not meet but that is still on disk (a name excluded since, say) is
// not touched.
func TestScanKeysFindRemovals(t *testing.T) {
	h := newHarness(t, deleteConfig(), stratixtest.Options{})
	stay := h.write("stay.json", traceA)
	gone := h.write("gone.json", traceB)
	hidden := h.write("hidden.json", `{"trace_id":"hidden"}`)
	for _, p := range []string{stay, gone, hidden} {
		h.ready(p)
		h.waitState(p, store.StateUploaded)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev(), Keyed: true, Seen: []uint32{watcher.PathKey(0, stay)}})
	h.waitState(gone, store.StateRemoved)
	h.waitFor("the gone file's trace deleted", func() bool { return len(h.srv.Deleted()) == 1 })
	h.idle()
	if s := h.rec(hidden).State; s != store.StateUploaded {
		t.Errorf("a file the scan did not meet but still on disk: %s, want uploaded (untouched)", s)
	}
	if s := h.rec(stay).State; s != store.StateUploaded {
		t.Errorf("a file the scan met: %s, want uploaded", s)
	}
}
