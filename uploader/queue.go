package uploader

// queue.go owns the uploads waiting for a worker: their states, the ready
// queue and the schedule of retries, and the lock that keeps one upload
// name between presign and create at a time (rule 8).

import (
	"container/heap"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tracesync/tracesync/store"
)

type jobState uint8

// resolveMode says whether an upload must first look for the traces of a
// create that may have run (rule 9), and what it may do then.
type resolveMode uint8

const (
	resolveNone    resolveMode = iota // no create of it can have run: upload
	resolveFirst                      // one may have run: list and adopt its traces, else upload
	resolveAtStart                    // a leftover intent at start: list and adopt only; new uploads wait (loop.resolving)
	resolveAlone                      // its bytes lost their last path: list and adopt only, beside the uploads
)

// only reports whether the upload only resolves, and uploads nothing.
func (m resolveMode) only() bool { return m == resolveAtStart || m == resolveAlone }

// setResolve moves u to mode, keeping l.resolving, the start's leftover
// intents still to resolve, in step.
func (l *loop) setResolve(u *upload, mode resolveMode) {
	if u.resolve == resolveAtStart {
		l.resolving--
	}
	if mode == resolveAtStart {
		l.resolving++
	}
	u.resolve = mode
}

// mayHaveCreated notes that a create of u may have run: the next attempt
// looks for its traces first.
func (l *loop) mayHaveCreated(u *upload, r workResult) {
	if r.mayHaveCreated && u.resolve == resolveNone {
		u.resolve = resolveFirst
	}
	l.noteCreateAt(u, r)
}

type stageState uint8

const (
	stageNone stageState = iota
	stageWriting
	stageDurable
)

const (
	jobQueued    jobState = iota + 1 // in readyQ (or blocked on its upload name)
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
	offset      int64 // where the content starts in path (a segment of a growing file)
	wrap        bool  // a part of a .json array: the bytes from offset, in brackets
	paths       map[string]bool
	attempts    int
	bo          *backoff.ExponentialBackOff
	next        time.Time
	state       jobState
	resolve     resolveMode
	checkRemote bool // ask the server for traces of filename before uploading (rule 15)
	intentAt    time.Time
	locked      bool // holds the lock on its upload name
	// staged: the create-phase intent of this job's next attempt is being
	// written (stageWriting) or is durable (stageDurable) ahead of its
	// dispatch, so the worker that takes it does not wait for a commit of
	// its own; set while the job waits in stagedQ (see stageMore).
	staged   stageState
	stagedAt time.Time // that intent's StartedAt
	dropped  bool      // removed from jobs; skip wherever it is still queued
	firstTry time.Time
}

type schedItem struct {
	at  time.Time
	up  *upload
	del *delJob
}

type schedHeap []schedItem

func (h schedHeap) Len() int { return len(h) }

func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }

func (h schedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *schedHeap) Push(x any) { *h = append(*h, x.(schedItem)) }

func (h *schedHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// enqueue puts a job in line for a worker.
func (l *loop) enqueue(u *upload, front bool) {
	u.state = jobQueued
	q := &l.readyQ
	if u.resolve == resolveAtStart {
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
			// Rule 8: one upload name between presign and create at a time.
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
	s := uploadSpec{hash: u.hash, path: u.path, filename: u.filename, contentType: u.contentType, size: u.size, offset: u.offset, wrap: u.wrap,
		needResolve: u.resolve != resolveNone, resolveOnly: u.resolve.only(), checkRemote: u.checkRemote, intentAt: u.intentAt, attempt: u.attempts + 1}
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
	case u.resolve == resolveAtStart:
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

// unlock releases the lock on u's upload name and lets the next waiter in line.
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
