package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/tracesync/tracesync/store"
)

// Pruning (store.Prune) drops records of files removed longer ago than
// --retention and the contents nothing refers to any more. The daemon
// prunes once after its first scan, then every pruneEvery; a backfill once
// at its end.
const (
	pruneEvery = 24 * time.Hour
	// prunePoll is how often a postponed prune looks again whether the
	// files that came back have been read.
	prunePoll = time.Second
	// pruneSlack widens the window of the check before a prune, so a
	// record that crosses the cutoff between the check and the prune is
	// checked too.
	pruneSlack = time.Minute
)

// pruneLoop is the daemon's pruning: once scanned is closed (the first scan
// is queued), then every pruneEvery, until ctx ends. Off with --retention 0.
func (s *syncer) pruneLoop(scanned <-chan struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		if s.f.retention == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-scanned:
		}
		for {
			// A file the first scan found again under a path recorded as
			// removed long ago is read within --settle-timeout at most.
			s.prune(ctx, s.f.settleTimeout+pruneSlack, true)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pruneEvery):
			}
		}
	}
}

// prune runs store.Prune with --retention, unless a record it would drop
// names a file that is on disk again and has not been read since (e.g. a
// file restored while the daemon was stopped): pruning that record could
// also drop its content's record, and the file would be uploaded a second
// time. Prune waits up to wait for the engine to read such files (their
// records then stop being "removed"), and otherwise skips this round.
// Unless changed (this sync recorded something, which may have left a
// content without a path), it prunes only when a record is old enough to
// drop: a re-run that found every file unchanged left nothing to prune.
func (s *syncer) prune(ctx context.Context, wait time.Duration, changed bool) {
	deadline := time.Now().Add(wait)
	for {
		back, old, err := removedRecords(s.db, time.Now().Add(-s.f.retention+pruneSlack))
		if err != nil {
			if ctx.Err() == nil {
				s.g.log.Error().Err(err).Msg("prune: cannot read the state; nothing pruned")
			}
			return
		}
		if len(back) == 0 && old == 0 && !changed {
			s.g.log.Debug().Dur("retention", s.f.retention).Msg("nothing to prune")
			return
		}
		if len(back) == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			s.g.log.Warn().Int("files", len(back)).Str("example", back[0]).Dur("retention", s.f.retention).
				Msg("prune skipped: records of removed files older than --retention name files that are on disk again and were not read back; nothing pruned this time (run tries again daily; tracesync forget PATH drops such a record)")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(prunePoll):
		}
	}
	st, err := s.db.Prune(ctx, s.f.retention)
	switch {
	case err != nil && ctx.Err() != nil:
		return // stopping
	case err != nil:
		s.g.log.Error().Err(err).Msg("prune failed; the state keeps its old records until the next try")
	case st.Paths+st.Contents == 0:
		s.g.log.Debug().Dur("retention", s.f.retention).Msg("nothing to prune") // every start prunes: say so only when it did something
	default:
		s.g.log.Info().Int("paths", st.Paths).Int("contents", st.Contents).Dur("retention", s.f.retention).
			Msg("pruned records of files removed longer ago than --retention and of contents nothing refers to")
	}
}

// removedRecords returns the paths whose records are "removed" since
// before cutoff while a file exists at the path again, and how many
// records are "removed" since before cutoff in all. It walks the removed
// records' index, not every record.
func removedRecords(db *store.DB, cutoff time.Time) (back []string, old int, err error) {
	err = db.ForEachPathIn(store.StateRemoved, func(r store.PathRecord) error {
		if r.RemovedAt.IsZero() || !r.RemovedAt.Before(cutoff) {
			return nil
		}
		old++
		if _, err := os.Lstat(r.Path); err == nil || !errors.Is(err, os.ErrNotExist) {
			back = append(back, r.Path) // there, or cannot tell: keep the record
		}
		return nil
	})
	return back, old, err
}
