package uploader

// maxage.go owns --max-age: a file modified longer ago than Config.MaxAge
// is recorded skipped with the reason and never read; touched later (a
// newer mtime) it is considered again.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// tooOldPrefix starts the reason of a path skipped for its age: it tells
// such a record from a skipped empty file (whose reason is empty).
const tooOldPrefix = "older than "

// tooOld reports whether a file modified at mtime is past maxAge at now
// (maxAge 0: no limit).
func tooOld(maxAge time.Duration, now, mtime time.Time) bool {
	return maxAge > 0 && !mtime.IsZero() && now.Sub(mtime) > maxAge
}

// ageSkipped reports whether rec is a path skipped for its age.
func ageSkipped(rec store.PathRecord) bool {
	return rec.State == store.StateSkipped && rec.Hash.IsZero() && strings.HasPrefix(rec.LastError, tooOldPrefix)
}

// skipForAge decides whether a Ready path too old for MaxAge is skipped:
// only when nothing is under way for it and the store holds no live
// content for it. A path whose bytes are tracked keeps its traces and its
// rules (an old file already uploaded is not forgotten by a later
// --max-age).
func skipForAge(old, busy bool, rec store.PathRecord, recFound bool) bool {
	if !old || busy {
		return false
	}
	return !recFound || rec.State == store.StateRemoved || rec.Hash.IsZero()
}

// skipTooOld records ev's path skipped when it is too old, and reports
// whether it did: the path is then not hashed.
func (l *loop) skipTooOld(ev watcher.Event) bool {
	maxAge := l.e.cfg.MaxAge
	if !tooOld(maxAge, l.now(), ev.Stat.ModTime) {
		return false
	}
	rec, err := l.e.st.GetPath(ev.Path)
	recFound := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false // the store decides once it answers
	}
	if !skipForAge(true, l.paths[ev.Path] != nil, rec, recFound) {
		return false
	}
	delete(l.settling, ev.Path)
	l.unhold(ev.Path, ev.Root)
	reason := TooOldReason(l.e.cfg.Hints.maxAge(), maxAge, ev.Stat.ModTime)
	l.writes = append(l.writes, &tooOldOp{path: ev.Path, root: ev.Root, st: ev.Stat, reason: reason})
	if !ageSkipped(rec) || !rec.ModTime.Equal(ev.Stat.ModTime) {
		l.e.log.Info().Str("path", ev.Path).Msg("skipped: " + ev.Path + ": " + reason + "; not read")
	}
	l.e.m.after.tooOld.Inc()
	l.e.progress(func(p *Progress) { p.FilesSeen++ })
	l.done(func(p *Progress) { p.TooOld++ }, -1)
	return true
}

// TooOldReason is the reason recorded for a file modified at mtime,
// skipped for being older than maxAge, which hint names (e.g. "--max-age"):
// "older than --max-age 720h (modified 2026-01-02T10:00:00Z)".
func TooOldReason(hint string, maxAge time.Duration, mtime time.Time) string {
	return fmt.Sprintf("%s%s %s (modified %s)", tooOldPrefix, hint, shortDuration(maxAge), mtime.UTC().Format(time.RFC3339))
}

// shortDuration writes d without trailing zero units: 720h, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// tooOldOp records a path skipped for its age, with its stat so the
// restart fast path (Known) does not report it again while it is
// unchanged. It changes nothing when the path has a live content by then.
type tooOldOp struct {
	path, root, reason string
	st                 watcher.Stat
}

func (o *tooOldOp) apply(tx *store.Tx, now time.Time) error {
	rec, err := tx.GetPath(o.path)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !skipForAge(true, false, rec, found) {
		return nil
	}
	first := now
	if found && !rec.FirstSeen.IsZero() {
		first = rec.FirstSeen
	}
	return tx.PutPath(store.PathRecord{Path: o.path, Root: o.root, Dev: o.st.Dev, Ino: o.st.Ino, Size: o.st.Size, ModTime: o.st.ModTime,
		State: store.StateSkipped, LastError: o.reason, FirstSeen: first, UpdatedAt: now})
}

// knownTooOld is Engine.Known for a path skipped for its age (it has no
// hash, so store.Unchanged does not vouch for it): unchanged and still
// too old, it is not reported again; under a larger limit it is read.
func (e *Engine) knownTooOld(path string, st watcher.Stat) bool {
	if e.cfg.MaxAge <= 0 || !tooOld(e.cfg.MaxAge, e.cfg.Now(), st.ModTime) {
		return false
	}
	rec, err := e.st.GetPath(path)
	return err == nil && ageSkipped(rec) && rec.Dev == st.Dev && rec.Ino == st.Ino && rec.Size == st.Size && rec.ModTime.Equal(st.ModTime)
}
