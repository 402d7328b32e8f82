package uploader

// deletes.go owns the remote deletes of contents no path holds any more
// (rule 4): the orphan timers, the delete jobs and their retries.

import (
	"container/heap"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

// delJob is one remote delete.
type delJob struct {
	d       store.Delete
	bo      *backoff.ExponentialBackOff
	running bool
	queued  bool
}

type orphanTimer struct {
	at   time.Time
	size int64
	from string // the removed path that held the content last; "" if unknown
}

// deleteTally counts one content's trace deletes, so the log says once
// that its traces are gone rather than once per trace.
type deleteTally struct {
	total, done, gone int
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
		l.e.log.Debug().Str("trace_id", id).Str("hash", d.d.Hash.String()).Str("result", res).Msg("remote trace deleted")
		l.tallyDelete(d.d.Hash, r.err != nil)
		delete(l.dels, id)
		l.e.progress(func(p *Progress) { p.DeletesDone++ })
		l.writes = append(l.writes, &deleteDoneOp{id: id})
		return
	}
	switch r.class {
	case client.ClassCanceled:
		return
	case client.ClassAuth:
		l.pause("the API key was rejected (HTTP 401/403); fix "+l.e.cfg.Hints.key()+" — probing until it works", r.err)
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
	t := l.delTally[d.Hash]
	if t == nil {
		t = &deleteTally{}
		l.delTally[d.Hash] = t
	}
	t.total++
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

// tallyDelete counts a done delete of content h's traces and, with the
// last one, logs one line for the content.
func (l *loop) tallyDelete(h store.Hash, alreadyGone bool) {
	t := l.delTally[h]
	if t == nil {
		return
	}
	t.done++
	if alreadyGone {
		t.gone++
	}
	if t.done < t.total {
		return
	}
	delete(l.delTally, h)
	ev := l.e.log.Info().Str("hash", h.String()).Int("traces", t.total)
	if t.gone > 0 {
		ev = ev.Int("already_gone", t.gone)
	}
	ev.Msg("remote traces deleted")
}

// orphan schedules the check-then-delete of a content without paths (rule
// 4); from is the removed path that held it last, when known.
func (l *loop) orphan(h store.Hash, size int64, from string) {
	if !l.e.cfg.DeleteOnRemove {
		return // the content stays: the same bytes reappearing are linked, not uploaded
	}
	l.orphans[h] = orphanTimer{at: l.now().Add(l.e.cfg.DeleteDelay), size: size, from: from}
}
