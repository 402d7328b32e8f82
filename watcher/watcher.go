package watcher

// watcher.go owns the Watcher's API and the goroutine that reads
// fsnotify into a bounded queue for the event loop.

import (
	"context"
	"errors"
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
		filter:       newFilter(cfg.Include, cfg.Exclude),
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
