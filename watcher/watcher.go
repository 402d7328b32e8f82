package watcher

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

// Watcher watches the configured roots and reports what happens to their
// files on Events. Build it with New, run it with Run.
//
// Goroutines, all owned by Run: the event goroutine (Run itself) owns every
// settle and removal timer and the root states; a reader drains fsnotify
// into an unbounded queue so the kernel queue never overflows because the
// event goroutine is busy; a scanner walks trees (full scans, new
// directories, polling) and sends what it finds to the event goroutine; an
// emitter delivers events from an unbounded queue to Events, so a slow
// consumer never blocks the event goroutine.
//
// Repeated Ready: a file is reported Ready once per content (dev, ino,
// size, mtime). The watcher remembers the Stat of each path it reported
// until a full scan's call to Config.Known confirms the consumer recorded
// it (from then on Known answers for it), or the path is removed; so a
// periodic rescan does not report an untouched file again, whether or not
// the consumer has recorded it yet. That memory is bounded (about 130,000
// paths, then cleared), so a consumer must still treat a Ready for bytes
// it already holds as a no-op. Resettle is the exception: a path sent back
// is reported again even if unchanged.
//
// Limits: a subtree that ran out of inotify watches stays polled for the
// life of Run; mounts of filesystems without inotify below a root (rather
// than at it) are not detected; a directory symlink is never descended.
type Watcher struct {
	cfg     Config
	filter  filter
	statter statter
	events  chan Event
	out     *outQueue

	reqMu       sync.Mutex // guards resettleReq and rescanReq
	resettleReq []string
	rescanReq   bool
	reqSignal   chan struct{} // cap 1: a request was queued

	running atomic.Bool

	// hooks are where tests observe or perturb a running Watcher; nil
	// outside tests. Run's goroutines call them, so they hang off the
	// Watcher rather than package variables that parallel tests would
	// share; only export_test.go sets them.
	hooks *testHooks

	// fallbackPoll is the polling period of roots without inotify and of
	// subtrees out of watches: Config.Poll, else DefaultPoll.
	fallbackPoll time.Duration
}

// New validates cfg and returns a Watcher ready to Run.
func New(cfg Config) (*Watcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	events := make(chan Event, 64)
	fallbackPoll := cfg.Poll
	if fallbackPoll == 0 {
		fallbackPoll = DefaultPoll
	}
	return &Watcher{
		fallbackPoll: fallbackPoll,
		cfg:          cfg,
		filter:       filter{include: cfg.Include, exclude: cfg.Exclude},
		statter:      statter{roots: cfg.Roots, followSymlinks: cfg.FollowSymlinks},
		events:       events,
		out:          newOutQueue(events),
		reqSignal:    make(chan struct{}, 1),
	}, nil
}

// Roots returns the roots watched, absolute and cleaned, as events name them.
func (w *Watcher) Roots() []string { return append([]string(nil), w.cfg.Roots...) }

// Events returns the channel events are delivered on. It is closed when
// Run returns.
func (w *Watcher) Events() <-chan Event { return w.events }

// Resettle sends path back to settling: the consumer found its content not
// whole, or changed while it was read. It is reported Ready again once it
// settles, or Incomplete once the consumer has been sending it back for
// longer than Config.SettleTimeout. Safe from any goroutine; never blocks
// on the watcher.
func (w *Watcher) Resettle(path string) {
	w.reqMu.Lock()
	w.resettleReq = append(w.resettleReq, filepath.Clean(path))
	w.reqMu.Unlock()
	signal(w.reqSignal)
}

// Rescan asks for a full scan of every root now (SIGHUP). Safe from any
// goroutine; never blocks.
func (w *Watcher) Rescan() {
	w.reqMu.Lock()
	w.rescanReq = true
	w.reqMu.Unlock()
	signal(w.reqSignal)
}

// ErrRunning is returned by Run when the Watcher is already running or has run.
var ErrRunning = errors.New("watcher: Run called more than once")

// ErrWatchLimit is wrapped by the error logged when inotify runs out of
// watches; the subtree concerned is polled instead.
var ErrWatchLimit = errors.New("out of inotify watches")

// Run watches until ctx is done (then it returns nil), or in Once mode
// until every root was scanned and every file found has settled. It closes
// Events when it returns; in Once mode it first delivers every event
// (unless ctx is done).
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	emitDone := make(chan struct{})
	go func() {
		defer close(emitDone)
		w.out.run(ctx)
	}()

	inner, cancel := context.WithCancel(ctx)
	l := w.newLoop()
	var wg sync.WaitGroup
	if l.fsw != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.readFS(inner, l.fsw, l.fsq)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.sc.run(inner, l.jobCh)
	}()
	err := l.run(inner)
	cancel()
	wg.Wait()
	if l.fsw != nil {
		_ = l.fsw.Close()
	}
	w.out.close()
	<-emitDone
	return err
}

// readFS drains fsnotify into q as fast as the kernel hands events over.
func (w *Watcher) readFS(ctx context.Context, fsw *fsnotify.Watcher, q *fsQueue) {
	for {
		select {
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			if w.hooks.droppingEvents() {
				continue
			}
			q.pushEvent(ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return
			}
			q.pushErr(err)
		case err := <-w.hooks.injectedErrors():
			q.pushErr(err)
		case <-ctx.Done():
			return
		}
	}
}

// fsQueue is the unbounded queue between the fsnotify reader and the event
// goroutine. Past maxFSQueue events it drops them all and reports an
// overflow instead, which degrades to a full rescan, not to loss.
type fsQueue struct {
	mu       sync.Mutex // guards events, errs, overflow
	events   []fsnotify.Event
	errs     []error
	overflow bool
	ready    chan struct{} // cap 1
}

const maxFSQueue = 1 << 20

func (q *fsQueue) pushEvent(ev fsnotify.Event) {
	q.mu.Lock()
	if len(q.events) >= maxFSQueue {
		q.events = q.events[:0]
		q.overflow = true
	} else {
		q.events = append(q.events, ev)
	}
	q.mu.Unlock()
	signal(q.ready)
}

func (q *fsQueue) pushErr(err error) {
	q.mu.Lock()
	q.errs = append(q.errs, err)
	q.mu.Unlock()
	signal(q.ready)
}

func (q *fsQueue) take(events []fsnotify.Event) ([]fsnotify.Event, []error, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	events, q.events = q.events, events[:0]
	errs := q.errs
	q.errs = nil
	overflow := q.overflow
	q.overflow = false
	return events, errs, overflow
}

func (w *Watcher) takeRequests() ([]string, bool) {
	w.reqMu.Lock()
	defer w.reqMu.Unlock()
	paths, rescan := w.resettleReq, w.rescanReq
	w.resettleReq, w.rescanReq = nil, false
	return paths, rescan
}

// rootState is what the event goroutine knows of one root.
type rootState struct {
	path    string
	dev     uint64
	haveDev bool
	gone    bool
	reason  string
	poll    bool          // polled instead of watched
	every   time.Duration // polling period when poll
	done    bool          // Once mode: scanned or gone
}

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
		foundCh:  make(chan found, 256),
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

func (l *loop) setupRoot(r *rootState, h rootHealth) {
	if !r.haveDev {
		r.dev, r.haveDev = h.dev, true
	}
	if !r.poll && !l.cfg.Once {
		if fsType := fsWithoutInotify(r.path); fsType != "" {
			r.poll = true
			r.every = l.w.fallbackPoll
			l.cfg.Log.Warn().Str("root", r.path).Str("fs", fsType).Dur("every", r.every).
				Msg("root is on a filesystem inotify cannot watch: polling it instead")
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

// rootOKDuringFire is the settler's rootOK: it checks the root once per
// fire, and leaves reporting it gone to after the timers have run.
func (l *loop) rootOKDuringFire(root string) bool {
	r := l.rootOf(root)
	if r == nil || r.gone {
		return false
	}
	for _, g := range l.goneDuringFire {
		if g == r {
			return false
		}
	}
	for _, g := range l.okDuringFire {
		if g == r {
			return true
		}
	}
	if checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev).ok {
		l.okDuringFire = append(l.okDuringFire, r)
		return true
	}
	l.goneDuringFire = append(l.goneDuringFire, r)
	return false
}

func (l *loop) checkRootNow(r *rootState) {
	if r.gone {
		return
	}
	h := checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev)
	if !h.ok {
		l.markGone(r, h.reason)
	}
}

func (l *loop) markGone(r *rootState, reason string) {
	if r.gone {
		return
	}
	r.gone, r.reason = true, reason
	if l.cfg.Once {
		r.done = true
	}
	l.cfg.Log.Error().Str("root", r.path).Str("reason", reason).
		Msg("root is unusable: nothing under it is treated as removed until it is back")
	l.emit(Event{Kind: RootGone, Root: r.path, Reason: reason})
	l.s.dropRoot(r.path)
	if l.fsw != nil {
		for _, d := range l.dirs.removeTree(r.path, true) {
			_ = l.fsw.Remove(d)
		}
	}
	if !l.cfg.Once && l.rootTicker == nil {
		l.rootTicker = time.NewTicker(rootRecheckInterval(l.cfg.Settle))
	}
}

// rootRecheckInterval is how often a gone root is looked for: the settle
// time, between 10 ms and 1 s.
func rootRecheckInterval(settle time.Duration) time.Duration {
	return min(max(settle, 10*time.Millisecond), time.Second)
}

func (l *loop) recheckGoneRoots() {
	anyGone := false
	for _, r := range l.roots {
		if !r.gone {
			continue
		}
		h := checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev)
		if !h.ok {
			anyGone = true
			continue
		}
		r.gone, r.reason = false, ""
		l.setupRoot(r, h)
		l.cfg.Log.Info().Str("root", r.path).Msg("root is back: rescanning it")
		l.emit(Event{Kind: RootBack, Root: r.path})
		l.fullScan(r)
	}
	if !anyGone && l.rootTicker != nil {
		l.rootTicker.Stop()
		l.rootTicker = nil
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
		l.cfg.Log.Info().Str("root", r.path).Int("files", f.scan.Files).Int("unchanged", f.scan.Unchanged).
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
