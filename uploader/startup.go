package uploader

// startup.go owns what a start resolves of the previous run: create-phase
// intents (rule 9), pending and retrying paths with their schedule,
// pending deletes and contents orphaned before the restart.

import (
	"errors"
	"fmt"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

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
			paths: map[string]bool{}, intentAt: in.StartedAt}
		l.jobs[in.Hash] = u
		l.setResolve(u, resolveAtStart)
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
	// One pass over every record reads only what says whether something is
	// left to do for it; the few that have are read whole afterwards.
	var left []string
	err = e.st.ScanPaths("", func(p, root []byte, rec store.PathStat) bool {
		switch rec.State {
		case store.StatePending, store.StateRetrying:
			left = append(left, string(p))
		case store.StateRemoved:
			if e.cfg.DeleteOnRemove && rec.Hashed {
				left = append(left, string(p))
			}
			return true
		}
		l.noteDevice(root, rec.Dev)
		return true
	})
	if err != nil {
		return fmt.Errorf("read tracked paths: %w", err)
	}
	for _, p := range left {
		rec, err := e.st.GetPath(p)
		if errors.Is(err, store.ErrNotFound) {
			continue // forgotten since
		}
		if err != nil {
			return fmt.Errorf("read tracked paths: %w", err)
		}
		l.resume(rec, now, stale, removedHashes, recent)
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

// resume takes up, at start, a record something is left to do for: a
// pending or retrying path, or a removed one whose content may now be
// orphaned.
func (l *loop) resume(rec store.PathRecord, now time.Time, stale map[store.Hash]bool, removedHashes map[store.Hash]time.Time, recent map[store.Hash][]time.Time) {
	e := l.e
	switch rec.State {
	case store.StatePending, store.StateRetrying:
		delete(stale, rec.Hash)
		if rec.Hash.IsZero() {
			l.onReady(rec.Path, rec.Root, rec.Size, false, false)
			l.e.progress(func(p *Progress) { p.FilesSeen--; p.BytesSeen -= rec.Size })
			return
		}
		p := &pathJob{root: rec.Root, size: rec.Size}
		l.paths[rec.Path] = p
		// Taken here, not by a Ready: the scan's Known vouches for an unchanged file.
		l.e.progress(func(p *Progress) { p.FilesSeen++; p.BytesSeen += rec.Size })
		if u := l.jobs[rec.Hash]; u != nil {
			u.paths[rec.Path] = true
			if u.root == "" {
				u.root = rec.Root
			}
			p.job = u
			return
		}
		if _, err := e.st.GetContent(rec.Hash); err == nil {
			// Uploaded meanwhile under another path: hash and link.
			l.startHash(rec.Path, p)
			return
		}
		o := &decideOp{path: rec.Path, root: rec.Root, name: UploadName(rec.Path, rec.Hash, e.cfg.RemoteName), res: hashResult{Hash: rec.Hash, ID: fileID{Size: rec.Size}, Start: rec.Start, End: rec.End, Wrap: isPart(rec.Path, rec.Start, rec.End)},
			attempts: rec.Attempts, next: rec.NextAttempt}
		l.attach(rec.Path, p, o)
	case store.StateRemoved:
		if e.cfg.DeleteOnRemove && !rec.Hash.IsZero() {
			at := rec.RemovedAt.Add(e.cfg.DeleteDelay)
			if old, ok := removedHashes[rec.Hash]; !ok || at.After(old) {
				removedHashes[rec.Hash] = at
			}
		}
		l.noteRemoved(rec, now, recent)
	}
}
