package watcher

import (
	"context"
	"sync"
)

// outQueue sits between the event goroutine and the consumer: push never
// blocks, so a consumer that falls behind never stalls the reading of
// inotify events. Scanners, which can produce without bound, wait for it
// to drain below a high-water mark first (waitRoom), so a scan of a
// million files never holds a million events.
type outQueue struct {
	mu     sync.Mutex // guards items, closed, pending and out's fast path
	items  []Event
	closed bool
	// pending counts events pushed and not yet delivered (queued, or
	// taken by run and in flight). While it is 0, push may hand an event
	// straight to out without breaking the order.
	pending int
	out     chan<- Event

	ready   chan struct{} // cap 1: items became non-empty, or closed
	drained chan struct{} // cap 1: run took what was queued
	// highWater is how many queued events make waitRoom wait.
	highWater int
}

// queueHighWater is outQueue.highWater outside tests.
const queueHighWater = 4096

func newOutQueue(out chan<- Event) *outQueue {
	return &outQueue{out: out, ready: make(chan struct{}, 1), drained: make(chan struct{}, 1), highWater: queueHighWater}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (q *outQueue) push(ev Event) {
	q.mu.Lock()
	if q.pending == 0 && !q.closed {
		// Nothing ahead of it: deliver directly if out has room, saving
		// a goroutine hand-off.
		select {
		case q.out <- ev:
			q.mu.Unlock()
			return
		default:
		}
	}
	q.items = append(q.items, ev)
	q.pending++
	q.mu.Unlock()
	signal(q.ready)
}

func (q *outQueue) delivered() {
	q.mu.Lock()
	q.pending--
	q.mu.Unlock()
}

// close marks the end: run delivers what is queued, then returns.
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.ready)
}

func (q *outQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// waitRoom blocks until the queue is below the high-water mark.
func (q *outQueue) waitRoom(ctx context.Context) error {
	for q.len() >= q.highWater {
		select {
		case <-q.drained:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// run delivers queued events to out until ctx is done, or until close was
// called and everything queued was delivered. It closes out on return.
func (q *outQueue) run(ctx context.Context) {
	out := q.out
	defer func() {
		q.mu.Lock()
		q.closed = true // no more direct sends: out is closed
		close(out)
		q.mu.Unlock()
	}()
	var batch []Event
	for {
		q.mu.Lock()
		batch, q.items = q.items, batch[:0]
		closed := q.closed
		q.mu.Unlock()
		signal(q.drained)
		for i, ev := range batch {
			select {
			case out <- ev:
				q.delivered()
			case <-ctx.Done():
				return
			}
			batch[i] = Event{} // a ScanDone holds its scan's keys: not past delivery
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return
		}
	}
}
