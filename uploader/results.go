package uploader

// results.go owns what the loop does with a worker's answer about an
// upload: record it, retry it, quarantine it, or resolve a create that may
// have run (rule 9).

import (
	"fmt"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

// resolveInBackground keeps a job whose bytes lost their last path while a
// create of them may have run: it lists and adopts those traces (rule 9)
// now, with delete-on-remove then deletes them (rule 4), and holds the
// basename (rule 8) until then; a job dropped here would leave its intent
// for the next start to resolve.
func (l *loop) resolveInBackground(u *upload) {
	if u.resolve == resolveFirst {
		l.setResolve(u, resolveAlone)
	}
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
	l.setResolve(u, resolveNone)
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
		l.setResolve(u, resolveNone)
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
		l.mayHaveCreated(u, r)
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
		if u.resolve.only() {
			l.setResolve(u, resolveFirst) // it has a path again: it may upload
		}
		if len(u.paths) == 0 {
			if u.resolve != resolveNone {
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
		if u.resolve == resolveNone {
			l.unlock(u)
		}
		l.enqueue(u, true)
		return
	}

	// resFailed
	l.mayHaveCreated(u, r)
	switch r.class {
	case client.ClassCanceled:
		// Shutting down: the store keeps the path pending and any intent.
		l.dropJob(u)
		l.releasePaths(u, nil)
		return
	case client.ClassAuth:
		l.e.m.failures.WithLabelValues("auth").Inc()
		l.pause("the API key was rejected (HTTP 401/403); fix "+l.e.cfg.Hints.key()+" — probing until it works", r.err)
		u.state = jobPaused
		if u.resolve == resolveNone {
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
		l.dropJob(u)
		l.releasePaths(u, func(path string) { l.countQuarantine(path, "rejected", s.size, msg) })
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
	if !u.resolve.only() {
		l.writes = append(l.writes, &failOp{hash: u.hash, state: store.StateRetrying, attempts: u.attempts, next: next,
			lastErr: fmt.Sprintf("%v (attempt %d; retrying at %s)", r.err, u.attempts, next.UTC().Format(time.RFC3339))})
	}
	if u.resolve == resolveNone {
		l.unlock(u)
	}
	l.schedule(u, next)
}

// releasePaths lets go of every path waiting for u, after fn (when set)
// has counted each.
func (l *loop) releasePaths(u *upload, fn func(path string)) {
	for path := range u.paths {
		if fn != nil {
			fn(path)
		}
		if p := l.paths[path]; p != nil && p.job == u {
			p.job = nil
			l.release(path, p)
		}
	}
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
	if isJSONL(u.path) {
		l.e.m.segments.Inc()
	}
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
	due, growing := l.afterUploadPaths(u, o.paths)
	l.releasePaths(u, func(path string) {
		l.noteSent(path, u.offset+u.size)
		switch {
		case path == u.path && r.kind == resFound:
			l.doneFor(path, func(pr *Progress) { pr.Adopted++ }, u.size)
		case path == u.path:
			l.doneFor(path, func(pr *Progress) { pr.Uploaded++ }, u.size)
		default:
			l.doneFor(path, func(pr *Progress) { pr.Linked++ }, u.size)
		}
	})
	if o.orphaned {
		l.orphan(u.hash, u.size, "") // re-checked when due: a path may come back
	}
	l.afterUpload(due, growing)
}
