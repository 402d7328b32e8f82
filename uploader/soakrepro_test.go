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

// Found by scripts/soak (seed 1 and seed 7, `scripts/soak -duration 2m
// -seed 1`): every periodic rescan re-uploads the contents renamed in the
// second or so before it ended. The ScanDone of a rescan removes every
// tracked path lstat says is gone at once (the burst guard of the time, in
// uploader/removal.go), without the watcher's remove grace; a file renamed
// just before is then still settling under its new name, so no Ready for
// it has reached the engine, orphanBusy sees nothing of that size being
// hashed, and with DeleteDelay 0 (the daemon's setting then) the content's
// traces were deleted at once. One settle later the new name is Ready, its
// bytes are unknown, and they are uploaded again: a rename that uploaded
// and deleted, against rule 5 (2 creates, 1 delete of the same content).
//
// The sequence is the watcher's when a rescan ends between a rename and
// the new name's settle: ScanDone (the old name is gone, the new one is
// settling), then Ready(new) one settle after the rename, then Removed(old)
// once the remove grace (2*settle+1s) has passed. The daemon now gives
// orphans a DeleteDelay of one remove grace (watcher.DefaultRemoveGrace),
// so the new name is linked before the delete is re-checked; with
// DeleteDelay 0 this test fails (2 creates, 1 delete).
func TestSoakReproRescanDuringRename(t *testing.T) {
	cfg := deleteConfig()
	// The daemon's setting (cmd/tracesync): orphans wait one remove grace.
	cfg.DeleteDelay = watcher.DefaultRemoveGrace(time.Second)
	h := newHarness(t, cfg, stratixtest.Options{})
	old := h.write("trace-000942.json", traceA)
	h.ready(old)
	h.waitState(old, store.StateUploaded)

	renamed := filepath.Join(h.root, "trace-001003.json")
	if err := os.Rename(old, renamed); err != nil {
		t.Fatal(err)
	}
	// The rescan ends: it saw one file (the new name, handed to the settler).
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev()})
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
	if n := len(h.srv.Traces()); n != 1 {
		t.Errorf("renamed during a rescan: got %d live traces, want 1", n)
	}
}

// Found by scripts/soak (`scripts/soak -seed 7 -duration 25m` at e24cc94:
// 2 contents undeleted, c0010835 and c0015672, both files deleted a few
// seconds after they were written). Each one's create answer was cut by the
// proxy, the file was deleted (its path marked removed) while the upload
// waited to resolve that create (rule 9), and then recovery adopted the
// traces: recordOp (uploader/ops.go) records the content even though no
// live path refers to it any more, and nothing orphans it, so its traces
// stayed on the server for good (rule 4: with delete-on-remove, a content
// without paths has its traces deleted). The removal itself orphaned
// nothing: the content was not recorded yet. Fixed: recordOp reports a
// content no path holds, and the loop orphans it.
func TestSoakReproRemovedWhileResolvingLostCreate(t *testing.T) {
	cfg := deleteConfig()
	cfg.DeleteDelay = watcher.DefaultRemoveGrace(time.Second) // the daemon's setting
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	// Recovery lists the traces; hold that list long enough for the file's
	// removal to be recorded first (the soak's backoff and faults did): a
	// removal is recorded once it has gathered for DeleteDelay.
	h.srv.SetLatency(stratixtest.EndpointList, 3*time.Second+cfg.DeleteDelay)
	p := h.write("trace-019655.json", traceA)
	h.ready(p)
	h.waitFor("the recovery's list to start after the lost create", func() bool {
		return h.srv.Calls(stratixtest.EndpointCreate) == 1 && h.srv.Calls(stratixtest.EndpointList) >= 1
	})
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	h.removed(p)
	h.waitState(p, store.StateRemoved)
	if _, err := h.db.GetContent(h.rec(p).Hash); err == nil {
		t.Fatalf("setup: the content was recorded before its file's removal; the list latency did not hold recovery back")
	}
	h.waitFor("the adopted traces of the removed file to be deleted (rule 4)", func() bool {
		return len(h.srv.Deleted()) == 1 && len(h.srv.Traces()) == 0
	})
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 1 {
		t.Errorf("got %d creates, want 1 (rule 9: the lost create is adopted, not repeated)", n)
	}
}

// Found by the 10-minute soak at 69d429f (c0002149): a create whose answer
// was lost, then the file rewritten before the next attempt resolved it.
// The job for the old bytes lost its last path and was dropped with its
// intent kept, so its traces were found and deleted only at the next start.
// While the daemon runs, the old bytes' create must be resolved (listing,
// rule 9) and, with delete-on-remove, its traces deleted; the new bytes are
// uploaded once.
func TestSoakReproRewrittenWhileLostCreateUnresolved(t *testing.T) {
	cfg := deleteConfig()
	// The retry after the lost create waits long enough for the rewrite.
	cfg.InitialBackoff, cfg.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	p := h.write("a.json", traceA)
	h.ready(p)
	h.waitFor("the lost create", func() bool { return h.srv.CreatesByHash()[hexHash(traceA)] == 1 })
	h.write("a.json", traceB) // rewritten: the old bytes have no path left
	h.ready(p)
	h.waitFor("the new bytes uploaded", func() bool {
		r := h.rec(p)
		return r.State == store.StateUploaded && r.Hash.String() == hexHash(traceB)
	})
	h.waitFor("the old bytes' trace deleted (one live trace, the new bytes')", func() bool { return len(h.srv.Traces()) == 1 })
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("old bytes created %d times, want 1", n)
	}
	if n := h.srv.CreatesByHash()[hexHash(traceB)]; n != 1 {
		t.Fatalf("new bytes created %d times, want 1", n)
	}
	if ins, _ := h.db.Intents(); len(ins) != 0 {
		t.Fatalf("intents left: %v", ins)
	}
}
