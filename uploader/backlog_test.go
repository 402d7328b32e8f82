package uploader_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// writeReady writes n files named nameFmt with bodies bodyFmt (each given
// the file's number) and reports each ready; it returns their paths.
func (h *harness) writeReady(n int, nameFmt, bodyFmt string) []string {
	h.t.Helper()
	var paths []string
	for i := range n {
		paths = append(paths, h.write(fmt.Sprintf(nameFmt, i), fmt.Sprintf(bodyFmt, i)))
	}
	for _, p := range paths {
		h.ready(p)
	}
	return paths
}

// TestBacklogHashedOnlyAsUploadsDrain: with MaxUploadJobs contents waiting
// for an upload, the engine hashes no more files; the rest wait in line
// unhashed (a small note each, not an upload job), so a backfill of a large
// archive does not hold the whole archive in memory as jobs. Every file is
// still uploaded, once.
func TestBacklogHashedOnlyAsUploadsDrain(t *testing.T) {
	const files, maxJobs = 40, 5
	cfg := fastConfig()
	cfg.Workers = 2
	cfg.MaxUploadJobs = maxJobs
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.SetLatency(stratixtest.EndpointCreate, 20*time.Millisecond)
	paths := h.writeReady(files, "f%02d.json", `{"trace_id":"backlog-%d"}`)
	heldBack := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := h.eng.Progress()
		if jobs := p.Queued + p.InFlight; jobs > maxJobs {
			t.Fatalf("%d uploads queued or in flight, more than MaxUploadJobs %d (progress %+v)", jobs, maxJobs, p)
		}
		// Hashing is fast: without the limit every file is hashed long
		// before the first upload is done.
		if p.Hashing > 2 && p.Uploaded > 0 {
			heldBack = true
		}
		if p.Uploaded == files {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all uploaded within 30s: %+v", p)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !heldBack {
		t.Error("never saw files waiting unhashed once uploads were done")
	}
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	for hash, n := range h.srv.CreatesByHash() {
		if n != 1 {
			t.Errorf("content %s created %d times", hash, n)
		}
	}
	if n := len(h.srv.CreatesByHash()); n != files {
		t.Errorf("%d contents created, want %d", n, files)
	}
}
