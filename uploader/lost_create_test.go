package uploader_test

import (
	"os"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// A file removed while its lost create is being resolved (rule 9) still has
// its traces deleted (rule 4). Recovery adopts the traces after the removal
// was recorded, so the content is recorded with no live path, and the
// engine must orphan it then: the removal itself had no content to orphan.
func TestRemovedWhileLostCreateResolvesTracesDeleted(t *testing.T) {
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

// A file rewritten before its lost create was resolved: while the daemon
// runs (not only at its next start), the old bytes' create is resolved by
// listing (rule 9) and, with delete-on-remove, their traces deleted; the
// new bytes are uploaded once.
func TestRewrittenBeforeLostCreateResolvedOldTracesDeleted(t *testing.T) {
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
