package watcher

import (
	"container/heap"
	"path/filepath"
	"strings"
	"time"
)

// settler holds every timer of the watcher: files settling, removals in
// their grace period, files sent back by Resettle. It is owned by the event
// goroutine (no mutex) and takes the time as an argument, so tests drive it
// with synthetic events and a fake clock.
type settler struct {
	settle  time.Duration
	timeout time.Duration
	grace   time.Duration
	// lagBudget is how long a .jsonl may keep changing before it is
	// reported Ready as growing; 0: never.
	lagBudget time.Duration

	// stat returns the Stat of a candidate file (errNotWanted when it is
	// not a regular file to report).
	stat func(path string) (Stat, error)
	// writing reports whether the file is open for writing (false when
	// that cannot be known).
	writing func(path string) bool
	// rootOK reports whether a root is healthy now; a removal under an
	// unhealthy root is dropped (the root is reported gone instead).
	rootOK func(root string) bool
	// exists reports whether something is at path (lstat succeeds).
	exists func(path string) bool

	files     map[string]*settling
	removals  map[string]*removal
	resettled map[string]*resettleRecord
	// reported holds the Stat of every path reported Ready and not since
	// removed or confirmed by Known during a scan, so a rescan does not
	// report it again. See pruneReported.
	reported map[string]Stat
	// once: no scan follows the first (Config.Once), so reported stays
	// empty rather than hold a path for every file a backfill reports.
	once   bool
	timers timerHeap
	// removedAt holds when paths were reported Removed, for one grace
	// period: a directory's children due a moment after it (a poll stats
	// them one by one) are covered by its removal.
	removedAt map[string]time.Time
	prunedAt  time.Time // when removedAt was last pruned: at most once a grace
}

type settling struct {
	root      string
	first     time.Time // when this file began settling, or was last reported growing
	grew      bool      // reported growing, with grewStat
	grewStat  Stat
	lastEvent time.Time
	stat      Stat // the first of the two stats: taken at the last event
	due       time.Time
	// checkWriters: ask whether a writer still holds the file open before
	// reporting it. False only while the file has had nothing but a
	// Create: a file renamed into place (the recommended way to drop a
	// file) has no writer left, and one created by open(O_CREAT) and
	// written gets Write events, which set it. An empty file is asked
	// about all the same (fireFile): one created by open(O_CREAT) whose
	// writer has not written yet has had nothing but its Create either.
	checkWriters bool
}

type removal struct {
	root string
	due  time.Time
}

type resettleRecord struct {
	first time.Time // when the engine first sent it back
	last  time.Time // when it last did
}

func newSettler(settle, timeout, grace time.Duration) *settler {
	return &settler{
		settle:    settle,
		timeout:   timeout,
		grace:     grace,
		writing:   func(string) bool { return false },
		rootOK:    func(string) bool { return true },
		exists:    func(p string) bool { _, err := lstat(p); return err == nil },
		files:     map[string]*settling{},
		removals:  map[string]*removal{},
		resettled: map[string]*resettleRecord{},
		reported:  map[string]Stat{},
		removedAt: map[string]time.Time{},
	}
}

// touched records an event for path (created, written, attributes changed,
// moved in, or changed between two polls). st is the stat taken by a scan,
// or nil to stat now. The path is checked again once it has had no event
// for the settle time.
func (s *settler) touched(now time.Time, root, path string, st *Stat) {
	s.event(now, root, path, st, true)
}

// appeared records a Create event for path (created, or moved in): like
// touched, but a file that has had nothing else since is not checked for
// writers (see settling.checkWriters).
func (s *settler) appeared(now time.Time, root, path string) {
	s.event(now, root, path, nil, false)
}

func (s *settler) event(now time.Time, root, path string, st *Stat, written bool) {
	var cur Stat
	if st != nil {
		cur = *st
	} else {
		var err error
		cur, err = s.stat(path)
		if err != nil {
			// Gone already (a Remove follows) or not a file to report.
			return
		}
	}
	if f := s.files[path]; f != nil {
		f.lastEvent = now
		f.stat = cur
		f.checkWriters = f.checkWriters || written
		return
	}
	f := &settling{root: root, first: now, lastEvent: now, stat: cur, due: now.Add(s.settle), checkWriters: written}
	s.files[path] = f
	heap.Push(&s.timers, timer{due: f.due, path: path})
}

// found handles a file a scan met, with the stat the scan took. A file
// already settling, or already reported with these bytes, is left alone.
// A file whose mtime is at least the settle time old has had no write for
// that long: it is checked at once (a second stat), which keeps a scan of
// old files from holding them all in memory.
func (s *settler) found(now time.Time, root, path string, st Stat, emit func(Event)) {
	if _, ok := s.files[path]; ok {
		return
	}
	if prev, ok := s.reported[path]; ok && sameBytes(prev, st) {
		return
	}
	if now.Sub(st.ModTime) >= s.settle {
		if again, err := s.stat(path); err == nil && sameBytes(again, st) && !s.writing(path) {
			s.ready(now, root, path, again, emit)
			return
		}
	}
	s.touched(now, root, path, &st)
}

// removed records that path (a file or a directory) disappeared. It is
// reported Removed if it is still gone after the grace period, unless its
// root is then unhealthy.
func (s *settler) removed(now time.Time, root, path string) {
	delete(s.files, path)
	r := s.removals[path]
	if r == nil {
		r = &removal{root: root}
		s.removals[path] = r
	}
	r.due = now.Add(s.grace)
	heap.Push(&s.timers, timer{due: r.due, path: path, removal: true})
}

// resettle sends path back to settling on the engine's request. Once the
// first request of a run of requests is older than the settle timeout, the
// path is reported Incomplete instead of Ready. A request that comes more
// than the settle timeout after the previous one starts a new run.
func (s *settler) resettle(now time.Time, root, path string) {
	if len(s.resettled) >= 1024 {
		// Forget runs that ended (the consumer stopped sending them back).
		for p, r := range s.resettled {
			if now.Sub(r.last) > s.timeout {
				delete(s.resettled, p)
			}
		}
	}
	rec := s.resettled[path]
	if rec == nil || now.Sub(rec.last) > s.timeout {
		rec = &resettleRecord{first: now}
		s.resettled[path] = rec
	}
	rec.last = now
	delete(s.reported, path)
	st, err := s.stat(path)
	if err != nil {
		return
	}
	if f := s.files[path]; f != nil {
		f.lastEvent = now
		f.stat = st
		f.checkWriters = true
		return
	}
	f := &settling{root: root, first: now, lastEvent: now, stat: st, due: now.Add(s.settle), checkWriters: true}
	s.files[path] = f
	heap.Push(&s.timers, timer{due: f.due, path: path})
}

// next returns when fire should be called next.
func (s *settler) next() (time.Time, bool) {
	if len(s.timers) == 0 {
		return time.Time{}, false
	}
	return s.timers[0].due, true
}

// fire handles every timer due at now.
func (s *settler) fire(now time.Time, emit func(Event)) {
	if now.Sub(s.prunedAt) > s.grace {
		s.prunedAt = now
		for p, at := range s.removedAt {
			if now.Sub(at) > s.grace {
				delete(s.removedAt, p)
			}
		}
	}
	for len(s.timers) > 0 && !s.timers[0].due.After(now) {
		t := heap.Pop(&s.timers).(timer)
		if t.removal {
			s.fireRemoval(now, t, emit)
		} else {
			s.fireFile(now, t, emit)
		}
	}
}

func (s *settler) fireFile(now time.Time, t timer, emit func(Event)) {
	f := s.files[t.path]
	if f == nil || !f.due.Equal(t.due) {
		return // stale timer
	}
	growing := s.lagBudget > 0 && isJSONL(t.path) && !now.Before(f.first.Add(s.lagBudget))
	if quiet := f.lastEvent.Add(s.settle); quiet.After(now) {
		// Events came since this timer was set: wait for quiet, or report
		// a growing .jsonl once its lag budget is spent.
		if growing {
			s.growing(now, t.path, f, emit)
			return
		}
		s.rearm(t.path, f, quiet)
		return
	}
	st, err := s.stat(t.path)
	if err != nil {
		delete(s.files, t.path) // gone (its Remove is handled) or no longer a file
		return
	}
	changed := !sameBytes(st, f.stat)
	if changed || ((f.checkWriters || st.Size == 0) && s.writing(t.path)) {
		// Changed without an event (a missed event, a polled filesystem)
		// or still open by a writer: another settle period. A quiet .jsonl
		// held open by its writer has its complete lines taken meanwhile.
		f.stat = st
		f.lastEvent = now
		f.checkWriters = true
		if growing || (!changed && s.lagBudget > 0 && isJSONL(t.path)) {
			s.growing(now, t.path, f, emit)
			return
		}
		s.rearm(t.path, f, now.Add(s.settle))
		return
	}
	delete(s.files, t.path)
	s.ready(now, f.root, t.path, st, emit)
}

// rearm sets f's timer to at, or sooner when its lag budget ends first.
func (s *settler) rearm(path string, f *settling, at time.Time) {
	if s.lagBudget > 0 && isJSONL(path) {
		if lag := f.first.Add(s.lagBudget); lag.Before(at) {
			at = lag
		}
	}
	f.due = at
	heap.Push(&s.timers, timer{due: at, path: path})
}

// growing reports a .jsonl that has changed for its lag budget without
// settling: Ready with Growing, unless nothing changed since it was last
// reported. It goes on settling, with a new budget from now.
func (s *settler) growing(now time.Time, path string, f *settling, emit func(Event)) {
	f.first = now
	s.rearm(path, f, f.lastEvent.Add(s.settle))
	st, err := s.stat(path)
	if err != nil {
		return
	}
	if f.grew && sameBytes(f.grewStat, st) {
		return
	}
	// Not remembered as reported: the Ready that comes once the file is
	// quiet must still be sent, for a last line without a newline.
	f.grew, f.grewStat = true, st
	emit(Event{Kind: Ready, Root: f.root, Path: path, Stat: st, Growing: true})
}

// lagBudget is how long a changing .jsonl waits before it is reported
// growing: the lag bound less a settle time (the hash and the upload come
// after it), and at least half the bound.
func lagBudget(maxLag, settle time.Duration) time.Duration {
	if maxLag <= 0 {
		return 0
	}
	return max(maxLag-settle, maxLag/2)
}

// isJSONL reports whether path names a .jsonl, which may be taken while it grows.
func isJSONL(path string) bool { return strings.EqualFold(filepath.Ext(path), ".jsonl") }

// ready reports a settled file: Ready, or Incomplete when the engine has
// been sending it back for longer than the settle timeout.
func (s *settler) ready(now time.Time, root, path string, st Stat, emit func(Event)) {
	if rec := s.resettled[path]; rec != nil {
		if now.Sub(rec.first) >= s.timeout {
			delete(s.resettled, path)
			delete(s.reported, path)
			emit(Event{Kind: Incomplete, Root: root, Path: path, Stat: st,
				Reason: "content still incomplete " + now.Sub(rec.first).Round(time.Second).String() + " after it was first found incomplete (settle timeout " + s.timeout.String() + ")"})
			return
		}
		// Sent back by the engine: report it again even if unchanged.
		s.remember(path, st)
		emit(Event{Kind: Ready, Root: root, Path: path, Stat: st})
		return
	}
	if prev, ok := s.reported[path]; ok && sameBytes(prev, st) {
		return
	}
	s.remember(path, st)
	emit(Event{Kind: Ready, Root: root, Path: path, Stat: st})
}

// maxReported bounds the memory spent on not reporting a file twice. Past
// it the record is cleared: the cost is that the next rescan may report
// again a file the consumer has not recorded yet, which it must accept
// anyway (a Ready is a hint to look, never an order to upload).
const maxReported = 1 << 17

func (s *settler) remember(path string, st Stat) {
	if s.once {
		return
	}
	if len(s.reported) >= maxReported {
		clear(s.reported)
	}
	s.reported[path] = st
}

func (s *settler) fireRemoval(now time.Time, t timer, emit func(Event)) {
	r := s.removals[t.path]
	if r == nil || !r.due.Equal(t.due) {
		return
	}
	delete(s.removals, t.path)
	if s.exists(t.path) {
		return // back (replaced, or moved back): not removed
	}
	if !s.rootOK(r.root) {
		return // the root is reported gone instead: never a flood of removals
	}
	// A directory whose removal is pending, or was just reported, covers
	// this path.
	for d := filepath.Dir(t.path); d != r.root && isUnder(d, r.root); d = filepath.Dir(d) {
		if _, ok := s.removals[d]; ok {
			return
		}
		if _, ok := s.removedAt[d]; ok {
			return
		}
	}
	delete(s.reported, t.path)
	delete(s.resettled, t.path)
	s.removedAt[t.path] = now
	emit(Event{Kind: Removed, Root: r.root, Path: t.path})
}

// pruneReported forgets that path was reported when Known confirms the
// consumer recorded it: from then on Known answers for it.
func (s *settler) pruneReported(path string, st Stat) {
	if prev, ok := s.reported[path]; ok && sameBytes(prev, st) {
		delete(s.reported, path)
	}
}

// dropRoot forgets everything pending under root (the root is gone).
func (s *settler) dropRoot(root string) {
	for p := range s.files {
		if isUnder(p, root) {
			delete(s.files, p)
		}
	}
	for p := range s.removals {
		if isUnder(p, root) {
			delete(s.removals, p)
		}
	}
}

// idle reports whether nothing is settling and no removal is pending.
func (s *settler) idle() bool { return len(s.files) == 0 && len(s.removals) == 0 }

type timer struct {
	due     time.Time
	path    string
	removal bool
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// wakeEarly is how long before a settle timer is due the event loop's Go
// timer fires; onTime sleeps the rest. It covers the Go runtime's lateness:
// an idle process waits for its timers in epoll_wait, whose timeout is in
// whole milliseconds, so a timer ends up to 1 ms late (half of one on
// average, all of it added to every file's latency).
const wakeEarly = time.Millisecond

// preciseEvery bounds how often the event loop sleeps out the end of a
// settle timer (onTime): while files settle a few per millisecond, the
// loop would otherwise spend most of its time asleep, with events
// waiting. Past that rate the timers end as late as the Go runtime makes
// them, which the load hides anyway.
const preciseEvery = 5 * time.Millisecond

// onTime returns at due by now's clock: it sleeps what is left (at most
// wakeEarly, plus a little for a late wake-up) with a precise sleep that
// blocks the event loop, which is cheaper than the runtime's coarse wait:
// events that arrive meanwhile wait in the queue, for less than wakeEarly.
// It reports whether it slept.
func onTime(due time.Time, now func() time.Time) bool {
	d := due.Sub(now())
	if d <= 0 {
		return false
	}
	sleepShort(min(d, 2*wakeEarly))
	return true
}
