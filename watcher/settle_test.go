package watcher

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFS is the settler's view of the disk in unit tests.
type fakeFS struct {
	files   map[string]Stat
	writing map[string]bool
	rootOK  map[string]bool
}

func (f *fakeFS) stat(p string) (Stat, error) {
	st, ok := f.files[p]
	if !ok {
		return Stat{}, &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
	}
	return st, nil
}

// settleHarness drives a settler with synthetic events and a fake clock.
type settleHarness struct {
	t      *testing.T
	now    time.Time
	fs     *fakeFS
	s      *settler
	events []Event
}

const (
	uSettle  = time.Second
	uTimeout = 10 * time.Second
	uGrace   = 3 * time.Second
)

func newHarness(t *testing.T) *settleHarness {
	h := &settleHarness{
		t:   t,
		now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		fs:  &fakeFS{files: map[string]Stat{}, writing: map[string]bool{}, rootOK: map[string]bool{}},
	}
	s := newSettler(uSettle, uTimeout, uGrace)
	s.stat = h.fs.stat
	s.writing = func(p string) bool { return h.fs.writing[p] }
	s.exists = func(p string) bool { _, ok := h.fs.files[p]; return ok }
	s.rootOK = func(r string) bool { ok, set := h.fs.rootOK[r]; return !set || ok }
	h.s = s
	return h
}

var inoSeq uint64

// write makes (or rewrites) a file as of the current fake time.
func (h *settleHarness) write(p string, size int64) {
	st, ok := h.fs.files[p]
	if !ok {
		inoSeq++
		st = Stat{Dev: 1, Ino: inoSeq, Mode: 0o644}
	}
	st.Size = size
	st.ModTime = h.now
	h.fs.files[p] = st
}

// advance moves the clock by d, firing every timer due on the way in order.
func (h *settleHarness) advance(d time.Duration) {
	end := h.now.Add(d)
	for {
		due, ok := h.s.next()
		if !ok || due.After(end) {
			break
		}
		if due.After(h.now) {
			h.now = due
		}
		h.s.fire(h.now, h.emit)
	}
	h.now = end
}

func (h *settleHarness) emit(ev Event) { h.events = append(h.events, ev) }

func (h *settleHarness) count(kind Kind, p string) int { return count(h.events, kind, p) }

func (h *settleHarness) eventsString() string { return dump(h.events) }

const uRoot = "/r"

func TestSettleReadyAfterQuietPeriod(t *testing.T) {
	h := newHarness(t)
	h.write("/r/a.json", 10)
	h.s.touched(h.now, uRoot, "/r/a.json", nil)
	h.advance(uSettle - time.Millisecond)
	if n := h.count(Ready, "/r/a.json"); n != 0 {
		t.Fatalf("Ready before the settle time: %d events", n)
	}
	h.advance(time.Millisecond)
	if n := h.count(Ready, "/r/a.json"); n != 1 {
		t.Fatalf("at the settle time: %d Ready, want 1:\n%s", n, h.eventsString())
	}
	if h.events[0].Stat.Size != 10 || h.events[0].Root != uRoot {
		t.Fatalf("Ready event %+v: want size 10, root %s", h.events[0], uRoot)
	}
	h.advance(time.Hour)
	if n := h.count(Ready, "/r/a.json"); n != 1 {
		t.Fatalf("after an hour: %d Ready, want still 1", n)
	}
}

func TestSettleSlowWriterOneReadyAfterLastWrite(t *testing.T) {
	h := newHarness(t)
	p := "/r/slow.jsonl"
	for i := 1; i <= 10; i++ {
		h.write(p, int64(i*100))
		h.s.touched(h.now, uRoot, p, nil)
		h.advance(uSettle * 9 / 10)
	}
	if n := h.count(Ready, p); n != 0 {
		t.Fatalf("Ready while writes kept coming below the settle time: %d", n)
	}
	lastWrite := h.now.Add(-uSettle * 9 / 10)
	h.advance(uSettle)
	if n := h.count(Ready, p); n != 1 {
		t.Fatalf("slow writer: %d Ready, want 1:\n%s", n, h.eventsString())
	}
	if got := h.events[0].Stat.Size; got != 1000 {
		t.Fatalf("slow writer Ready with size %d, want 1000 (the last write)", got)
	}
	if !h.now.After(lastWrite.Add(uSettle)) && !h.now.Equal(lastWrite.Add(uSettle)) {
		t.Fatalf("Ready at %v, before last write + settle %v", h.now, lastWrite.Add(uSettle))
	}
}

func TestSettleChangeWithoutEventWaitsAgain(t *testing.T) {
	h := newHarness(t)
	p := "/r/nfs.json"
	h.write(p, 1)
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(uSettle / 2)
	h.write(p, 2) // no event: a missed one, or a polled filesystem
	h.advance(uSettle / 2)
	if n := h.count(Ready, p); n != 0 {
		t.Fatalf("Ready although size changed between the two stats")
	}
	h.advance(uSettle)
	if n := h.count(Ready, p); n != 1 || h.events[0].Stat.Size != 2 {
		t.Fatalf("after a second quiet period: %d Ready (want 1) with size %d (want 2)", n, h.events[0].Stat.Size)
	}
}

func TestSettleOpenForWritingWaits(t *testing.T) {
	h := newHarness(t)
	p := "/r/open.json"
	h.write(p, 5)
	h.fs.writing[p] = true
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(5 * uSettle)
	if n := h.count(Ready, p); n != 0 {
		t.Fatalf("Ready while a writer holds the file open")
	}
	h.fs.writing[p] = false
	h.advance(uSettle)
	if n := h.count(Ready, p); n != 1 {
		t.Fatalf("after the writer closed: %d Ready, want 1", n)
	}
}

func TestRemovalAfterGraceOnly(t *testing.T) {
	h := newHarness(t)
	p := "/r/gone.json"
	h.write(p, 1)
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(uSettle)
	delete(h.fs.files, p)
	h.s.removed(h.now, uRoot, p)
	h.advance(uGrace - time.Millisecond)
	if n := h.count(Removed, p); n != 0 {
		t.Fatalf("Removed before the grace period")
	}
	h.advance(time.Millisecond)
	if n := h.count(Removed, p); n != 1 {
		t.Fatalf("after the grace period: %d Removed, want 1", n)
	}
}

func TestRemovedThenRecreatedIsNotRemoved(t *testing.T) {
	h := newHarness(t)
	p := "/r/replaced.json"
	h.write(p, 1)
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(uSettle)
	delete(h.fs.files, p)
	h.s.removed(h.now, uRoot, p)
	h.advance(uSettle / 2)
	h.write(p, 7) // replaced by a rename over it
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(10 * uGrace)
	if n := h.count(Removed, p); n != 0 {
		t.Fatalf("a path that came back within the grace period was reported Removed")
	}
	if n := h.count(Ready, p); n != 2 {
		t.Fatalf("replaced file: %d Ready, want 2 (before and after)", n)
	}
}

func TestRenameReadyBeforeRemoved(t *testing.T) {
	h := newHarness(t)
	oldP, newP := "/r/a/x.json", "/r/b/x.json"
	h.write(oldP, 3)
	h.s.touched(h.now, uRoot, oldP, nil)
	h.advance(uSettle)
	// mv a/x.json b/x.json: Rename of the old name, Create of the new.
	h.fs.files[newP] = h.fs.files[oldP]
	delete(h.fs.files, oldP)
	h.s.removed(h.now, uRoot, oldP)
	h.s.touched(h.now, uRoot, newP, nil)
	h.advance(10 * uGrace)
	var order []string
	for _, ev := range h.events[1:] {
		order = append(order, fmt.Sprintf("%v %s", ev.Kind, ev.Path))
	}
	want := []string{"ready /r/b/x.json", "removed /r/a/x.json"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("rename: events %v, want %v (the new path must reach the consumer first)", order, want)
	}
	if h.events[1].Stat.Ino != h.events[0].Stat.Ino {
		t.Fatalf("rename: the new path's inode %d differs from the old %d", h.events[1].Stat.Ino, h.events[0].Stat.Ino)
	}
}

func TestRemovalsUnderUnhealthyRootDropped(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 100; i++ {
		p := fmt.Sprintf("/r/f%d.json", i)
		h.write(p, 1)
		h.s.touched(h.now, uRoot, p, nil)
	}
	h.advance(uSettle)
	for i := 0; i < 100; i++ {
		p := fmt.Sprintf("/r/f%d.json", i)
		delete(h.fs.files, p)
		h.s.removed(h.now, uRoot, p)
	}
	h.fs.rootOK[uRoot] = false // unmounted, say
	h.advance(10 * uGrace)
	if n := h.count(Removed, ""); n != 0 {
		t.Fatalf("%d Removed events under an unhealthy root, want 0", n)
	}
}

func TestDirectoryRemovalCoversChildren(t *testing.T) {
	h := newHarness(t)
	h.write("/r/d/a.json", 1)
	h.write("/r/d/e/b.json", 1)
	h.s.touched(h.now, uRoot, "/r/d/a.json", nil)
	h.s.touched(h.now, uRoot, "/r/d/e/b.json", nil)
	h.advance(uSettle)
	delete(h.fs.files, "/r/d/a.json")
	delete(h.fs.files, "/r/d/e/b.json")
	// rm -rf: children first, then the directories.
	h.s.removed(h.now, uRoot, "/r/d/a.json")
	h.s.removed(h.now, uRoot, "/r/d/e/b.json")
	h.s.removed(h.now, uRoot, "/r/d/e")
	h.s.removed(h.now, uRoot, "/r/d")
	h.advance(10 * uGrace)
	if n := h.count(Removed, ""); n != 1 || h.count(Removed, "/r/d") != 1 {
		t.Fatalf("rm -rf d: want exactly one Removed for /r/d:\n%s", h.eventsString())
	}
}

func TestResettleIncompleteAfterTimeout(t *testing.T) {
	h := newHarness(t)
	p := "/r/half.json"
	h.write(p, 4)
	h.s.touched(h.now, uRoot, p, nil)
	h.advance(uSettle)
	if h.count(Ready, p) != 1 {
		t.Fatal("first Ready missing")
	}
	first := h.now
	// The engine finds it incomplete every time.
	for h.count(Incomplete, p) == 0 {
		if h.now.Sub(first) > 3*uTimeout {
			t.Fatalf("no Incomplete %v after the first Resettle (timeout %v):\n%s", h.now.Sub(first), uTimeout, h.eventsString())
		}
		h.s.resettle(h.now, uRoot, p)
		h.advance(uSettle)
	}
	inc := h.events[len(h.events)-1]
	if inc.Kind != Incomplete || inc.Reason == "" {
		t.Fatalf("last event %+v, want Incomplete with a reason", inc)
	}
	if el := h.now.Sub(first); el < uTimeout {
		t.Fatalf("Incomplete after %v, before the timeout %v", el, uTimeout)
	}
	readies := h.count(Ready, p)
	if readies < int(uTimeout/uSettle)-1 {
		t.Fatalf("only %d Ready between Resettle calls, want one per settle period", readies)
	}
	// A much later Resettle starts over: Ready, not Incomplete at once.
	h.advance(2 * uTimeout)
	h.s.resettle(h.now, uRoot, p)
	h.advance(uSettle)
	if last := h.events[len(h.events)-1]; last.Kind != Ready {
		t.Fatalf("a Resettle long after the last run: got %v, want Ready", last.Kind)
	}
}

func TestFoundByScan(t *testing.T) {
	h := newHarness(t)
	old := "/r/old.json"
	h.write(old, 5)
	h.now = h.now.Add(time.Hour)
	// An old file found by a scan is checked at once: no timer held.
	h.s.found(h.now, uRoot, old, h.fs.files[old], h.emit)
	if h.count(Ready, old) != 1 || len(h.s.files) != 0 {
		t.Fatalf("old file found by a scan: %d Ready (want 1), %d settling (want 0)", h.count(Ready, old), len(h.s.files))
	}
	// Found again by a later scan, untouched: not reported again.
	h.s.found(h.now, uRoot, old, h.fs.files[old], h.emit)
	if h.count(Ready, old) != 1 {
		t.Fatalf("untouched file reported again by a rescan")
	}
	// A fresh file (mtime within the settle time) settles first.
	fresh := "/r/fresh.json"
	h.write(fresh, 1)
	h.s.found(h.now, uRoot, fresh, h.fs.files[fresh], h.emit)
	if h.count(Ready, fresh) != 0 {
		t.Fatalf("fresh file reported at once")
	}
	h.advance(uSettle)
	if h.count(Ready, fresh) != 1 {
		t.Fatalf("fresh file not Ready after settling")
	}
	// Once Known vouches for a reported file, the watcher forgets it.
	h.s.pruneReported(old, h.fs.files[old])
	if _, ok := h.s.reported[old]; ok {
		t.Fatalf("pruneReported kept %s", old)
	}
}

func TestDropRootForgetsPending(t *testing.T) {
	h := newHarness(t)
	h.write("/r/a.json", 1)
	h.write("/other/b.json", 1)
	h.s.touched(h.now, uRoot, "/r/a.json", nil)
	h.s.touched(h.now, "/other", "/other/b.json", nil)
	h.s.removed(h.now, uRoot, "/r/c.json")
	h.s.dropRoot(uRoot)
	h.advance(10 * uGrace)
	if h.count(Ready, "/r/a.json") != 0 || h.count(Removed, "/r/c.json") != 0 {
		t.Fatalf("events under a dropped root:\n%s", h.eventsString())
	}
	if h.count(Ready, "/other/b.json") != 1 {
		t.Fatalf("other root's file lost:\n%s", h.eventsString())
	}
	if !h.s.idle() {
		t.Fatal("settler not idle after everything fired")
	}
}

func TestSettleWriterCheckOnlyAfterWrites(t *testing.T) {
	h := newHarness(t)
	// Renamed into place: nothing but a Create, so no writer is asked for.
	moved := "/r/moved.json"
	h.write(moved, 5)
	h.fs.writing[moved] = true // e.g. a reader holding it open for writing, never writing
	h.s.appeared(h.now, uRoot, moved)
	h.advance(uSettle)
	if n := h.count(Ready, moved); n != 1 {
		t.Fatalf("file renamed into place: %d Ready, want 1", n)
	}
	// Created, then written in place, writer still holding it: waits.
	inPlace := "/r/inplace.json"
	h.write(inPlace, 0)
	h.s.appeared(h.now, uRoot, inPlace)
	h.write(inPlace, 7)
	h.fs.writing[inPlace] = true
	h.s.touched(h.now, uRoot, inPlace, nil)
	h.advance(3 * uSettle)
	if n := h.count(Ready, inPlace); n != 0 {
		t.Fatalf("file written in place and still open for writing: %d Ready, want 0", n)
	}
	h.fs.writing[inPlace] = false
	h.advance(uSettle)
	if n := h.count(Ready, inPlace); n != 1 {
		t.Fatalf("after its writer closed it: %d Ready, want 1", n)
	}
	// Created and not written yet, its writer stalled past the settle
	// time: nothing but a Create, but empty, so the writer is asked for,
	// and the file is reported once, whole, when the writer is done.
	stalled := "/r/stalled.json"
	h.write(stalled, 0)
	h.fs.writing[stalled] = true
	h.s.appeared(h.now, uRoot, stalled)
	h.advance(3 * uSettle)
	if n := h.count(Ready, stalled); n != 0 {
		t.Fatalf("empty file still open by its writer: %d Ready, want 0", n)
	}
	h.write(stalled, 9)
	h.s.touched(h.now, uRoot, stalled, nil)
	h.fs.writing[stalled] = false
	h.advance(uSettle)
	if n := h.count(Ready, stalled); n != 1 || h.events[len(h.events)-1].Stat.Size != 9 {
		t.Fatalf("stalled writer done: %d Ready (want 1):\n%s", n, h.eventsString())
	}
}

// TestSettleNeverEndsEarly: the event loop's timer is set to wake before a
// settle period ends and sleeps the rest precisely (onTime). A file must
// still never be Ready before a whole settle time has passed since the
// rename that brought it in.
func TestSettleNeverEndsEarly(t *testing.T) {
	root := tempRoot(t)
	const settle = 15 * time.Millisecond
	w := runDirect(t, root, settle, nil)
	for i := range 30 {
		tmp := filepath.Join(root, fmt.Sprintf(".t%d.tmp", i))
		final := filepath.Join(root, fmt.Sprintf("f%d.json", i))
		writeFile(t, tmp, `{"i":1}`)
		start := time.Now()
		if err := os.Rename(tmp, final); err != nil {
			t.Fatal(err)
		}
		for ev := range w.Events() {
			if ev.Kind == Ready && ev.Path == final {
				if got := time.Since(start); got < settle {
					t.Fatalf("rename %d: Ready %v after the rename, before the settle time %v", i, got, settle)
				}
				break
			}
		}
	}
}

func TestOnTimeReturnsAtDueNotBefore(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 700 * time.Microsecond, wakeEarly, 1500 * time.Microsecond} {
		due := time.Now().Add(d)
		onTime(due, time.Now)
		if now := time.Now(); now.Before(due) {
			t.Errorf("onTime(now+%v) returned %v before due", d, due.Sub(now))
		}
	}
}

// While files settle a few per millisecond, the event loop sleeps out the
// end of a settle timer at most once per preciseEvery, so that it is not
// asleep most of the time with events waiting; every file is still Ready,
// none early.
func TestPreciseWakeBounded(t *testing.T) {
	root := tempRoot(t)
	const settle = 15 * time.Millisecond
	var sleeps atomic.Int64
	w := runDirect(t, root, settle, func(w *Watcher) { w.OnPreciseSleep(func() { sleeps.Add(1) }) })
	const n = 300
	renamed := make(map[string]time.Time, n)
	start := time.Now()
	for i := range n {
		tmp := filepath.Join(root, fmt.Sprintf(".t%d.tmp", i))
		final := filepath.Join(root, fmt.Sprintf("f%d.json", i))
		writeFile(t, tmp, `{"i":1}`)
		renamed[final] = time.Now()
		if err := os.Rename(tmp, final); err != nil {
			t.Fatal(err)
		}
	}
	for ev := range w.Events() {
		if ev.Kind != Ready {
			continue
		}
		at, ok := renamed[ev.Path]
		if !ok {
			t.Fatalf("Ready for %s, not dropped", ev.Path)
		}
		if got := time.Since(at); got < settle {
			t.Fatalf("%s Ready %v after its rename, before the settle time", ev.Path, got)
		}
		delete(renamed, ev.Path)
		if len(renamed) == 0 {
			break
		}
	}
	elapsed := time.Since(start)
	if max := int64(elapsed/preciseEvery) + 2; sleeps.Load() > max {
		t.Errorf("%d precise sleeps in %v for %d files; want at most %d (one per %v)", sleeps.Load(), elapsed, n, max, preciseEvery)
	}
	if sleeps.Load() == 0 {
		t.Error("no precise sleep at all")
	}
	t.Logf("%d files in %v: %d precise sleeps", n, elapsed.Round(time.Millisecond), sleeps.Load())
}
