package uploader_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// With a window of 3 paths, the engine takes no more of the watcher's
// events than that while their uploads are slow: the events (and so the
// watcher's scan) wait, and a folder ten times the window still goes up
// whole. This is the bound that keeps a backfill of a million files from
// holding them all in memory.
func TestPathWindowHoldsTheScanBack(t *testing.T) {
	const window, files = 3, 30
	cfg := fastConfig()
	cfg.Workers = 1
	cfg.PathWindow = window
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.SetLatency(stratixtest.EndpointCreate, 300*time.Millisecond)
	var paths []string
	for i := range files {
		paths = append(paths, h.write(fmt.Sprintf("w%02d.json", i), fmt.Sprintf(`{"trace_id":"w-%d"}`, i)))
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for _, p := range paths {
			h.events <- watcher.Event{Kind: watcher.Ready, Root: h.root, Path: p, Stat: statOf(t, p)}
		}
	}()
	// While the first create is slow, at most a window of paths is taken.
	h.waitFor("the first create to start", func() bool { return h.srv.Calls(stratixtest.EndpointCreate) >= 1 })
	for range 20 {
		p := h.eng.Progress() // one snapshot: a path done since would let a new one in
		if p.FilesDone > 0 {
			break // the window moves on; the bound held up to here
		}
		if p.FilesSeen > window {
			t.Fatalf("the engine took %d paths with a window of %d", p.FilesSeen, window)
		}
		time.Sleep(10 * time.Millisecond) // sampling the bound while the create is slow, not a speed check
	}
	h.srv.SetLatency(stratixtest.EndpointCreate, 0)
	<-sent
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
}
