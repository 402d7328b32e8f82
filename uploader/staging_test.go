package uploader_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// createPhase counts the store's create-phase intents (rule 9: a create
// of that content may have run).
func createPhase(t *testing.T, db *store.DB) map[store.Hash]store.Intent {
	t.Helper()
	ins, err := db.Intents()
	if err != nil {
		t.Fatal(err)
	}
	out := map[store.Hash]store.Intent{}
	for _, in := range ins {
		if in.Phase == store.PhaseCreate {
			out[in.Hash] = in
		}
	}
	return out
}

// stagingHarness starts one worker whose presign answers slowly, and queues
// n files: one upload runs, and the next ones are staged (their intents
// written ahead). It returns the paths.
func stagingHarness(t *testing.T, n int) (*harness, []string) {
	cfg := fastConfig()
	cfg.Workers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.SetLatency(stratixtest.EndpointPresign, 300*time.Millisecond)
	paths := h.writeReady(n, "s%d.json", `{"trace_id":"staged-%d"}`)
	// One worker: more than one create-phase intent means uploads were
	// staged ahead of it.
	h.waitFor("intents written ahead of the one worker", func() bool { return len(createPhase(t, h.db)) >= 3 })
	// Every file decided: a test's rewrite then never meets a hash under
	// way (which would send the path back to settling, and this harness
	// has no watcher to send its Ready again).
	for _, p := range paths {
		h.waitState(p, store.StatePending)
	}
	return h, paths
}

// TestStagedUploadDroppedBeforeItRuns: files whose uploads were staged
// (create-phase intent written ahead, basename held) and that got new bytes
// before a worker took them: the old bytes are never created, their
// intents go back to the presign phase, and the basenames are released
// once that is durable, so the new bytes under the same names are
// uploaded, once each.
func TestStagedUploadDroppedBeforeItRuns(t *testing.T) {
	h, paths := stagingHarness(t, 6)
	before := createPhase(t, h.db)
	for i, p := range paths {
		h.write(fmt.Sprintf("s%d.json", i), fmt.Sprintf(`{"trace_id":"new-bytes-%d"}`, i))
		h.ready(p)
	}
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	creates := h.srv.CreatesByHash()
	old := 0
	for i := range paths {
		old += creates[hexHash(fmt.Sprintf(`{"trace_id":"staged-%d"}`, i))]
		if n := creates[hexHash(fmt.Sprintf(`{"trace_id":"new-bytes-%d"}`, i))]; n != 1 {
			t.Errorf("new bytes of s%d.json created %d times, want 1", i, n)
		}
	}
	if old > 1 {
		t.Errorf("%d old contents created; only the one upload under way when they changed may be (staged: %d)", old, len(before))
	}
	h.waitFor("no create-phase intent left", func() bool { return len(createPhase(t, h.db)) == 0 })
}

// TestStagedIntentsRevertedOnStop: a graceful stop leaves no create-phase
// intent behind for uploads that were staged but never ran, so the next
// start has nothing to list (rule 9), and it uploads them, once each.
func TestStagedIntentsRevertedOnStop(t *testing.T) {
	h, paths := stagingHarness(t, 5)
	h.stop()
	h.openStore()
	if left := createPhase(t, h.db); len(left) != 0 {
		t.Fatalf("%d create-phase intents left after a graceful stop: %v", len(left), left)
	}
	h.srv.SetLatency(stratixtest.EndpointPresign, 0)
	h.start()
	for _, p := range paths {
		h.ready(p)
	}
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	for hash, n := range h.srv.CreatesByHash() {
		if n != 1 {
			t.Errorf("content %s created %d times", hash, n)
		}
	}
	if n := len(h.srv.CreatesByHash()); n != len(paths) {
		t.Errorf("%d contents created, want %d", n, len(paths))
	}
}
