package uploader

// loop.go owns the main loop: the state only it touches, the select that
// takes events, hashes, results and writes, and what it does every turn.

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// loop is the state the main loop owns: nothing here is touched by another
// goroutine.
type loop struct {
	e      *Engine
	w      Resettler
	events <-chan watcher.Event

	paths     map[string]*pathJob
	jobs      map[store.Hash]*upload
	readyQ    []*upload
	resolveQ  []*upload
	stagedQ   []*upload            // jobs taken from readyQ whose intent is written ahead (stageMore)
	blocked   map[string][]*upload // by upload name, waiting for its lock
	locks     map[string]*upload
	sched     schedHeap
	dels      map[string]*delJob
	delTally  map[store.Hash]*deleteTally // deletes per content, for one log line each
	delQ      []*delJob
	orphans   map[store.Hash]orphanTimer
	hashQ     []hashReq
	writes    []op // decided this turn, submitted at the next
	submitted int  // ops handed to the store and not yet acted on

	inflight  int
	workers   int // worker goroutines started: at least the concurrency limit
	hashing   int
	deciding  int // decideOps on their way to the store
	resolving int
	paused    bool
	pauseWhy  string
	probing   bool
	probeAt   time.Time
	connFails int
	outage    outage
	preferDel bool

	rootGone     map[string]string
	scanned      map[string]bool
	g            guard // the mass-delete guard (guard.go)
	settling     map[string]bool
	cont         map[string]bool // paths whose next segment follows one cut at the size limit
	lag          map[string]*lagNote
	dirs         map[string]dirList // folder listings, for telling a rotated file from a removed one
	selfGone     map[string]bool    // paths deleted or archived after upload, until their record says removed
	eventsClosed bool
	stopping     bool
	fatal        error

	hashIn   chan hashReq
	hashOut  chan hashDone
	workIn   chan workItem
	workOut  chan workResult
	box      *writeBox
	probeOut chan error
	abort    chan struct{} // closed when the loop returns: helpers never block on it
	wg       sync.WaitGroup
}

func newLoop(e *Engine, events <-chan watcher.Event, w Resettler) *loop {
	return &loop{
		e: e, w: w, events: events,
		paths:    map[string]*pathJob{},
		jobs:     map[store.Hash]*upload{},
		blocked:  map[string][]*upload{},
		locks:    map[string]*upload{},
		dels:     map[string]*delJob{},
		delTally: map[store.Hash]*deleteTally{},
		orphans:  map[store.Hash]orphanTimer{},
		rootGone: map[string]string{},
		scanned:  map[string]bool{},
		g:        newGuard(),
		settling: map[string]bool{},
		cont:     map[string]bool{},
		lag:      map[string]*lagNote{},
		dirs:     map[string]dirList{},
		selfGone: map[string]bool{},
		hashIn:   make(chan hashReq),
		hashOut:  make(chan hashDone),
		workIn:   make(chan workItem),
		workOut:  make(chan workResult),
		box:      &writeBox{sig: make(chan struct{}, 1)},
		probeOut: make(chan error),
		abort:    make(chan struct{}),
	}
}

func (l *loop) now() time.Time { return l.e.cfg.Now() }

// run starts the helpers, recovers, and turns until done.
func (l *loop) run(ctx context.Context) error {
	e := l.e
	for range e.cfg.HashWorkers {
		l.wg.Go(func() { l.hasher() })
	}
	l.startWorkers()
	defer func() {
		close(l.hashIn)
		close(l.workIn)
		close(l.abort)
		l.wg.Wait()
	}()

	if err := l.startup(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ctxDone <-chan struct{} = ctx.Done()
	var lastPublish time.Time
	changed := true // a turn took something since the last publish
	for {
		turn := time.Now()
		e.beat.Store(turn.UnixNano())
		if turn.Sub(lastPublish) >= publishEvery {
			l.publish()
			lastPublish, changed = turn, false
		}
		if l.fatal != nil && !l.busy() {
			l.publish()
			return l.fatal
		}
		if l.stopping && !l.busy() {
			l.publish()
			return ctx.Err()
		}
		if e.cfg.OneShot && l.eventsClosed && l.idle() {
			l.publish()
			return nil
		}
		now := l.now()
		l.fire(now)

		l.stageMore()
		// What can be sent now.
		var hashIn chan hashReq
		var nextHash hashReq
		if len(l.hashQ) > 0 && !l.stopping && len(l.jobs)+l.hashing+l.deciding < e.cfg.MaxUploadJobs {
			// With MaxUploadJobs uploads waiting, paths wait unhashed: a
			// path in line costs a small note, an upload job ten times
			// more, and a backfill of a large archive hashes far faster
			// than it uploads.
			hashIn, nextHash = l.hashIn, l.hashQ[0]
		}
		var workIn chan workItem
		var nextWork workItem
		l.startWorkers()
		if !l.stopping && !l.paused && l.fatal == nil && l.inflight < l.limit() {
			if it, ok := l.peekWork(); ok {
				workIn, nextWork = l.workIn, it
			}
		}
		if len(l.writes) > 0 {
			l.submitWrites()
		}
		events := l.events
		if l.stopping || l.eventsClosed || l.fatal != nil || l.windowFull() {
			events = nil
		}
		wake := l.nextWake(now, changed)
		timer.Reset(max(wake.Sub(now), 0))

		select {
		case <-ctxDone:
			ctxDone = nil
			l.stop()
		case <-e.stop:
			if !l.stopping {
				l.stop()
			}
		case ev, ok := <-events:
			if !ok {
				l.eventsClosed = true
				continue
			}
			l.onEvent(ev)
			// Take what is already waiting in the same turn.
		drain:
			for range 4096 {
				if l.windowFull() {
					break
				}
				select {
				case ev, ok := <-l.events:
					if !ok {
						l.eventsClosed = true
						break drain
					}
					l.onEvent(ev)
				default:
					break drain
				}
			}
		case hashIn <- nextHash:
			l.hashQ = l.hashQ[1:]
			l.hashing++
		case d := <-l.hashOut:
			l.hashing--
			l.onHashed(d)
		case workIn <- nextWork:
			l.dispatched(nextWork)
			e.cc.started(l.inflight)
		case r := <-l.workOut:
			l.inflight--
			l.onResult(r)
		case <-l.box.sig:
			l.onWrites()
		case err := <-l.probeOut:
			l.probing = false
			l.onProbe(err)
		case paths := <-e.requeue:
			l.onRequeue(paths)
		case <-e.nudge:
			l.loadDeletes()
		case roots := <-e.confirm:
			l.onConfirmed(roots)
		case <-timer.C:
		}
		changed = true
	}
}

// windowFull reports that as many paths have work under way as the
// window allows: the watcher's events wait, and with them its scan.
func (l *loop) windowFull() bool { return len(l.paths) >= l.e.cfg.PathWindow }

func (l *loop) stop() {
	l.stopping = true
	// Staged intents go back to the presign phase: no create of them ran,
	// and the next start should not have to list for them.
	for _, u := range l.stagedQ {
		if !u.dropped && u.staged != stageNone {
			l.unstage(u)
		}
	}
	l.stagedQ = nil
	l.e.log.Debug().Int("in_flight", l.inflight).Msg("engine stopping: no new work; waiting for uploads in flight") // cmd tells the person
}

// busy reports work that must finish before Run may return.
func (l *loop) busy() bool {
	return l.inflight > 0 || l.hashing > 0 || l.submitted > 0 || len(l.writes) > 0 || l.probing
}

// idle reports that nothing is left to do (OneShot).
func (l *loop) idle() bool {
	if l.busy() || len(l.hashQ) > 0 || len(l.jobs) > 0 {
		return false
	}
	for _, d := range l.dels {
		if d.running {
			return false
		}
	}
	return true
}

// quiet reports that nothing is under way, waiting or due: the loop has
// nothing to wake for but its health beat.
func (l *loop) quiet() bool {
	return !l.busy() && !l.stopping && !l.paused && len(l.hashQ) == 0 && len(l.jobs) == 0 &&
		len(l.sched) == 0 && len(l.orphans) == 0 && len(l.delQ) == 0 && l.judgeAt().IsZero()
}

// nextWake is when the loop turns next if nothing comes: when something is
// due, or to publish what changed, or, when all is quiet, only for the
// health beat (an idle daemon costs no wake-ups). changed says a turn
// took something since the last publish.
func (l *loop) nextWake(now time.Time, changed bool) time.Time {
	step := publishEvery
	if !changed && l.quiet() {
		step = l.e.cfg.HealthTimeout / 3
	}
	wake := now.Add(min(l.e.cfg.HealthTimeout/3, step))
	if len(l.sched) > 0 && l.sched[0].at.Before(wake) {
		wake = l.sched[0].at
	}
	for _, o := range l.orphans {
		if o.at.Before(wake) {
			wake = o.at
		}
	}
	if l.paused && !l.probing && l.probeAt.Before(wake) {
		wake = l.probeAt
	}
	if at := l.judgeAt(); !at.IsZero() && at.Before(wake) {
		wake = at
	}
	return wake
}

// fire moves due scheduled jobs to their queues, handles due orphans and
// starts a probe when one is due.
func (l *loop) fire(now time.Time) {
	for len(l.sched) > 0 && !l.sched[0].at.After(now) {
		it := heap.Pop(&l.sched).(schedItem)
		switch {
		case it.up != nil:
			if it.up.dropped || it.up.state != jobScheduled || !it.up.next.Equal(it.at) {
				continue
			}
			l.enqueue(it.up, false)
		case it.del != nil:
			if _, ok := l.dels[it.del.d.TraceID]; !ok || it.del.running || it.del.queued {
				continue
			}
			it.del.queued = true
			l.delQ = append(l.delQ, it.del)
		}
	}
	for h, o := range l.orphans {
		if o.at.After(now) {
			continue
		}
		if l.orphanBusy(h, o.size) {
			o.at = now.Add(max(l.e.cfg.DeleteDelay, 10*time.Millisecond))
			l.orphans[h] = o
			continue
		}
		delete(l.orphans, h)
		l.writes = append(l.writes, &orphanOp{hash: h, from: o.from})
	}
	l.judgeRemovals(now)
	if l.paused && !l.probing && !l.stopping && !now.Before(l.probeAt) {
		l.probing = true
		l.wg.Go(func() { l.probe() })
	}
}

// publishEvery is how often the loop refreshes Progress and the gauges.
const publishEvery = 20 * time.Millisecond

// publish copies the loop's counts into Progress and the gauges.
func (l *loop) publish() {
	queued, retrying := 0, 0
	for _, u := range l.jobs {
		switch u.state {
		case jobQueued, jobPaused:
			queued++
		case jobScheduled:
			queued++
			if u.attempts > 0 {
				retrying++
			}
		}
	}
	held := l.g.heldCount()
	pending := len(l.dels)
	l.e.progress(func(p *Progress) {
		p.Hashing = len(l.hashQ) + l.hashing
		p.Queued = queued
		p.InFlight = l.inflight
		p.Concurrency, p.MaxConcurrency, p.Adaptive = l.limit(), l.e.cc.ceiling, l.e.cc.adaptive
		p.Retrying = retrying
		p.Settling = len(l.settling)
		p.DeletesPending = pending
		p.HeldBack = held
		p.Paused, p.PauseReason = l.paused, l.pauseWhy
		p.Recovering = l.resolving > 0
	})
	m := l.e.m
	m.queueDepth.Set(float64(queued))
	m.inFlight.Set(float64(l.inflight))
	m.concurrency.Set(float64(l.limit()))
	m.deletesPending.Set(float64(pending))
	m.heldBack.Set(float64(held))
	if l.paused {
		m.paused.Set(1)
	} else {
		m.paused.Set(0)
	}
	ready := l.resolving == 0 && !l.paused && len(l.scanned) > 0
	if l.e.cfg.OneShot {
		ready = l.resolving == 0 && !l.paused
	}
	l.e.readyFlag.Store(ready)
}
