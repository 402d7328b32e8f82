package uploader

// staging.go owns the uploads staged ahead of a free worker: their
// create-phase intents written in the loop's batched commits (rule 9).

import (
	"github.com/tracesync/tracesync/store"
)

// unstage puts a staged job's intent back in the presign phase; the job's
// name lock is released when that is durable (onWritten).
func (l *loop) unstage(u *upload) {
	u.staged = stageNone
	l.writes = append(l.writes, &unstageOp{u: u, hash: u.hash, at: u.stagedAt})
}

// maxStaged is how many jobs stageMore keeps ready ahead of the workers:
// four per worker, enough to cover the two commits a staged intent may
// wait for (the one being written, then its own) in a backfill of small
// files (README, Performance). It is also the most create-phase intents
// of uploads that never ran a SIGKILL can leave: each costs one listing
// at the next start.
func (l *loop) maxStaged() int { return 4 * l.limit() }

// stageMore writes ahead, with the loop's other writes (one commit for
// many), the create-phase intents (rule 9) of the next queued uploads
// while every worker is busy, and takes their name locks (rule 8) from
// then. A worker that takes a staged job goes straight to presign, PUT
// and create: without it, each upload's own intent commit, queued behind
// the other commits, was the largest part of a worker's turn in a backfill
// of small files. Jobs are staged only when no worker is free: an upload
// that can start now writes its own intent while its presign and PUT run,
// which is quicker for a single file.
func (l *loop) stageMore() {
	if l.stopping || l.paused || l.fatal != nil || l.resolving > 0 || l.inflight < l.limit() {
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
		if u.resolve != resolveNone {
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
