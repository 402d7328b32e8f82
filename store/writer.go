package store

import (
	"context"
	"fmt"
	"time"
)

// request is one caller's Update waiting for its transaction, or one
// Submit whose callback hears the outcome.
type request struct {
	fn   func(*Tx) error
	done chan error  // Update's: buffered 1, the writer never blocks on an answer
	cb   func(error) // Submit's
}

func (r *request) answer(err error) {
	if r.cb != nil {
		r.cb(err)
		return
	}
	r.done <- err
}

// Update runs fn in a write transaction and returns once that transaction
// is durably committed (fsync'd), or with fn's own error.
//
// Updates from many goroutines are grouped by one writer goroutine: it runs
// every function queued when it starts a transaction (those that arrived
// during the previous commit, plus any within Options.CommitInterval; at
// most Options.MaxBatch) in one bbolt transaction and commits once, so
// recording a result costs a share of one fsync. If fn returns an error (or
// panics), that transaction is rolled back, fn is run again alone in a
// transaction of its own (whose outcome it gets), and the other functions
// are run again without it, exactly like bbolt's Batch. So fn may run more
// than once and must only act through tx: no side effects outside it.
//
// ctx bounds only the wait to hand fn to the writer; once handed over, Update
// waits for the commit, so that its answer always tells whether fn's writes
// are in the file.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if db.target == "" {
		return ErrNoTarget
	}
	if db.readOnly {
		return fmt.Errorf("%w (%s): this command needs the state directory writable", ErrReadOnly, db.file)
	}
	r := &request{fn: fn, done: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	select {
	case db.reqs <- r:
		db.mu.RUnlock()
	case <-ctx.Done():
		db.mu.RUnlock()
		return ctx.Err()
	}
	return <-r.done
}

// Submit queues fn for the writer and returns at once: the engine's loop,
// which must never wait for a commit, hands its writes over this way, in
// order, and they share transactions with every other Update. cb is called
// on the writer's goroutine once fn's transaction is committed (nil) or
// with fn's error, so it must not block. fn may run more than once, as
// with Update.
func (db *DB) Submit(fn func(*Tx) error, cb func(error)) error {
	if db.target == "" {
		return ErrNoTarget
	}
	if db.readOnly {
		return fmt.Errorf("%w (%s): this command needs the state directory writable", ErrReadOnly, db.file)
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return ErrClosed
	}
	db.subMu.Lock()
	db.submitted = append(db.submitted, &request{fn: fn, cb: cb})
	db.subMu.Unlock()
	select {
	case db.kick <- struct{}{}:
	default:
	}
	return nil
}

// takeSubmitted moves Submit's requests, oldest first, into batch up to
// MaxBatch, and kicks the writer again when some are left.
func (db *DB) takeSubmitted(batch []*request) []*request {
	db.subMu.Lock()
	n := min(len(db.submitted), db.maxBatch-len(batch))
	batch = append(batch, db.submitted[:n]...)
	db.submitted = db.submitted[n:]
	left := len(db.submitted) > 0
	if !left {
		db.submitted = nil
	}
	db.subMu.Unlock()
	if left {
		select {
		case db.kick <- struct{}{}:
		default:
		}
	}
	return batch
}

// writer is the one goroutine that writes; it is owned by the DB and exits
// when Close closes quit, after committing everything already queued.
func (db *DB) writer() {
	defer close(db.writerDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]*request, 0, db.maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-db.reqs:
			batch = append(batch, r)
		case <-db.kick:
			batch = db.takeSubmitted(batch)
		case <-db.quit:
			db.drain()
			return
		}
		batch = db.collect(batch, timer)
		if len(batch) > 0 {
			db.commit(batch)
		}
	}
}

// collect adds to batch what is queued now and, when CommitInterval is
// positive, what arrives within it, up to MaxBatch.
func (db *DB) collect(batch []*request, timer *time.Timer) []*request {
	batch = db.takeSubmitted(batch)
	for len(batch) < db.maxBatch {
		select {
		case r := <-db.reqs:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	if db.commitInterval <= 0 || len(batch) >= db.maxBatch {
		return batch
	}
	timer.Reset(db.commitInterval)
	defer timer.Stop()
	for len(batch) < db.maxBatch {
		select {
		case r := <-db.reqs:
			batch = append(batch, r)
		case <-db.kick:
			batch = db.takeSubmitted(batch)
		case <-timer.C:
			return batch
		case <-db.quit:
			return batch // drained after this commit
		}
	}
	return batch
}

// drain commits whatever is queued once Close has been called; no new
// request can arrive (Update checks closed under mu).
func (db *DB) drain() {
	for {
		batch := db.takeSubmitted(make([]*request, 0, db.maxBatch))
	fill:
		for len(batch) < db.maxBatch {
			select {
			case r := <-db.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		db.commit(batch)
	}
}

// commit runs batch in one transaction. A function that fails is taken
// out, the transaction is rolled back and the rest run again; each failed
// function then runs alone, and its own outcome is its answer.
func (db *DB) commit(batch []*request) {
	var failed []*request
	for len(batch) > 0 {
		btx, err := db.bolt.Begin(true)
		if err != nil {
			answer(batch, fmt.Errorf("store: begin write: %w", err))
			batch = nil
			break
		}
		tx := newTx(btx, db.target, db.dirs)
		bad := -1
		for i, r := range batch {
			if err := call(r.fn, tx); err != nil {
				bad = i
				break
			}
		}
		if bad >= 0 {
			_ = btx.Rollback()
			failed = append(failed, batch[bad])
			batch = append(batch[:bad:bad], batch[bad+1:]...)
			continue
		}
		if err := tx.flushCounts(); err != nil {
			_ = btx.Rollback()
			answer(batch, fmt.Errorf("store: write counts: %w", err))
			break
		}
		if err := btx.Commit(); err != nil {
			answer(batch, fmt.Errorf("store: commit: %w", err))
		} else {
			answer(batch, nil)
		}
		break
	}
	for _, r := range failed {
		r.answer(db.runAlone(r.fn))
	}
}

// runAlone runs fn in a transaction of its own.
func (db *DB) runAlone(fn func(*Tx) error) error {
	btx, err := db.bolt.Begin(true)
	if err != nil {
		return fmt.Errorf("store: begin write: %w", err)
	}
	tx := newTx(btx, db.target, db.dirs)
	if err := call(fn, tx); err != nil {
		_ = btx.Rollback()
		return err
	}
	if err := tx.flushCounts(); err != nil {
		_ = btx.Rollback()
		return fmt.Errorf("store: write counts: %w", err)
	}
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func answer(batch []*request, err error) {
	for _, r := range batch {
		r.answer(err)
	}
}

// call runs fn, turning a panic into an error for its caller alone.
func call(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: update function panicked: %v", p)
		}
	}()
	return fn(tx)
}
