package uploader

// writes.go owns the store writes the loop decides: one goroutine applies
// them in batches, in order, and the loop acts on each once it is durable.

import (
	"context"
	"fmt"

	"github.com/tracesync/tracesync/store"
)

type writeDone struct {
	ops []op
	err error
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
