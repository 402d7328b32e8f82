package uploader_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

func gone(p string) bool {
	_, err := os.Lstat(p)
	return errors.Is(err, os.ErrNotExist)
}

func (h *harness) readyGrowing(p string) {
	h.t.Helper()
	h.send(watcher.Event{Kind: watcher.Ready, Root: h.root, Path: p, Stat: statOf(h.t, p), Growing: true})
}

// Rule 14: an uploaded file and its linked duplicate are deleted once
// recorded; a quarantined, an incomplete and an empty file stay; nothing
// is deleted remotely.
func TestAfterUploadDelete(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadDelete
	h := newHarness(t, cfg, stratixtest.Options{})
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitFor("a.json deleted after upload", func() bool { return gone(a) })
	// The removed record keeps its hash: the state's prune keeps a content
	// while a record of it is retained, so the same bytes dropped again
	// are linked, not uploaded again.
	if rec := h.waitState(a, store.StateRemoved); rec.Hash.String() != hexHash(traceA) {
		t.Fatalf("a.json: removed record's hash %s, want %s", rec.Hash, hexHash(traceA))
	}
	if c, err := h.db.GetContent(sha256.Sum256([]byte(traceA))); err != nil || len(c.TraceIDs) != 1 {
		t.Fatalf("a.json's content record after the delete: %+v, %v; want kept with its trace", c, err)
	}

	dup := h.write("sub/dup.json", traceA)
	bad := h.write("bad.json", `{"a": nope}`)
	empty := h.write("empty.json", "")
	cut := h.write("cut.jsonl", "{\"a\":1}\n{\"b\":")
	for _, p := range []string{dup, bad, empty, cut} {
		h.ready(p)
	}
	h.waitFor("the linked duplicate deleted", func() bool { return gone(dup) })
	h.waitState(bad, store.StateQuarantined)
	h.waitState(empty, store.StateSkipped)
	h.waitState(cut, store.StateUploaded) // its complete line; the last is cut
	h.idle()
	for _, p := range []string{bad, empty, cut} {
		if gone(p) {
			t.Fatalf("%s was deleted after upload; want it kept (quarantined, skipped or with bytes unsent)", filepath.Base(p))
		}
	}
	// The watcher's removals of the deleted files are not a user's removal.
	h.removed(a)
	h.removed(dup)
	h.idle()
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("traceA: got %d creates, want 1", n)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("remote deletes %v after deleting local files after upload; want none", d)
	}
	h.waitFor("progress to count 2 deleted", func() bool { return h.eng.Progress().Deleted == 2 })
}

// The same bytes dropped again, under any name, after the first file was
// deleted and the state pruned: linked (no upload) and deleted too.
func TestAfterUploadDeleteSameBytesAgain(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadDelete
	h := newHarness(t, cfg, stratixtest.Options{})
	for i := range 3 {
		if _, err := h.db.Prune(context.Background(), time.Hour); err != nil {
			t.Fatalf("prune: %v", err)
		}
		p := h.write(fmt.Sprintf("drop%d.json", i), traceA)
		h.ready(p)
		h.waitFor("a.json deleted after upload", func() bool { return gone(p) })
		h.waitState(p, store.StateRemoved)
		if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
			t.Fatalf("drop %d: got %d creates, want 1", i+1, n)
		}
	}
}

// Archive moves a file under the archive dir at its path relative to its
// root, and never overwrites an archived file of the same name.
func TestAfterUploadArchive(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadArchive
	cfg.ArchiveDir = t.TempDir()
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("sub/x.json", traceA)
	h.ready(p)
	want := filepath.Join(cfg.ArchiveDir, "sub", "x.json")
	h.waitFor("sub/x.json archived", func() bool { return gone(p) })
	if b, err := os.ReadFile(want); err != nil || string(b) != traceA {
		t.Fatalf("archived file %s: %q, %v; want the original bytes", want, b, err)
	}
	h.waitState(p, store.StateRemoved)
	p = h.write("sub/x.json", traceB)
	h.ready(p)
	second := filepath.Join(cfg.ArchiveDir, "sub", "x.1.json")
	h.waitFor("the second sub/x.json archived beside the first", func() bool { return gone(p) })
	if b, err := os.ReadFile(second); err != nil || string(b) != traceB {
		t.Fatalf("second archived file %s: %q, %v; want traceB", second, b, err)
	}
	if b, _ := os.ReadFile(want); string(b) != traceA {
		t.Fatalf("the first archived file was overwritten: %q", b)
	}
	h.waitFor("progress to count 2 archived", func() bool { return h.eng.Progress().Archived == 2 })
}

// A .jsonl still being written is not deleted while it grows; once quiet
// with every line sent, it is.
func TestAfterUploadGrowingJSONL(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadDelete
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("g.jsonl", "{\"n\":1}\n")
	h.readyGrowing(p)
	h.waitState(p, store.StateUploaded)
	h.idle()
	if gone(p) {
		t.Fatalf("g.jsonl deleted while its writer was still writing it")
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{\"n\":2}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.readyGrowing(p)
	h.waitFor("the second segment recorded", func() bool { return h.rec(p).SegEnd() == 16 })
	h.idle()
	if gone(p) {
		t.Fatalf("g.jsonl deleted while its writer was still writing it")
	}
	h.ready(p) // quiet now
	h.waitFor("g.jsonl deleted once quiet", func() bool { return gone(p) })
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 2 {
		t.Fatalf("g.jsonl: got %d creates, want 2 (one per segment)", n)
	}
}

// A file recorded uploaded but still there at start (the engine stopped
// before deleting it, or after-upload was turned on) is not vouched for by
// the restart fast path: it is read again and deleted.
func TestAfterUploadFinishedAtRestart(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("a.json", traceA)
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.idle()
	if !h.eng.Known(p, statOf(t, p)) {
		t.Fatalf("keep: an uploaded unchanged file is not Known")
	}
	h.cfg.AfterUpload = uploader.AfterUploadDelete
	h.restart()
	if h.eng.Known(p, statOf(t, p)) {
		t.Fatalf("after-upload delete: an uploaded file still on disk is Known, so the restart would never delete it")
	}
	h.ready(p)
	h.waitFor("a.json deleted after the restart", func() bool { return gone(p) })
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 1 {
		t.Fatalf("got %d creates, want 1", n)
	}
}

// After-upload cannot be combined with delete-on-remove; archive needs an
// absolute archive directory.
func TestAfterUploadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*uploader.Config)
	}{
		{"delete with delete-on-remove", func(c *uploader.Config) { c.AfterUpload, c.DeleteOnRemove = uploader.AfterUploadDelete, true }},
		{"archive with delete-on-remove", func(c *uploader.Config) {
			c.AfterUpload, c.ArchiveDir, c.DeleteOnRemove = uploader.AfterUploadArchive, "/archive", true
		}},
		{"archive without a dir", func(c *uploader.Config) { c.AfterUpload = uploader.AfterUploadArchive }},
		{"negative max age", func(c *uploader.Config) { c.MaxAge = -time.Hour }},
	} {
		cfg := fastConfig()
		tc.mod(&cfg)
		if _, err := uploader.New(cfg, &store.DB{}, &hookedAPI{}); !errors.Is(err, uploader.ErrConfig) {
			t.Errorf("%s: New returned %v, want ErrConfig", tc.name, err)
		}
	}
}

func TestPrepareArchiveDir(t *testing.T) {
	root := t.TempDir()
	if _, err := uploader.PrepareArchiveDir(filepath.Join(root, "archive"), []string{root}); err == nil || !strings.Contains(err.Error(), "inside the synced folder") {
		t.Fatalf("archive dir inside a root: got %v, want refused", err)
	}
	if _, err := uploader.PrepareArchiveDir(filepath.Dir(root), []string{root}); err == nil || !strings.Contains(err.Error(), "holds the synced folder") {
		t.Fatalf("archive dir above a root: got %v, want refused", err)
	}
	dir := filepath.Join(t.TempDir(), "new", "archive")
	got, err := uploader.PrepareArchiveDir(dir, []string{root})
	if err != nil {
		t.Fatalf("archive dir beside the root: %v", err)
	}
	if fi, err := os.Stat(got); err != nil || !fi.IsDir() {
		t.Fatalf("archive dir %s not created: %v", got, err)
	}
}

// --max-age: an old file is recorded skipped with the reason, unread; the
// restart fast path keeps it skipped; touched, it is uploaded; a file
// already uploaded is not forgotten for its age.
func TestMaxAge(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxAge = 30 * 24 * time.Hour
	cfg.Hints.MaxAge = "--max-age"
	h := newHarness(t, cfg, stratixtest.Options{})
	oldTime := time.Now().Add(-60 * 24 * time.Hour)

	fresh := h.write("fresh.json", traceB)
	h.ready(fresh)
	h.waitState(fresh, store.StateUploaded)

	p := h.write("old.json", traceA)
	if err := os.Chtimes(p, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	h.ready(p)
	rec := h.waitState(p, store.StateSkipped)
	if !strings.HasPrefix(rec.LastError, "older than --max-age 720h") {
		t.Fatalf("old.json: reason %q, want it to start with \"older than --max-age 720h\"", rec.LastError)
	}
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 0 {
		t.Fatalf("old.json: got %d creates, want 0", n)
	}
	h.waitFor("progress to count 1 too old", func() bool { return h.eng.Progress().TooOld == 1 })
	if !h.eng.Known(p, statOf(t, p)) {
		t.Fatalf("an old file skipped and unchanged is not Known: every restart would report it again")
	}

	// An uploaded file whose mtime is then set back stays uploaded.
	if err := os.Chtimes(fresh, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	h.ready(fresh)
	h.idle()
	if got := h.rec(fresh); got.State != store.StateUploaded {
		t.Fatalf("an uploaded file made old: state %s, want uploaded", got.State)
	}

	// Touched: considered again.
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		t.Fatal(err)
	}
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("old.json touched: got %d creates, want 1", n)
	}
}

// A larger --max-age (or none) after a restart reads the files skipped
// for their age before.
func TestMaxAgeLifted(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxAge = time.Hour
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("old.json", traceA)
	oldTime := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(p, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	h.ready(p)
	h.waitState(p, store.StateSkipped)
	h.cfg.MaxAge = 0
	h.restart()
	if h.eng.Known(p, statOf(t, p)) {
		t.Fatalf("without --max-age, a file skipped for its age is still Known: it would never be uploaded")
	}
	h.ready(p)
	h.waitState(p, store.StateUploaded)
}

// A line appended after the file was read (here: while its create runs)
// keeps it: the record's size no longer matches, so it is not deleted
// until that line is sent too.
func TestAfterUploadAppendedMeanwhileKept(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadDelete
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("a.jsonl", "{\"n\":1}\n")
	h.hooks.once(&h.hooks.create, func() {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.WriteString("{\"n\":2}\n"); err != nil {
			t.Error(err)
		}
	})
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.idle()
	if gone(p) {
		t.Fatalf("a.jsonl deleted with a line appended after it was read, not sent")
	}
	h.ready(p) // the watcher's Ready for the append
	h.waitFor("a.jsonl deleted once its second line is sent", func() bool { return gone(p) })
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 2 {
		t.Fatalf("got %d creates, want 2 (one per segment)", n)
	}
}

// An upload resumed from the store at start: a .json goes once recorded; a
// .jsonl waits for a Ready that says it is quiet (its writer may still hold
// it open), then goes.
func TestAfterUploadResumedAtStart(t *testing.T) {
	cfg := fastConfig()
	cfg.AfterUpload = uploader.AfterUploadDelete
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.FailRate(stratixtest.EndpointPresign, 1, 503)
	j := h.write("a.json", traceA)
	l := h.write("b.jsonl", "{\"n\":1}\n")
	h.ready(j)
	h.ready(l)
	h.waitState(j, store.StateRetrying)
	h.waitState(l, store.StateRetrying)
	h.stop()
	h.srv.FailRate(stratixtest.EndpointPresign, 0, 0)
	h.openStore()
	h.start() // no Ready this run: both are resumed from their records
	h.waitFor("a.json deleted after its resumed upload", func() bool { return gone(j) })
	h.waitFor("b.jsonl uploaded", func() bool { return h.rec(l).State == store.StateUploaded || gone(l) })
	h.idle()
	if gone(l) {
		t.Fatalf("b.jsonl deleted with no Ready this run saying it is quiet")
	}
	h.ready(l)
	h.waitFor("b.jsonl deleted once a Ready says it is quiet", func() bool { return gone(l) })
}
