package uploader

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// pathJob is the main loop's note on a path with work under way.
type pathJob struct {
	root     string
	hashing  bool    // queued for, or in, the hash pool
	deciding bool    // a decideOp is on its way to the store
	rehash   bool    // a newer Ready came while busy: hash again afterwards
	force    bool    // `tracesync retry`
	job      *upload // the upload this path waits for
	// size is the hashed size, or, until the hash is done, the size the
	// watcher saw: orphanBusy compares it from the moment the path is
	// queued for hashing, not only once a hash worker has it.
	size int64
}

func (p *pathJob) busy() bool { return p.hashing || p.deciding || p.job != nil }

type jobState uint8

type stageState uint8

const (
	stageNone stageState = iota
	stageWriting
	stageDurable
)

const (
	jobQueued    jobState = iota + 1 // in readyQ (or blocked on its basename)
	jobScheduled                     // waiting for its next attempt time
	jobRunning                       // with a worker
	jobRecording                     // created; the record is on its way to the store
	jobPaused                        // waiting for the pool to resume
)

// upload is one content to upload (by hash), and the paths waiting for it.
type upload struct {
	hash        store.Hash
	path        string // the path read for the upload
	root        string
	filename    string
	contentType string
	size        int64
	paths       map[string]bool
	attempts    int
	bo          *backoff.ExponentialBackOff
	next        time.Time
	state       jobState
	needResolve bool
	resolveOnly bool
	checkRemote bool // ask the server for traces of filename before uploading (rule 15)
	// background: a resolve-only job made while running, for bytes that
	// lost their last path while a create of them may have run. It is
	// queued with the uploads and does not hold them back (l.resolving
	// counts only the start's leftover intents).
	background bool
	intentAt   time.Time
	locked     bool // holds the basename lock
	// staged: the create-phase intent of this job's next attempt is being
	// written (stageWriting) or is durable (stageDurable) ahead of its
	// dispatch, so the worker that takes it does not wait for a commit of
	// its own; set while the job waits in stagedQ (see stageMore).
	staged   stageState
	stagedAt time.Time // that intent's StartedAt
	dropped  bool      // removed from jobs; skip wherever it is still queued
	firstTry time.Time
}

// delJob is one remote delete.
type delJob struct {
	d       store.Delete
	bo      *backoff.ExponentialBackOff
	running bool
	queued  bool
}

type schedItem struct {
	at  time.Time
	up  *upload
	del *delJob
}

type schedHeap []schedItem

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(schedItem)) }
func (h *schedHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

type hashReq struct {
	path string
	root string
}

type hashDone struct {
	req hashReq
	res hashResult
}

type orphanTimer struct {
	at   time.Time
	size int64
}

// loop is the state the main loop owns: nothing here is touched by another
// goroutine.
type loop struct {
	e      *Engine
	w      Resettler
	events <-chan watcher.Event

	paths    map[string]*pathJob
	jobs     map[store.Hash]*upload
	readyQ   []*upload
	resolveQ []*upload
	stagedQ  []*upload            // jobs taken from readyQ whose intent is written ahead (stageMore)
	blocked  map[string][]*upload // by basename, waiting for the lock
	locks    map[string]*upload
	sched    schedHeap
	dels     map[string]*delJob
	delQ     []*delJob
	orphans  map[store.Hash]orphanTimer
	hashQ    []hashReq
	writes   []op
	writing  bool

	inflight  int
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
	eventsClosed bool
	stopping     bool
	fatal        error

	hashIn   chan hashReq
	hashOut  chan hashDone
	workIn   chan workItem
	workOut  chan workResult
	writeIn  chan []op
	writeOut chan writeDone
	probeOut chan error
	abort    chan struct{} // closed when the loop returns: helpers never block on it
	wg       sync.WaitGroup
}

type writeDone struct {
	ops []op
	err error
}

func newLoop(e *Engine, events <-chan watcher.Event, w Resettler) *loop {
	return &loop{
		e: e, w: w, events: events,
		paths:    map[string]*pathJob{},
		jobs:     map[store.Hash]*upload{},
		blocked:  map[string][]*upload{},
		locks:    map[string]*upload{},
		dels:     map[string]*delJob{},
		orphans:  map[store.Hash]orphanTimer{},
		rootGone: map[string]string{},
		scanned:  map[string]bool{},
		g:        newGuard(),
		settling: map[string]bool{},
		hashIn:   make(chan hashReq),
		hashOut:  make(chan hashDone),
		workIn:   make(chan workItem),
		workOut:  make(chan workResult),
		writeIn:  make(chan []op),
		writeOut: make(chan writeDone),
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
	for range e.cfg.Workers {
		l.wg.Go(func() { e.worker(l.workIn, l.workOut, l.abort) })
	}
	l.wg.Go(func() { l.writer() })
	defer func() {
		close(l.hashIn)
		close(l.workIn)
		close(l.writeIn)
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
	for {
		turn := time.Now()
		e.beat.Store(turn.UnixNano())
		if turn.Sub(lastPublish) >= publishEvery {
			l.publish()
			lastPublish = turn
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
		if !l.stopping && !l.paused && l.fatal == nil {
			if it, ok := l.peekWork(); ok {
				workIn, nextWork = l.workIn, it
			}
		}
		var writeIn chan []op
		var batch []op
		if len(l.writes) > 0 && !l.writing {
			batch = l.writes
			if len(batch) > 1000 {
				batch = batch[:1000]
			}
			writeIn = l.writeIn
		}
		events := l.events
		if l.stopping || l.eventsClosed || l.fatal != nil {
			events = nil
		}
		wake := l.nextWake(now)
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
		case r := <-l.workOut:
			l.inflight--
			l.onResult(r)
		case writeIn <- batch:
			l.writes = l.writes[len(batch):]
			l.writing = true
		case d := <-l.writeOut:
			l.writing = false
			l.onWritten(d)
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
	}
}

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
	l.e.log.Info().Int("in_flight", l.inflight).Msg("stopping: no new work; waiting for uploads in flight")
}

// busy reports work that must finish before Run may return.
func (l *loop) busy() bool {
	return l.inflight > 0 || l.hashing > 0 || l.writing || len(l.writes) > 0 || l.probing
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

func (l *loop) nextWake(now time.Time) time.Time {
	wake := now.Add(min(l.e.cfg.HealthTimeout/3, publishEvery))
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
			l.orphans[h] = orphanTimer{at: now.Add(max(l.e.cfg.DeleteDelay, 10*time.Millisecond)), size: o.size}
			continue
		}
		delete(l.orphans, h)
		l.writes = append(l.writes, &orphanOp{hash: h})
	}
	l.judgeRemovals(now)
	if l.paused && !l.probing && !l.stopping && !now.Before(l.probeAt) {
		l.probing = true
		l.wg.Go(func() { l.probe() })
	}
}

// orphanBusy reports a reason to wait before deleting an orphaned content:
// an upload of it is under way, or a file of the same size is being hashed
// (it may be the same bytes under a new name, rule 5).
func (l *loop) orphanBusy(h store.Hash, size int64) bool {
	if _, ok := l.jobs[h]; ok {
		return true
	}
	for _, p := range l.paths {
		if (p.hashing || p.deciding) && p.size == size {
			return true
		}
	}
	return false
}

// enqueue puts a job in line for a worker.
func (l *loop) enqueue(u *upload, front bool) {
	u.state = jobQueued
	q := &l.readyQ
	if u.resolveOnly && !u.background {
		q = &l.resolveQ
	}
	if front {
		*q = append([]*upload{u}, *q...)
	} else {
		*q = append(*q, u)
	}
}

func (l *loop) schedule(u *upload, at time.Time) {
	u.state = jobScheduled
	u.next = at
	heap.Push(&l.sched, schedItem{at: at, up: u})
}

// peekWork returns the next work item a worker may take, without taking it.
func (l *loop) peekWork() (workItem, bool) {
	if l.resolving > 0 {
		// Rule 9: resolve leftover intents before any new upload.
		for len(l.resolveQ) > 0 {
			u := l.resolveQ[0]
			if u.dropped || u.state != jobQueued {
				l.resolveQ = l.resolveQ[1:]
				continue
			}
			if h, ok := l.locks[u.filename]; ok && h != u {
				return workItem{}, false
			}
			return workItem{up: u, spec: l.spec(u)}, true
		}
		return l.peekDelete()
	}
	if l.preferDel {
		if it, ok := l.peekDelete(); ok {
			return it, true
		}
	}
	for len(l.stagedQ) > 0 {
		u := l.stagedQ[0]
		if u.dropped || u.state != jobQueued || u.staged == stageNone {
			l.stagedQ = l.stagedQ[1:]
			continue
		}
		if u.staged == stageDurable {
			return workItem{up: u, spec: l.spec(u)}, true
		}
		// Its intent is being written, in a commit that ends sooner than
		// one a worker would start for another upload now.
		return l.peekDelete()
	}
	for len(l.readyQ) > 0 {
		u := l.readyQ[0]
		if u.dropped || u.state != jobQueued {
			l.readyQ = l.readyQ[1:]
			continue
		}
		if h, ok := l.locks[u.filename]; ok && h != u {
			// Rule 8: one basename between presign and create at a time.
			l.readyQ = l.readyQ[1:]
			l.blocked[u.filename] = append(l.blocked[u.filename], u)
			continue
		}
		return workItem{up: u, spec: l.spec(u)}, true
	}
	return l.peekDelete()
}

func (l *loop) peekDelete() (workItem, bool) {
	for len(l.delQ) > 0 {
		d := l.delQ[0]
		if _, ok := l.dels[d.d.TraceID]; !ok || d.running {
			l.delQ = l.delQ[1:]
			d.queued = false
			continue
		}
		return workItem{del: d, id: d.d.TraceID}, true
	}
	return workItem{}, false
}

func (l *loop) spec(u *upload) uploadSpec {
	s := uploadSpec{hash: u.hash, path: u.path, filename: u.filename, contentType: u.contentType, size: u.size,
		needResolve: u.needResolve, resolveOnly: u.resolveOnly, checkRemote: u.checkRemote, intentAt: u.intentAt, attempt: u.attempts + 1}
	if u.staged == stageDurable {
		s.stagedAt = u.stagedAt
	}
	return s
}

func (l *loop) dispatched(it workItem) {
	l.inflight++
	if it.del != nil {
		l.delQ = l.delQ[1:]
		it.del.queued = false
		it.del.running = true
		l.preferDel = false
		return
	}
	u := it.up
	switch {
	case u.staged != stageNone:
		l.stagedQ = l.stagedQ[1:]
		u.staged = stageNone // its intent is the worker's now
		l.preferDel = len(l.delQ) > 0
	case u.resolveOnly && !u.background:
		l.resolveQ = l.resolveQ[1:]
	default:
		l.readyQ = l.readyQ[1:]
		l.preferDel = len(l.delQ) > 0
	}
	u.state = jobRunning
	if !u.locked {
		l.locks[u.filename] = u
		u.locked = true
	}
	if u.firstTry.IsZero() {
		u.firstTry = time.Now()
	}
}

// unlock releases u's basename lock and lets the next waiter in line.
func (l *loop) unlock(u *upload) {
	if !u.locked {
		return
	}
	u.locked = false
	if l.locks[u.filename] == u {
		delete(l.locks, u.filename)
	}
	if w := l.blocked[u.filename]; len(w) > 0 {
		next := w[0]
		if len(w) == 1 {
			delete(l.blocked, u.filename)
		} else {
			l.blocked[u.filename] = w[1:]
		}
		if !next.dropped && next.state == jobQueued {
			l.readyQ = append([]*upload{next}, l.readyQ...)
		} else {
			l.unlockWaiters(u.filename)
		}
	}
}

// unlockWaiters moves the first live waiter of a basename back in line.
func (l *loop) unlockWaiters(name string) {
	for {
		w := l.blocked[name]
		if len(w) == 0 {
			delete(l.blocked, name)
			return
		}
		next := w[0]
		l.blocked[name] = w[1:]
		if !next.dropped && next.state == jobQueued {
			l.readyQ = append([]*upload{next}, l.readyQ...)
			return
		}
	}
}

// newBackoff is one job's retry policy: exponential, capped, jittered, and
// never giving up (transient failures retry forever, rule 10).
func (l *loop) newBackoff(attempts int) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = l.e.cfg.InitialBackoff
	bo.MaxInterval = l.e.cfg.MaxBackoff
	bo.MaxElapsedTime = 0
	bo.Reset()
	for range min(attempts, 64) {
		bo.NextBackOff()
	}
	return bo
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

// writer applies batches of ops, in order, one store.Update per batch.
func (l *loop) writer() {
	for batch := range l.writeIn {
		err := l.e.st.Update(context.Background(), func(tx *store.Tx) error {
			now := l.now()
			for _, o := range batch {
				if err := o.apply(tx, now); err != nil {
					return err
				}
			}
			return nil
		})
		select {
		case l.writeOut <- writeDone{ops: batch, err: err}:
		case <-l.abort:
			return
		}
	}
}

// hasher hashes and validates files until hashIn is closed.
func (l *loop) hasher() {
	for req := range l.hashIn {
		res := hashFile(req.path, l.e.cfg.MaxFileSize)
		select {
		case l.hashOut <- hashDone{req: req, res: res}:
		case <-l.abort:
			return
		}
	}
}

// probe checks, once, whether the API answers with the key: a cheap list.
func (l *loop) probe() {
	ctx, cancel := context.WithTimeout(l.e.workCtx, max(l.e.cfg.ProbeInterval, 10*time.Second))
	defer cancel()
	_, err := l.e.api.List(ctx, client.ListOptions{PageSize: 1})
	select {
	case l.probeOut <- err:
	case <-l.abort:
	}
}

func (l *loop) pause(why string, err error) {
	if l.paused {
		return
	}
	l.paused, l.pauseWhy = true, why
	l.probeAt = l.now().Add(l.e.cfg.ProbeInterval)
	l.e.log.Error().Err(err).Dur("probe_every", l.e.cfg.ProbeInterval).Msg("uploads paused: " + why)
}

func (l *loop) onProbe(err error) {
	if err == nil {
		l.paused, l.pauseWhy, l.connFails = false, "", 0
		l.outage.reset()
		l.e.log.Info().Msg("the API answers again: uploads resumed")
		// Jobs waiting for the pool go back in line.
		for _, u := range l.jobs {
			if u.state == jobPaused {
				l.enqueue(u, true)
			}
		}
		return
	}
	l.e.log.Debug().Err(err).Msg("probe failed; still paused")
	l.probeAt = l.now().Add(l.e.cfg.ProbeInterval)
}

// ---- events ----

func (l *loop) onEvent(ev watcher.Event) {
	if l.guardEvent(ev) {
		return // parked: its root is held back on another device
	}
	switch ev.Kind {
	case watcher.Removed:
		l.onRemoved(ev)
	case watcher.Ready:
		l.onReady(ev.Path, ev.Root, ev.Stat.Size, false)
	case watcher.Incomplete:
		delete(l.settling, ev.Path)
		reason := ev.Reason
		if reason == "" {
			reason = "still incomplete after the settle timeout"
		}
		reason = fmt.Sprintf("%s: %s; the writer should write a temporary name and rename it into place", ev.Path, reason)
		l.writes = append(l.writes, &quarantineOp{path: ev.Path, root: ev.Root, reason: reason})
		l.countQuarantine(ev.Path, "incomplete", 0, reason)
	case watcher.RootGone:
		l.onRootGone(ev.Root, ev.Reason)
	case watcher.RootBack:
		l.onRootBack(ev.Root)
	case watcher.ScanDone:
		l.scanned[ev.Root] = true
		l.onScanDone(ev)
	}
}

func (l *loop) onReady(path, root string, size int64, force bool) {
	delete(l.settling, path)
	l.unhold(path, root)
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: root}
		l.paths[path] = p
	}
	p.force = p.force || force
	l.e.progress(func(pr *Progress) { pr.FilesSeen++; pr.BytesSeen += size })
	if p.busy() {
		if p.job != nil && p.job.state != jobRunning && p.job.state != jobRecording {
			// Not started: let go of the upload and look at the new bytes.
			l.detach(path, p)
		} else {
			p.rehash = true
			return
		}
	}
	p.size = size
	l.startHash(path, p)
}

func (l *loop) startHash(path string, p *pathJob) {
	p.hashing, p.rehash = true, false
	l.hashQ = append(l.hashQ, hashReq{path: path, root: p.root})
}

// detach takes path off the upload it waits for.
func (l *loop) detach(path string, p *pathJob) {
	u := p.job
	p.job = nil
	if u == nil {
		return
	}
	delete(u.paths, path)
	if len(u.paths) == 0 && u.state != jobRunning && u.state != jobRecording {
		if u.needResolve {
			l.resolveInBackground(u)
			return
		}
		l.dropJob(u)
		return
	}
	if u.path == path {
		for other := range u.paths {
			u.path, u.root = other, l.paths[other].root
			break
		}
	}
}

// resolveInBackground keeps a job whose bytes lost their last path while a
// create of them may have run: it lists and adopts those traces (rule 9)
// now, with delete-on-remove then deletes them (rule 4), and holds the
// basename (rule 8) until then; a job dropped here would leave its intent
// for the next start to resolve.
func (l *loop) resolveInBackground(u *upload) {
	if u.resolveOnly {
		return
	}
	u.resolveOnly, u.background = true, true
}

// noteCreateAt keeps the earliest time a create of u may have run, so a
// later resolve lists the basename's traces from then (less the allowed
// skew), not from the beginning of time.
func (l *loop) noteCreateAt(u *upload, r workResult) {
	if r.mayHaveCreated && !r.createAt.IsZero() && (u.intentAt.IsZero() || r.createAt.Before(u.intentAt)) {
		u.intentAt = r.createAt
	}
}

func (l *loop) dropJob(u *upload) {
	u.dropped = true
	if l.jobs[u.hash] == u {
		delete(l.jobs, u.hash)
	}
	if u.resolveOnly && !u.background && l.resolving > 0 {
		l.resolving--
	}
	if u.staged != stageNone {
		// Its create-phase intent was written ahead, but no create ran:
		// back to the presign phase, and the basename (rule 8) is held
		// until that is durable, so that no other upload of the name can
		// meet a create-phase intent that is not its own.
		l.unstage(u)
		return
	}
	l.unlock(u)
}

// unstage puts a staged job's intent back in the presign phase; the job's
// basename lock is released when that is durable (onWritten).
func (l *loop) unstage(u *upload) {
	u.staged = stageNone
	l.writes = append(l.writes, &unstageOp{u: u, hash: u.hash, at: u.stagedAt})
}

// maxStaged is how many jobs stageMore keeps ready ahead of the workers:
// four per worker, enough to cover the two commits a staged intent may
// wait for (the one being written, then its own) in a backfill of small
// files (measured: 2 per worker left workers waiting 0.7-1.2 ms per
// upload, 4 per worker 0.4 ms). It is also the most create-phase intents
// of uploads that never ran a SIGKILL can leave: each costs one listing
// at the next start.
func (l *loop) maxStaged() int { return 4 * l.e.cfg.Workers }

// stageMore writes ahead, with the loop's other writes (one commit for
// many), the create-phase intents (rule 9) of the next queued uploads
// while every worker is busy, and takes their basename locks (rule 8)
// from then. A worker that takes a staged job goes straight to presign,
// PUT and create: without it, each upload's own intent commit, queued
// behind the other commits, was the largest part of a worker's turn in a
// backfill of small files (1.8 of 4.7 ms). Jobs are staged only when no
// worker is free: an upload that can start now writes its own intent
// while its presign and PUT run, which is quicker for a single file.
func (l *loop) stageMore() {
	if l.stopping || l.paused || l.fatal != nil || l.resolving > 0 || l.inflight < l.e.cfg.Workers {
		return
	}
	staged := 0
	for _, u := range l.stagedQ {
		if !u.dropped && u.staged != stageNone {
			staged++
		}
	}
	now := l.now()
	for staged < l.maxStaged() && len(l.readyQ) > 0 {
		u := l.readyQ[0]
		if u.dropped || u.state != jobQueued {
			l.readyQ = l.readyQ[1:]
			continue
		}
		if u.needResolve || u.resolveOnly {
			return // it must list first: the worker handles it as before
		}
		l.readyQ = l.readyQ[1:]
		if h, ok := l.locks[u.filename]; ok && h != u {
			// Rule 8: it waits for its basename, as in peekWork.
			l.blocked[u.filename] = append(l.blocked[u.filename], u)
			continue
		}
		l.locks[u.filename], u.locked = u, true
		u.staged, u.stagedAt = stageWriting, now
		l.stagedQ = append(l.stagedQ, u)
		in := store.Intent{Hash: u.hash, Path: u.path, Filename: u.filename, Size: u.size, Phase: store.PhaseCreate, StartedAt: now}
		l.writes = append(l.writes, &stageOp{u: u, intent: in})
		staged++
	}
}

// release forgets a path's note when nothing is under way for it.
func (l *loop) release(path string, p *pathJob) {
	if p.rehash && !p.busy() {
		l.startHash(path, p)
		return
	}
	if !p.busy() {
		delete(l.paths, path)
	}
}

func (l *loop) onHashed(d hashDone) {
	path := d.req.path
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: d.req.root}
		l.paths[path] = p
	}
	p.hashing = false
	p.size = d.res.ID.Size
	res := d.res
	switch res.Outcome {
	case hashVanished:
		l.release(path, p)
		return
	case hashIncomplete, hashChanged:
		l.e.log.Debug().Str("path", path).Err(res.Err).Msg("not complete yet: back to settling")
		l.settling[path] = true
		l.w.Resettle(path)
		p.rehash = false
		l.release(path, p)
		return
	}
	op := &decideOp{path: path, root: p.root, name: UploadName(path, res.Hash, l.e.cfg.RemoteName), res: res, force: p.force}
	switch res.Outcome {
	case hashInvalid:
		op.reason = "invalid"
	case hashTooLarge:
		op.reason = "too-large"
	case hashUnreadable:
		op.reason = "unreadable"
	case hashUnsupported:
		op.reason = "unsupported"
	}
	p.force = false
	p.deciding = true
	l.deciding++
	l.writes = append(l.writes, op)
}

func (l *loop) onDecided(o *decideOp) {
	path := o.path
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: o.root}
		l.paths[path] = p
	}
	p.deciding = false
	l.deciding--
	size := o.res.ID.Size
	log := l.e.log
	switch o.dec {
	case decUnchanged:
		l.done(func(pr *Progress) { pr.Unchanged++ }, size)
	case decLinked:
		log.Debug().Str("path", path).Str("hash", o.res.Hash.String()).Msg("linked to an uploaded content: no upload")
		l.e.m.links.Inc()
		l.done(func(pr *Progress) { pr.Linked++ }, size)
	case decSkipped:
		log.Info().Str("path", path).Msg("skipped: empty file, nothing to upload")
		l.done(func(pr *Progress) { pr.Skipped++ }, size)
	case decQuarantined:
		reason := o.reason
		if reason == "" {
			reason = "rejected"
		}
		if o.prevState != store.StateQuarantined || o.reason != "" {
			l.countQuarantine(path, reason, size, o.lastErr)
		} else {
			l.done(func(pr *Progress) { pr.Quarantined++; pr.QuarantineReasons[reason]++ }, size)
		}
	case decUpload:
		l.attach(path, p, o)
	}
	if !o.orphan.IsZero() {
		l.orphan(o.orphan, o.orphanSize)
	}
	l.release(path, p)
}

func (l *loop) countQuarantine(path, reason string, size int64, msg string) {
	l.e.log.Warn().Str("path", path).Str("reason", reason).Str("error", msg).Msg("quarantined: fix the file (or `tracesync retry` it) and it is tried again")
	l.e.m.quarantined.WithLabelValues(reason).Inc()
	l.done(func(pr *Progress) { pr.Quarantined++; pr.QuarantineReasons[reason]++ }, size)
}

// done counts one file reaching a final state.
func (l *loop) done(fn func(p *Progress), size int64) {
	l.e.progress(func(pr *Progress) {
		fn(pr)
		pr.FilesDone++
		pr.BytesDone += size
	})
}

// attach makes path wait for the upload of its content, creating the job.
func (l *loop) attach(path string, p *pathJob, o *decideOp) {
	h := o.res.Hash
	u := l.jobs[h]
	if u == nil {
		ct, err := client.ContentType(path)
		if err != nil {
			ct = "application/json"
		}
		u = &upload{hash: h, path: path, root: p.root, filename: o.name, contentType: ct, size: o.res.ID.Size,
			paths: map[string]bool{}, attempts: o.attempts}
		if o.hasIntent && o.intent.Phase == store.PhaseCreate {
			u.needResolve, u.intentAt = true, o.intent.StartedAt
			if o.intent.Filename != "" {
				u.filename = o.intent.Filename
			}
		}
		u.checkRemote = !u.needResolve && l.e.cfg.RemoteName == RemoteNameUnique && !l.e.cfg.NoRemoteCheck
		l.jobs[h] = u
		if o.next.After(l.now()) {
			l.schedule(u, o.next)
		} else {
			l.enqueue(u, false)
		}
	}
	u.paths[path] = true
	p.job = u
}

// ---- results ----

func (l *loop) onResult(r workResult) {
	if r.item.del != nil {
		l.onDeleteResult(r)
		return
	}
	u := r.item.up
	s := r.item.spec
	log := l.e.log
	l.noteCall(r)
	switch r.kind {
	case resCreated, resAdopted, resFound:
		u.state = jobRecording
		u.needResolve = false
		switch r.kind {
		case resAdopted:
			log.Info().Str("path", s.path).Str("hash", s.hash.String()).Strs("trace_ids", r.ids).
				Msg("recovered: adopted the traces of an upload whose create ran before a crash (no second create)")
		case resFound:
			log.Info().Str("path", s.path).Str("hash", s.hash.String()).Str("name", s.filename).Int("traces", len(r.ids)).
				Msg("already on the server: adopted the traces of this content's name, uploaded before by another tracesync or a lost state (no upload)")
		}
		l.writes = append(l.writes, &uploadedOp{recordOp: recordOp{hash: u.hash, filename: s.filename, size: s.size, ids: r.ids, attempts: u.attempts + 1}, u: u, r: r})
		return
	case resResolvedNone:
		if !u.background {
			l.resolving--
		}
		u.needResolve, u.resolveOnly, u.background = false, false, false
		l.unlock(u)
		// The listing found no create: the intent it resolved goes. The
		// upload enqueued below may start at once and write its own
		// intent before this clear commits; that one (started after the
		// listing) stays, or a crash during its create would leave
		// nothing to resolve and the next start would create it again.
		l.writes = append(l.writes, &intentOp{intent: store.Intent{Hash: u.hash}, clear: true, unlessAfter: r.listedAt})
		if len(u.paths) == 0 {
			l.dropJob(u)
			return
		}
		l.enqueue(u, false)
		return
	case resChanged, resVanished, resUnreadable:
		u.needResolve = u.needResolve || r.mayHaveCreated
		l.noteCreateAt(u, r)
		l.e.m.failures.WithLabelValues(map[resultKind]string{resChanged: "changed", resVanished: "vanished", resUnreadable: "unreadable"}[r.kind]).Inc()
		src := s.path
		if p := l.paths[src]; p != nil && p.job == u {
			p.job = nil
			delete(u.paths, src)
			defer l.release(src, p)
		} else {
			delete(u.paths, src)
		}
		switch r.kind {
		case resChanged:
			log.Warn().Str("path", src).Err(r.err).Msg("file changed during its upload: create not called, back to settling")
			l.settling[src] = true
			l.w.Resettle(src)
			l.writes = append(l.writes, &failOp{hash: u.hash, only: src, state: store.StatePending, lastErr: "changed during upload; waiting for it to settle"})
		case resUnreadable:
			l.writes = append(l.writes, &quarantineOp{path: src, root: u.root, reason: errText(r.err)})
			l.countQuarantine(src, "unreadable", s.size, errText(r.err))
		}
		if u.resolveOnly && !u.background {
			l.resolving--
		}
		u.resolveOnly, u.background = false, false
		if len(u.paths) == 0 {
			if u.needResolve {
				l.resolveInBackground(u)
				l.enqueue(u, false)
				return
			}
			l.writes = append(l.writes, &intentOp{intent: store.Intent{Hash: u.hash}, clear: true, unlessAfter: r.createAt})
			l.dropJob(u)
			return
		}
		for other := range u.paths {
			u.path = other
			if p := l.paths[other]; p != nil {
				u.root = p.root
			}
			break
		}
		if !u.needResolve {
			l.unlock(u)
		}
		l.enqueue(u, true)
		return
	}

	// resFailed
	u.needResolve = u.needResolve || r.mayHaveCreated
	l.noteCreateAt(u, r)
	switch r.class {
	case client.ClassCanceled:
		// Shutting down: the store keeps the path pending and any intent.
		if u.resolveOnly && !u.background {
			l.resolving--
			u.resolveOnly = false // dropJob must not count it again
		}
		l.dropJob(u)
		for path := range u.paths {
			if p := l.paths[path]; p != nil && p.job == u {
				p.job = nil
				l.release(path, p)
			}
		}
		return
	case client.ClassAuth:
		l.e.m.failures.WithLabelValues("auth").Inc()
		l.pause("the API key was rejected (HTTP 401/403); fix the key (LAYERLENS_STRATIX_API_KEY or --api-key-file) — probing until it works", r.err)
		u.state = jobPaused
		if !u.needResolve {
			l.unlock(u)
		}
		return
	case client.ClassPermanent, client.ClassNotFound:
		if r.stage == "recover" || r.stage == "check" {
			break // listing refused: treat as transient below
		}
		l.e.m.failures.WithLabelValues("permanent").Inc()
		msg := fmt.Sprintf("rejected by the API (%s): %v; fix the file and it is retried", r.stage, r.err)
		l.writes = append(l.writes, &failOp{hash: u.hash, state: store.StateQuarantined, lastErr: msg, deleteIntent: true})
		if u.resolveOnly && !u.background {
			l.resolving--
			u.resolveOnly = false // dropJob must not count it again
		}
		l.dropJob(u)
		for path := range u.paths {
			l.countQuarantine(path, "rejected", s.size, msg)
			if p := l.paths[path]; p != nil && p.job == u {
				p.job = nil
				l.release(path, p)
			}
		}
		return
	}
	// Transient (and represign past its bound): back off, keep the schedule.
	l.e.m.failures.WithLabelValues("transient").Inc()
	l.e.m.retries.Inc()
	u.attempts++
	if u.bo == nil {
		// Made at the first failure, not with the job: most jobs never
		// fail, and a backlog of queued jobs should not carry one each.
		u.bo = l.newBackoff(u.attempts - 1)
	}
	wait := u.bo.NextBackOff()
	if ra := client.RetryAfter(r.err); ra > wait {
		wait = ra
	}
	next := l.now().Add(wait)
	log.Warn().Str("path", s.path).Str("stage", r.stage).Int("attempt", u.attempts).Dur("retry_in", wait).Err(r.err).Msg("upload failed; will retry")
	if !u.resolveOnly {
		l.writes = append(l.writes, &failOp{hash: u.hash, state: store.StateRetrying, attempts: u.attempts, next: next,
			lastErr: fmt.Sprintf("%v (attempt %d; retrying at %s)", r.err, u.attempts, next.UTC().Format(time.RFC3339))})
	}
	if !u.needResolve {
		l.unlock(u)
	}
	l.schedule(u, next)
}

// uploadedOp is recordOp plus what the loop needs when it is durable.
type uploadedOp struct {
	recordOp
	u *upload
	r workResult
}

func (l *loop) onUploaded(o *uploadedOp) {
	u, r := o.u, o.r
	l.dropJob(u)
	if r.kind == resCreated {
		l.e.m.uploads.Inc()
		l.e.m.bytes.Add(float64(u.size))
		l.e.m.latency.Observe(r.dur.Seconds())
		l.e.progress(func(p *Progress) { p.BytesUploaded += u.size })
		l.e.log.Info().Str("path", u.path).Str("hash", u.hash.String()).Int64("bytes", u.size).Int("traces", len(r.ids)).
			Int("attempt", u.attempts+1).Dur("duration", r.dur).Msg("uploaded")
	} else {
		l.e.m.uploads.Inc()
	}
	first := true
	for path := range u.paths {
		p := l.paths[path]
		if first && path == u.path && r.kind == resFound {
			l.done(func(pr *Progress) { pr.Adopted++ }, u.size)
			first = false
		} else if first && path == u.path {
			l.done(func(pr *Progress) { pr.Uploaded++ }, u.size)
			first = false
		} else {
			l.done(func(pr *Progress) { pr.Linked++ }, u.size)
		}
		if p != nil && p.job == u {
			p.job = nil
			l.release(path, p)
		}
	}
	if o.orphaned {
		l.orphan(u.hash, u.size) // re-checked when due: a path may come back
	}
}

// noteCall counts one API call's answer toward pausing the pool as one
// (rule 11): connection failures in a row, or most recent calls answered
// 502, 503 or 504.
func (l *loop) noteCall(r workResult) {
	failed := r.kind == resFailed
	if failed && r.class == client.ClassCanceled {
		return
	}
	if failed && r.transport {
		l.connFails++
	} else {
		l.connFails = 0
	}
	down := l.outage.add(failed && (r.transport || unavailableAnswer(r.err)))
	switch {
	case l.connFails >= l.e.cfg.ConnFailures:
		l.pause(fmt.Sprintf("the API is unreachable (%d connection failures in a row)", l.connFails), r.err)
	case down:
		l.pause(fmt.Sprintf("the API answers that it is unavailable (502/503/504) to %d of the last %d calls", l.outage.down, l.outage.n), r.err)
	}
}

func (l *loop) onDeleteResult(r workResult) {
	l.noteCall(r)
	d := r.item.del
	d.running = false
	id := d.d.TraceID
	if r.kind == resDeleted {
		res := "deleted"
		if r.err != nil {
			res = "already-gone"
		}
		l.e.m.deletes.WithLabelValues(res).Inc()
		l.e.log.Info().Str("trace_id", id).Str("hash", d.d.Hash.String()).Str("result", res).Msg("remote trace deleted")
		delete(l.dels, id)
		l.e.progress(func(p *Progress) { p.DeletesDone++ })
		l.writes = append(l.writes, &deleteDoneOp{id: id})
		return
	}
	switch r.class {
	case client.ClassCanceled:
		return
	case client.ClassAuth:
		l.pause("the API key was rejected (HTTP 401/403); fix the key — probing until it works", r.err)
		d.queued = true
		l.delQ = append(l.delQ, d)
		return
	}
	l.e.m.deletes.WithLabelValues("failed").Inc()
	d.d.Attempts++
	wait := d.bo.NextBackOff()
	if r.class == client.ClassPermanent {
		wait = l.e.cfg.MaxBackoff
	}
	if ra := client.RetryAfter(r.err); ra > wait {
		wait = ra
	}
	next := l.now().Add(wait)
	d.d.NextAttempt, d.d.LastError = next, errText(r.err)
	l.e.log.Warn().Str("trace_id", id).Int("attempt", d.d.Attempts).Dur("retry_in", wait).Err(r.err).Msg("remote delete failed; will retry")
	l.writes = append(l.writes, &deleteFailOp{id: id, attempts: d.d.Attempts, next: next, lastErr: d.d.LastError})
	heap.Push(&l.sched, schedItem{at: next, del: d})
}

func (l *loop) addDelete(d store.Delete) {
	if _, ok := l.dels[d.TraceID]; ok {
		return
	}
	j := &delJob{d: d, bo: l.newBackoff(d.Attempts)}
	l.dels[d.TraceID] = j
	if d.NextAttempt.After(l.now()) {
		heap.Push(&l.sched, schedItem{at: d.NextAttempt, del: j})
		return
	}
	j.queued = true
	l.delQ = append(l.delQ, j)
}

func (l *loop) loadDeletes() {
	ds, err := l.e.st.Deletes()
	if err != nil {
		l.e.log.Error().Err(err).Msg("read pending deletes")
		return
	}
	for _, d := range ds {
		l.addDelete(d)
	}
}

// orphan schedules the check-then-delete of a content without paths (rule 4).
func (l *loop) orphan(h store.Hash, size int64) {
	if !l.e.cfg.DeleteOnRemove {
		return // the content stays: the same bytes reappearing are linked, not uploaded
	}
	l.orphans[h] = orphanTimer{at: l.now().Add(l.e.cfg.DeleteDelay), size: size}
}

func (l *loop) onWritten(d writeDone) {
	if d.err != nil {
		l.e.log.Error().Err(d.err).Msg("cannot write the state store: stopping")
		if l.fatal == nil {
			l.fatal = fmt.Errorf("write state store: %w", d.err)
		}
		l.stopping = true
		return
	}
	for _, o := range d.ops {
		switch o := o.(type) {
		case *decideOp:
			l.onDecided(o)
		case *uploadedOp:
			l.onUploaded(o)
		case *removeOp:
			for _, or := range o.orphans {
				l.orphan(or.hash, or.size)
			}
		case *orphanOp:
			for _, del := range o.deletes {
				l.addDelete(del)
			}
			if len(o.deletes) > 0 {
				l.e.log.Info().Str("hash", o.hash.String()).Int("traces", len(o.deletes)).Msg("content has no file left: deleting its traces")
			}
		case *requeueOp:
			for _, rec := range o.recs {
				l.onReady(rec.Path, rec.Root, rec.Size, true)
			}
		case *stageOp:
			if o.u.staged == stageWriting && o.u.stagedAt.Equal(o.intent.StartedAt) {
				o.u.staged = stageDurable
			}
		case *unstageOp:
			l.unlock(o.u)
		}
	}
}

func (l *loop) onRequeue(paths []string) {
	l.writes = append(l.writes, &requeueOp{paths: paths})
}

// ---- start-up ----

// startup resolves what a previous run left: create-phase intents (rule 9),
// pending and retrying paths (keeping their schedule), pending deletes,
// and contents orphaned before a restart.
func (l *loop) startup() error {
	e := l.e
	intents, err := e.st.Intents()
	if err != nil {
		return fmt.Errorf("read upload intents: %w", err)
	}
	stale := map[store.Hash]bool{}
	for _, in := range intents {
		if in.Phase != store.PhaseCreate {
			stale[in.Hash] = true
			continue
		}
		ct, _ := client.ContentType(in.Filename)
		u := &upload{hash: in.Hash, path: in.Path, filename: in.Filename, contentType: ct, size: in.Size,
			paths: map[string]bool{}, needResolve: true, resolveOnly: true, intentAt: in.StartedAt}
		l.jobs[in.Hash] = u
		l.resolving++
		l.enqueue(u, false)
	}
	if l.resolving > 0 {
		e.log.Info().Int("intents", l.resolving).Msg("resolving uploads a crash interrupted after create may have run, before any new upload")
	}
	ds, err := e.st.Deletes()
	if err != nil {
		return fmt.Errorf("read pending deletes: %w", err)
	}
	for _, d := range ds {
		l.addDelete(d)
	}
	now := l.now()
	removedHashes := map[store.Hash]time.Time{}
	recent := map[store.Hash][]time.Time{}
	err = e.st.ForEachPath("", func(rec store.PathRecord) error {
		l.noteRecord(rec, now, recent)
		switch rec.State {
		case store.StatePending, store.StateRetrying:
			delete(stale, rec.Hash)
			if rec.Hash.IsZero() {
				l.onReady(rec.Path, rec.Root, rec.Size, false)
				l.e.progress(func(p *Progress) { p.FilesSeen--; p.BytesSeen -= rec.Size })
				return nil
			}
			p := &pathJob{root: rec.Root, size: rec.Size}
			l.paths[rec.Path] = p
			if u := l.jobs[rec.Hash]; u != nil {
				u.paths[rec.Path] = true
				if u.root == "" {
					u.root = rec.Root
				}
				p.job = u
				return nil
			}
			if _, err := e.st.GetContent(rec.Hash); err == nil {
				// Uploaded meanwhile under another path: hash and link.
				l.startHash(rec.Path, p)
				return nil
			}
			o := &decideOp{path: rec.Path, root: rec.Root, name: UploadName(rec.Path, rec.Hash, e.cfg.RemoteName), res: hashResult{Hash: rec.Hash, ID: fileID{Size: rec.Size}},
				attempts: rec.Attempts, next: rec.NextAttempt}
			l.attach(rec.Path, p, o)
		case store.StateRemoved:
			if e.cfg.DeleteOnRemove && !rec.Hash.IsZero() {
				at := rec.RemovedAt.Add(e.cfg.DeleteDelay)
				if old, ok := removedHashes[rec.Hash]; !ok || at.After(old) {
					removedHashes[rec.Hash] = at
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read tracked paths: %w", err)
	}
	l.restoreBudget(recent)
	// Contents orphaned before a restart (rule 4), re-checked when due.
	for h, at := range removedHashes {
		if l.jobs[h] != nil {
			continue
		}
		if refs, err := e.st.Refs(h); err != nil || len(refs) > 0 {
			continue
		}
		c, err := e.st.GetContent(h)
		if err != nil {
			continue
		}
		if at.Before(now) {
			at = now
		}
		l.orphans[h] = orphanTimer{at: at, size: c.Size}
	}
	for h := range stale {
		if l.jobs[h] == nil {
			l.writes = append(l.writes, &intentOp{intent: store.Intent{Hash: h}, clear: true})
		}
	}
	return nil
}
