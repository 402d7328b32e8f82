package uploader_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

func deleteConfig() uploader.Config {
	cfg := fastConfig()
	cfg.DeleteOnRemove = true
	return cfg
}

// Rule 4: with delete-on-remove, a content without paths has its traces
// deleted; a 404 counts as done.
func TestDeleteOnRemove(t *testing.T) {
	h := newHarness(t, deleteConfig(), stratixtest.Options{})
	a := h.write("a.jsonl", "{\"x\":1}\n{\"x\":2}\n")
	b := h.write("b.json", traceB)
	h.ready(a)
	h.ready(b)
	h.waitState(a, store.StateUploaded)
	h.waitState(b, store.StateUploaded)
	ca, _ := h.db.GetContent(h.rec(a).Hash)
	cb, _ := h.db.GetContent(h.rec(b).Hash)
	if len(ca.TraceIDs) != 2 {
		t.Fatalf("a.jsonl: %d traces, want 2", len(ca.TraceIDs))
	}
	// One of a's traces is already gone remotely: its delete answers 404.
	if err := h.api.Delete(context.Background(), ca.TraceIDs[0]); err != nil {
		t.Fatal(err)
	}
	os.Remove(a)
	h.removed(a)
	h.waitFor("a's traces to be deleted", func() bool {
		ds, _ := h.db.Deletes()
		return len(ds) == 0 && h.eng.Progress().DeletesDone == 2
	})
	if got := h.rec(a).State; got != store.StateRemoved {
		t.Fatalf("a.jsonl: state %s, want removed", got)
	}
	if _, err := h.db.GetContent(ca.Hash); err == nil {
		t.Fatalf("a's content still recorded after its deletes")
	}
	deleted := h.srv.Deleted()
	for _, id := range ca.TraceIDs {
		if !slices.Contains(deleted, id) {
			t.Fatalf("trace %s of the removed file not deleted (deleted: %v)", id, deleted)
		}
	}
	for _, id := range cb.TraceIDs {
		if slices.Contains(deleted, id) {
			t.Fatalf("trace %s of b.json (still on disk) deleted", id)
		}
	}
}

// Rule 4: pending deletes survive a restart and are retried with backoff.
func TestDeletesSurviveRestart(t *testing.T) {
	cfg := deleteConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour // the first failure waits past the restart
	h := newHarness(t, cfg, stratixtest.Options{})
	a := h.write("a.json", traceA)
	// A file that stays: a removal that empties its folder is held back.
	b := h.write("b.json", traceB)
	h.ready(a)
	h.ready(b)
	h.waitState(a, store.StateUploaded)
	h.waitState(b, store.StateUploaded)
	c, _ := h.db.GetContent(h.rec(a).Hash)
	h.srv.FailNext(stratixtest.EndpointDelete, 1, http.StatusServiceUnavailable)
	os.Remove(a)
	h.removed(a)
	h.waitFor("the failed delete to be recorded", func() bool {
		ds, _ := h.db.Deletes()
		return len(ds) == 1 && ds[0].Attempts == 1 && !ds[0].NextAttempt.IsZero() && ds[0].LastError != ""
	})
	ds, _ := h.db.Deletes()
	if ds[0].TraceID != c.TraceIDs[0] {
		t.Fatalf("pending delete of %s, want %s", ds[0].TraceID, c.TraceIDs[0])
	}
	if !ds[0].NextAttempt.After(time.Now().Add(30 * time.Minute)) {
		t.Fatalf("next attempt %v: the backoff was not kept", ds[0].NextAttempt)
	}
	// Restart with a short backoff: the stored schedule is in the future,
	// so push it to now through the store, as time passing would.
	h.stop()
	h.openStore()
	if err := h.db.Update(context.Background(), func(tx *store.Tx) error {
		d, err := tx.GetDelete(ds[0].TraceID)
		if err != nil {
			return err
		}
		d.NextAttempt = time.Now().Add(-time.Second)
		return tx.PutDelete(d)
	}); err != nil {
		t.Fatal(err)
	}
	h.cfg = deleteConfig()
	h.start()
	h.waitFor("the delete to be done after the restart", func() bool {
		ds, _ := h.db.Deletes()
		return len(ds) == 0
	})
	if !slices.Contains(h.srv.Deleted(), c.TraceIDs[0]) {
		t.Fatalf("trace %s not deleted after restart", c.TraceIDs[0])
	}
}

// Rule 4: without delete-on-remove nothing remote is deleted, and the same
// bytes coming back are linked, not uploaded again.
func TestRemoveWithoutDeleteKeepsContent(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	os.Remove(a)
	h.removed(a)
	h.waitState(a, store.StateRemoved)
	h.write("a.json", traceA)
	h.ready(a)
	h.waitState(a, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("removed and restored: got %d creates, want 1", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("deleted %v without delete-on-remove", d)
	}
}

// Rule 5: a rename (Ready for the new name, then Removed for the old one)
// uploads nothing and deletes nothing, even with delete-on-remove.
func TestRenameNoUploadNoDelete(t *testing.T) {
	cfg := deleteConfig()
	h := newHarness(t, cfg, stratixtest.Options{})
	old := h.write("in/old.json", traceA)
	h.ready(old)
	h.waitState(old, store.StateUploaded)
	renamed := filepath.Join(h.root, "done", "new-name.json")
	os.MkdirAll(filepath.Dir(renamed), 0o755)
	if err := os.Rename(old, renamed); err != nil {
		t.Fatal(err)
	}
	h.ready(renamed)
	h.removed(old)
	h.waitState(old, store.StateRemoved)
	h.waitState(renamed, store.StateUploaded)
	// Give any (wrong) delete a chance to show: wait for the engine to go idle.
	h.idle()
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != 1 {
		t.Fatalf("rename: got %d presigns, want 1 (the first upload only)", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("rename deleted traces %v", d)
	}
	if ds, _ := h.db.Deletes(); len(ds) != 0 {
		t.Fatalf("rename queued deletes %v", ds)
	}
}

// Rule 6: each guard cell holds back every removal and every delete.
func TestMassDeleteGuard(t *testing.T) {
	type setup func(h *harness, paths []string)
	removeAll := func(h *harness, paths []string) {
		for _, p := range paths {
			os.Remove(p)
		}
	}
	tests := []struct {
		name  string
		files int
		max   int
		act   setup
	}{
		{"root gone", 3, 100, func(h *harness, paths []string) {
			removeAll(h, paths)
			h.send(watcher.Event{Kind: watcher.RootGone, Root: h.root, Reason: "root marker .stfolder missing"})
			for _, p := range paths {
				h.removed(p)
			}
		}},
		{"scan with I/O errors", 3, 100, func(h *harness, paths []string) {
			removeAll(h, paths)
			h.scanDone(watcher.ScanSummary{Files: 1, Errors: 1, FirstErr: "open sub: permission denied", RootDev: h.rootDev()})
		}},
		{"root on another device", 3, 100, func(h *harness, paths []string) {
			removeAll(h, paths)
			h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev() + 1})
		}},
		{"root empty", 3, 100, func(h *harness, paths []string) {
			removeAll(h, paths)
			h.scanDone(watcher.ScanSummary{Files: 0, RootDev: h.rootDev()})
		}},
		{"rescan over max-delete", 5, 3, func(h *harness, paths []string) {
			removeAll(h, paths[:4])
			h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev()})
		}},
		{"directory removal over max-delete", 5, 3, func(h *harness, paths []string) {
			os.RemoveAll(filepath.Join(h.root, "d"))
			h.removed(filepath.Join(h.root, "d"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := deleteConfig()
			cfg.MaxDelete = tt.max
			h := newHarness(t, cfg, stratixtest.Options{})
			var paths []string
			for i := range tt.files {
				p := h.write(fmt.Sprintf("d/f%d.json", i), fmt.Sprintf(`{"n": %d}`, i))
				paths = append(paths, p)
				h.ready(p)
			}
			for _, p := range paths {
				h.waitState(p, store.StateUploaded)
			}
			tt.act(h, paths)
			h.waitFor("the removal to be held back", func() bool { return h.eng.Progress().HeldBack > 0 })
			h.idle()
			for _, p := range paths {
				if s := h.rec(p).State; s != store.StateUploaded {
					t.Fatalf("%s: state %s, want uploaded (removal held back)", filepath.Base(p), s)
				}
			}
			if d := h.srv.Deleted(); len(d) != 0 {
				t.Fatalf("guard let deletes through: %v", d)
			}
			// reconcile lists them, and with confirm acts.
			rep, err := h.eng.Reconcile(context.Background(), []string{h.root}, false)
			if err != nil {
				t.Fatal(err)
			}
			gone := 0
			for _, p := range paths {
				if _, err := os.Lstat(p); err != nil {
					gone++
				}
			}
			if len(rep.Roots) != 1 || len(rep.Roots[0].Gone) != gone || rep.Removed != 0 {
				t.Fatalf("reconcile without confirm: %+v, want %d gone, none removed", rep, gone)
			}
			rep, err = h.eng.Reconcile(context.Background(), []string{h.root}, true)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Removed != gone || rep.DeletesQueued != gone {
				t.Fatalf("reconcile --confirm: removed %d, deletes %d, want %d each", rep.Removed, rep.DeletesQueued, gone)
			}
			h.waitFor("the confirmed deletes", func() bool { return len(h.srv.Deleted()) == gone })
		})
	}
}

// Rule 6, the other side: a clean rescan finds removals the events missed.
func TestScanFindsMissedRemovals(t *testing.T) {
	h := newHarness(t, deleteConfig(), stratixtest.Options{})
	a := h.write("a.json", traceA)
	b := h.write("b.json", traceB)
	h.ready(a)
	h.ready(b)
	h.waitState(a, store.StateUploaded)
	h.waitState(b, store.StateUploaded)
	os.Remove(a)
	h.scanDone(watcher.ScanSummary{Files: 1, RootDev: h.rootDev()})
	h.waitState(a, store.StateRemoved)
	h.waitFor("a's trace to be deleted", func() bool { return len(h.srv.Deleted()) == 1 })
	if s := h.rec(b).State; s != store.StateUploaded {
		t.Fatalf("b.json: %s, want uploaded", s)
	}
}

// Rule 7: a file that changes while it streams is not created; it goes
// back to settling, and its new bytes are uploaded afterwards.
func TestChangedDuringUploadNotCreated(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	first := `{"version": 1, "payload": "aaaaaaaa"}`
	second := `{"version": 2, "payload": "bbbbbbbb"}` // same size, other bytes
	p := h.write("t.json", first)
	// The file is rewritten after it was hashed, before its bytes are read
	// for the PUT.
	h.hooks.once(&h.hooks.presign, func() {
		if err := os.WriteFile(p, []byte(second), 0o644); err != nil {
			t.Error(err)
		}
	})
	h.ready(p)
	h.waitFor("the path to go back to settling", func() bool { return h.rs.has(p) })
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("changed mid-upload: got %d creates, want 0", n)
	}
	h.ready(p) // the watcher's Ready after settling again
	h.waitFor("the new bytes to be uploaded", func() bool {
		r := h.rec(p)
		return r.State == store.StateUploaded && r.Hash.String() == hexHash(second)
	})
	creates := h.srv.CreatesByHash()
	if creates[hexHash(first)] != 0 || creates[hexHash(second)] != 1 {
		t.Fatalf("creates by hash %v: want only the second content, once", creates)
	}
}

// Rule 8: one basename in several folders is never between presign and
// create twice at once, and each content is created once.
func TestSameBasenameNeverInFlightTogether(t *testing.T) {
	cfg := fastConfig()
	cfg.RemoteName = uploader.RemoteNameBasename
	cfg.Workers = 8
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.SetLatency(stratixtest.EndpointCreate, 5*time.Millisecond)
	var paths []string
	for i := range 6 {
		for _, name := range []string{"trace.json", "run.jsonl"} {
			data := fmt.Sprintf(`{"folder": %d}`, i)
			if strings.HasSuffix(name, ".jsonl") {
				data += "\n"
			}
			paths = append(paths, h.write(fmt.Sprintf("host%d/%s", i, name), data))
		}
	}
	for _, p := range paths {
		h.ready(p)
	}
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	if n := h.srv.MaxInflightPerBasename(); n != 1 {
		t.Fatalf("max uploads of one basename between presign and create: %d, want 1", n)
	}
	if got := h.srv.CreatesByFilename(); got["trace.json"] != 6 || got["run.jsonl"] != 6 {
		t.Fatalf("creates by filename %v, want 6 each", got)
	}
	for hash, n := range h.srv.CreatesByHash() {
		if n != 1 {
			t.Fatalf("content %s created %d times", hash, n)
		}
	}
}

// Rule 5 with a backlog: the renamed file waits in the hash queue behind
// other files when the old name's removal arrives. The orphaned content
// must wait for it (a queued path of the same size may be the same bytes),
// not be deleted and then uploaded again.
func TestRenameQueuedBehindBacklogNoUploadNoDelete(t *testing.T) {
	cfg := deleteConfig()
	cfg.HashWorkers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	old := h.write("old.json", traceA)
	h.ready(old)
	h.waitState(old, store.StateUploaded)
	// A backlog for the single hash worker: 1 MiB files (not traceA's size).
	filler := "[" + strings.Repeat(`{"k":"`+strings.Repeat("x", 1000)+`"},`, 1000) + `{}]`
	var backlog []string
	for i := range 24 {
		backlog = append(backlog, h.write(fmt.Sprintf("backlog/%02d.json", i), filler))
	}
	renamed := filepath.Join(h.root, "new-name.json")
	if err := os.Rename(old, renamed); err != nil {
		t.Fatal(err)
	}
	for _, p := range backlog {
		h.ready(p)
	}
	h.ready(renamed)
	h.removed(old)
	h.waitState(renamed, store.StateUploaded)
	h.idle()
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("rename behind a hash backlog: %d creates of its content, want 1", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("rename behind a hash backlog deleted traces %v", d)
	}
}
