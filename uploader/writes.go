package uploader

// writes.go owns the store writes the loop decides: handed to the store
// in order without waiting (Store.Submit), and acted on once durable.

import (
	"fmt"
	"sync"

	"github.com/tracesync/tracesync/store"
)

// writeDone is one op the store committed, or failed to.
type writeDone struct {
	o   op
	err error
}

// writeBox is where the store's writer leaves the outcome of each op the
// loop submitted, in order; the loop empties it when sig says so.
type writeBox struct {
	mu   sync.Mutex
	done []writeDone
	sig  chan struct{} // buffered 1
}

func (b *writeBox) put(d writeDone) {
	b.mu.Lock()
	b.done = append(b.done, d)
	b.mu.Unlock()
	select {
	case b.sig <- struct{}{}:
	default:
	}
}

func (b *writeBox) take() []writeDone {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.done
	b.done = nil
	return d
}

// submitWrites hands the ops decided so far to the store, in order,
// without waiting: the store's writer groups them with every other write
// into its transactions, the one batching layer there is, and each op's
// outcome comes back through the box.
func (l *loop) submitWrites() {
	for _, o := range l.writes {
		l.submitted++
		err := l.e.st.Submit(func(tx *store.Tx) error { return o.apply(tx, l.now()) },
			func(err error) { l.box.put(writeDone{o: o, err: err}) })
		if err != nil {
			l.box.put(writeDone{o: o, err: err})
		}
	}
	clear(l.writes)
	l.writes = l.writes[:0]
}

// onWrites acts on the ops the store has committed, in order.
func (l *loop) onWrites() {
	for _, d := range l.box.take() {
		l.submitted--
		l.onWritten(d)
	}
}

func (l *loop) onWritten(d writeDone) {
	if d.err != nil {
		if l.fatal == nil {
			l.e.log.Error().Err(d.err).Msg("cannot write the state store: stopping")
			l.fatal = fmt.Errorf("write state store: %w", d.err)
		}
		l.stopping = true
		return
	}
	{
		switch o := d.o.(type) {
		case *decideOp:
			l.onDecided(o)
		case *uploadedOp:
			l.onUploaded(o)
		case *removeOp:
			kept := map[string]bool{}
			for _, rec := range o.moved {
				if l.movedAway(rec.Path, rec, fileID{}) {
					kept[rec.Path] = true
				}
			}
			for _, or := range o.orphans {
				if !kept[or.path] {
					l.orphan(or.hash, or.size, or.path)
				}
			}
		case *orphanOp:
			for _, del := range o.deletes {
				l.addDelete(del)
			}
			if len(o.deletes) > 0 {
				ev := l.e.log.Info().Str("hash", o.hash.String()).Int("traces", len(o.deletes))
				if o.from != "" {
					ev = ev.Str("path", o.from)
				}
				ev.Msg("content has no file left: deleting its traces")
			}
		case *requeueOp:
			for _, rec := range o.recs {
				l.onReady(rec.Path, rec.Root, rec.Size, true, false)
			}
		case *stageOp:
			if o.u.staged == stageWriting && o.u.stagedAt.Equal(o.intent.StartedAt) {
				o.u.staged = stageDurable
			}
		case *unstageOp:
			l.unlock(o.u)
		case *afterUploadOp:
			l.afterUploadWritten(o)
		}
	}
}
