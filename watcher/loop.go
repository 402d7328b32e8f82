package watcher

// loop.go owns the event loop: the one goroutine that holds the settle
// timers, the watched directories and the scans, and turns fsnotify events
// and scan results into Events.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// foundQueue is how many scan results may wait for the event goroutine.
const foundQueue = 256

// loop is the event goroutine's state.
type loop struct {
	w     *Watcher
	cfg   Config
	s     *settler
	roots []*rootState
	fsw   *fsnotify.Watcher // nil when nothing is watched with inotify
	fsq   *fsQueue
	dirs  *watchedDirs
	sc    *scanner

	jobs  []scanJob
	jobCh chan scanJob

	reportedCount  atomic.Int64 // len(s.reported), read by the scanner
	goneDuringFire []*rootState
	okDuringFire   []*rootState // roots checked healthy during the current fire
	rootTicker     *time.Ticker
	scansRunning   int // full scans sent to the scanner and not yet done
}

func (w *Watcher) newLoop() *loop {
	cfg := w.cfg
	l := &loop{
		w:     w,
		cfg:   cfg,
		s:     newSettler(cfg.Settle, cfg.SettleTimeout, cfg.RemoveGrace),
		fsq:   &fsQueue{ready: make(chan struct{}, 1)},
		dirs:  &watchedDirs{set: map[string]struct{}{}},
		jobCh: make(chan scanJob),
	}
	l.s.lagBudget = lagBudget(cfg.MaxLag, cfg.Settle)
	l.s.once = cfg.Once
	l.s.stat = func(p string) (Stat, error) {
		st, _, err := w.statter.stat(p)
		return st, err
	}
	l.s.writing = func(p string) bool {
		if !cfg.FollowSymlinks {
			return openForWriting(p, true)
		}
		if _, target, err := w.statter.stat(p); err == nil {
			return openForWriting(target, true)
		}
		return false
	}
	l.s.rootOK = l.rootOKDuringFire
	needInotify := false
	for _, r := range cfg.Roots {
		rs := &rootState{path: r}
		l.roots = append(l.roots, rs)
		if cfg.Poll > 0 {
			rs.poll, rs.every = true, cfg.Poll
		} else if !cfg.Once {
			needInotify = true
		}
	}
	if needInotify {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			// Typically fs.inotify.max_user_instances reached: poll
			// rather than not run.
			cfg.Log.Error().Err(err).Dur("every", w.fallbackPoll).
				Msg("cannot start inotify (fs.inotify.max_user_instances reached?): polling every root instead; " +
					"raise the limit with: sysctl fs.inotify.max_user_instances=1024")
			for _, rs := range l.roots {
				rs.poll, rs.every = true, w.fallbackPoll
			}
		} else {
			l.fsw = fsw
		}
	}
	l.sc = &scanner{
		cfg:      cfg,
		filter:   &w.filter,
		statter:  &w.statter,
		fsw:      l.fsw,
		dirs:     l.dirs,
		out:      w.out,
		foundCh:  make(chan found, foundQueue),
		reported: &l.reportedCount,
		polls:    map[string]*pollTree{},
		fallback: w.fallbackPoll,
	}
	if l.fsw != nil {
		l.sc.addWatch = l.fsw.Add
		if add := w.hooks.addWatchFunc(); add != nil {
			l.sc.addWatch = func(dir string) error { return add(l.fsw, dir) }
		}
	}
	return l
}

func (l *loop) emit(ev Event) {
	l.w.out.push(ev)
}

func (l *loop) rootOf(p string) *rootState {
	for _, r := range l.roots {
		if isUnder(p, r.path) {
			return r
		}
	}
	return nil
}

func (l *loop) enqueue(j scanJob) {
	if j.kind == jobFull {
		for _, q := range l.jobs {
			if q.kind == jobFull && q.root == j.root {
				return // one already waiting covers this request
			}
		}
	}
	l.jobs = append(l.jobs, j)
}

func (l *loop) fullScan(r *rootState) {
	l.enqueue(scanJob{kind: jobFull, root: r.path, dir: r.path, dev: r.dev, haveDev: r.haveDev, poll: r.poll, every: r.every})
}

func (l *loop) run(ctx context.Context) error {
	now := l.cfg.Now
	for _, r := range l.roots {
		h := checkRoot(r.path, l.cfg.RootMarker, 0, false)
		if !h.ok {
			l.markGone(r, h.reason)
			continue
		}
		l.setupRoot(r, h)
		l.fullScan(r)
	}

	var rescanC <-chan time.Time
	if l.cfg.RescanInterval > 0 && !l.cfg.Once {
		t := time.NewTicker(l.cfg.RescanInterval)
		defer t.Stop()
		rescanC = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer func() {
		if l.rootTicker != nil {
			l.rootTicker.Stop()
		}
	}()
	var fsBuf []fsnotify.Event
	var preciseAt time.Time // when onTime last slept
	for {
		if l.cfg.Once && l.onceFinished() {
			return nil
		}
		if due, ok := l.s.next(); ok {
			// The Go timer wakes the loop wakeEarly before the first
			// timer is due, and the rest is slept precisely (onTime):
			// a runtime timer alone ends up to 1 ms late. At most once
			// per preciseEvery; else the timer is set for when it is due.
			early := time.Duration(0)
			if due.Add(-wakeEarly).Sub(preciseAt) >= preciseEvery {
				early = wakeEarly
			}
			timer.Reset(max(due.Sub(now())-early, 0))
		} else {
			timer.Stop()
		}
		var jobCh chan scanJob
		var job scanJob
		if len(l.jobs) > 0 {
			jobCh, job = l.jobCh, l.jobs[0]
		}
		var rootC <-chan time.Time
		if l.rootTicker != nil {
			rootC = l.rootTicker.C
		}
		l.reportedCount.Store(int64(len(l.s.reported)))

		select {
		case <-ctx.Done():
			return nil
		case jobCh <- job:
			l.jobs = l.jobs[1:]
			if job.kind == jobFull {
				l.scansRunning++
			}
		case f := <-l.sc.foundCh:
			l.handleFound(f)
			// Take what else is waiting without going round the timers.
		drain:
			for n := 0; n < 256; n++ {
				select {
				case f := <-l.sc.foundCh:
					l.handleFound(f)
				default:
					break drain
				}
			}
		case <-l.fsq.ready:
			var errs []error
			var overflow bool
			fsBuf, errs, overflow = l.fsq.take(fsBuf)
			t := now()
			for _, ev := range fsBuf {
				l.w.hooks.sawEvent(ev.Name)
				l.handleFS(t, ev)
			}
			for _, err := range errs {
				l.handleFSError(err)
			}
			if overflow {
				l.handleFSError(fmt.Errorf("internal event queue: %w", fsnotify.ErrEventOverflow))
			}
		case <-timer.C:
			if due, ok := l.s.next(); ok {
				if now().Sub(preciseAt) >= preciseEvery && onTime(due, now) {
					preciseAt = now()
					l.w.hooks.sleptPrecisely()
				}
				l.w.hooks.timerWokeLate(now().Sub(due))
			}
			l.fire()
		case <-l.w.reqSignal:
			paths, rescan := l.w.takeRequests()
			t := now()
			for _, p := range paths {
				if r := l.rootOf(p); r != nil && !r.gone {
					l.s.resettle(t, r.path, p)
				}
			}
			if rescan {
				l.cfg.Log.Info().Msg("rescan requested: scanning every root")
				l.rescanAll()
			}
		case <-rescanC:
			l.rescanAll()
		case <-rootC:
			l.recheckGoneRoots()
		}
	}
}

func (l *loop) onceFinished() bool {
	for _, r := range l.roots {
		if !r.done {
			return false
		}
	}
	return len(l.jobs) == 0 && l.scansRunning == 0 && len(l.s.files) == 0
}

func (l *loop) rescanAll() {
	for _, r := range l.roots {
		if !r.gone {
			l.fullScan(r)
		}
	}
}

func (l *loop) fire() {
	l.goneDuringFire = l.goneDuringFire[:0]
	l.okDuringFire = l.okDuringFire[:0]
	l.s.fire(l.cfg.Now(), l.emit)
	for _, r := range l.goneDuringFire {
		h := checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev)
		if !h.ok {
			l.markGone(r, h.reason)
		}
	}
}

func (l *loop) handleFSError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		l.cfg.Log.Warn().Err(err).Msg("inotify event queue overflowed: rescanning every root")
	} else {
		l.cfg.Log.Warn().Err(err).Msg("file watcher error: rescanning every root")
	}
	l.rescanAll()
}

func (l *loop) handleFS(now time.Time, ev fsnotify.Event) {
	p := ev.Name
	r := l.rootOf(p)
	if r == nil {
		return
	}
	if p == r.path {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			// The directory that was watched is gone or moved away, even
			// if something already stands at its path again: report it
			// gone now (dropping the removals of its files) and let the
			// recheck bring it back with a full scan.
			l.markGone(r, "missing")
		}
		return
	}
	if l.cfg.RootMarker != "" && p == filepath.Join(r.path, l.cfg.RootMarker) {
		l.checkRootNow(r)
		return
	}
	if r.gone || !l.w.filter.dirsWanted(r.path, p) {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		wasDir := false
		for _, d := range l.dirs.removeTree(p, false) {
			wasDir = true
			_ = l.fsw.Remove(d)
		}
		if wasDir || l.w.filter.wantFile(r.path, p) {
			l.s.removed(now, r.path, p)
		}
		return
	}
	if ev.Has(fsnotify.Create) && !l.cfg.NoRecursive {
		if st, err := lstat(p); err == nil && st.Mode.IsDir() {
			if l.w.filter.wantDir(r.path, p) {
				l.enqueue(scanJob{kind: jobSubtree, root: r.path, dir: p})
			}
			return
		}
	}
	if !l.w.filter.wantFile(r.path, p) {
		return
	}
	if ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod) {
		l.s.touched(now, r.path, p, nil)
	} else if ev.Has(fsnotify.Create) {
		l.s.appeared(now, r.path, p)
	}
}

func (l *loop) handleFound(f found) {
	r := l.rootOf(f.root)
	if r == nil {
		return
	}
	now := l.cfg.Now()
	switch f.kind {
	case foundScanDone:
		l.scansRunning--
		if l.cfg.Once {
			r.done = true
		}
		if r.gone {
			return
		}
		// A clean scan is told at debug level: cmd says what the first scan
		// found, and a rescan every --rescan-interval would be noise.
		ev := l.cfg.Log.Debug()
		if f.scan.Errors > 0 {
			ev = l.cfg.Log.Warn()
		}
		ev.Str("root", r.path).Int("files", f.scan.Files).Int("unchanged", f.scan.Unchanged).
			Int("errors", f.scan.Errors).Dur("took", now.Sub(f.scan.Started)).Msg("scan done")
		l.emit(Event{Kind: ScanDone, Root: r.path, Scan: f.scan})
	case foundRootGone:
		if f.full {
			l.scansRunning--
		}
		l.markGone(r, f.reason)
	case foundCheck:
		if !r.gone {
			l.s.found(now, r.path, f.path, f.st, l.emit)
		}
	case foundTouched:
		if !r.gone {
			l.s.touched(now, r.path, f.path, &f.st)
		}
	case foundRemoved:
		if !r.gone {
			l.s.removed(now, r.path, f.path)
		}
	case foundKnown:
		l.s.pruneReported(f.path, f.st)
	}
}

// watchedDirs is the set of directories with an inotify watch. The scanner
// adds to it, the event goroutine removes subtrees from it when a directory
// is removed or moved; mu guards set.
type watchedDirs struct {
	mu  sync.Mutex
	set map[string]struct{}
}

func (d *watchedDirs) add(p string) {
	d.mu.Lock()
	d.set[p] = struct{}{}
	d.mu.Unlock()
}

// removeTree forgets p and every directory under it, and returns them.
// Unless sweep, it returns nothing at once when p itself is not watched
// (the common case of a file being removed).
func (d *watchedDirs) removeTree(p string, sweep bool) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.set[p]; !ok && !sweep {
		return nil
	}
	var out []string
	for q := range d.set {
		if isUnder(q, p) {
			out = append(out, q)
			delete(d.set, q)
		}
	}
	return out
}
