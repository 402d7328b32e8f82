package uploader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// gone is what lstat says of the tracked live paths at or under a prefix.
type gone struct {
	live    int      // tracked, not removed
	paths   []string // of those, the ones lstat says are gone
	errs    []string // lstat failures other than "does not exist"
	devSeen bool     // a live record has a device number
	devs    map[uint64]int
}

// trackedGone lists the tracked live paths at or under path whose file is
// gone (lstat: does not exist).
func trackedGone(st Store, path string) (gone, error) {
	g := gone{devs: map[uint64]int{}}
	path = filepath.Clean(path)
	err := st.ForEachPath(path, func(rec store.PathRecord) error {
		if rec.Path != path && !strings.HasPrefix(rec.Path, path+string(filepath.Separator)) && path != string(filepath.Separator) {
			return nil
		}
		if rec.State == store.StateRemoved {
			return nil
		}
		g.live++
		if rec.Dev != 0 {
			g.devSeen = true
			g.devs[rec.Dev]++
		}
		_, err := os.Lstat(rec.Path)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			g.paths = append(g.paths, rec.Path)
		default:
			g.errs = append(g.errs, err.Error())
		}
		return nil
	})
	return g, err
}

// rootRemoval is what one burst of events would remove under one root.
type rootRemoval struct {
	paths []string
	held  string // why the guard holds them back; empty: act
}

// removalBurst gathers the removals of the events the loop took in one turn,
// by root, so that the guard of rule 6 judges them together.
type removalBurst struct {
	byRoot map[string]*rootRemoval
}

func (b *removalBurst) root(r string) *rootRemoval {
	if b.byRoot == nil {
		b.byRoot = map[string]*rootRemoval{}
	}
	rr := b.byRoot[r]
	if rr == nil {
		rr = &rootRemoval{}
		b.byRoot[r] = rr
	}
	return rr
}

func (b *removalBurst) add(l *loop, ev watcher.Event) {
	switch ev.Kind {
	case watcher.Removed:
		g, err := trackedGone(l.e.st, ev.Path)
		if err != nil {
			l.e.log.Error().Err(err).Str("path", ev.Path).Msg("read tracked paths for a removal")
			return
		}
		rr := b.root(ev.Root)
		rr.paths = append(rr.paths, g.paths...)
		if why, isGone := l.rootGone[ev.Root]; isGone && rr.held == "" {
			rr.held = "the root is gone (" + why + ")"
		}
	case watcher.ScanDone:
		root := ev.Root
		prefix := root
		g, err := trackedGone(l.e.st, prefix)
		if err != nil {
			l.e.log.Error().Err(err).Str("root", root).Msg("read tracked paths after a scan")
			return
		}
		rr := b.root(root)
		rr.paths = append(rr.paths, g.paths...)
		if rr.held != "" {
			return
		}
		s := ev.Scan
		switch {
		case l.rootGone[root] != "":
			rr.held = "the root is gone (" + l.rootGone[root] + ")"
		case s.Errors > 0:
			rr.held = fmt.Sprintf("the scan met %d I/O errors (first: %s)", s.Errors, s.FirstErr)
		case len(g.errs) > 0:
			rr.held = fmt.Sprintf("%d tracked files could not be checked (first: %s)", len(g.errs), g.errs[0])
		case s.RootDev != 0 && g.devSeen && g.devs[s.RootDev] == 0:
			rr.held = fmt.Sprintf("the root is now on device %d, not the one its %d tracked files were recorded on (another or an unmounted disk?)", s.RootDev, g.live)
		case s.Files == 0 && g.live > 0:
			rr.held = fmt.Sprintf("the root is empty but %d files are tracked under it", g.live)
		}
	case watcher.RootGone:
		rr := b.root(ev.Root)
		rr.held = "the root is gone (" + ev.Reason + ")"
	}
}

// flushRemovals applies the guard of rule 6 and marks the rest removed.
func (l *loop) flushRemovals(b removalBurst) {
	for root, rr := range b.byRoot {
		if len(rr.paths) == 0 {
			if rr.held == "" {
				delete(l.heldBack, root)
			}
			continue
		}
		held := rr.held
		if held == "" && len(rr.paths) > l.e.cfg.MaxDelete {
			held = fmt.Sprintf("that is more than --max-delete %d at once", l.e.cfg.MaxDelete)
		}
		if held != "" {
			l.heldBack[root] = len(rr.paths)
			l.e.log.Error().Str("root", root).Int("files", len(rr.paths)).
				Msgf("held back: %d tracked files under %s are gone from disk, but %s, so none is marked removed and no remote trace is deleted; if they are really gone, run `tracesync reconcile --confirm %s`",
					len(rr.paths), root, held, root)
			continue
		}
		delete(l.heldBack, root)
		l.e.log.Info().Str("root", root).Int("files", len(rr.paths)).Msg("files removed")
		l.writes = append(l.writes, &removeOp{paths: rr.paths})
	}
}

// ReconcileRoot is what Reconcile found under one root.
type ReconcileRoot struct {
	Root    string
	Tracked int      // tracked paths (not removed) under the root
	Gone    []string // of those, the ones whose file is gone
	Errors  []string // files that could not be checked
}

// ReconcileReport is the answer of Reconcile.
type ReconcileReport struct {
	Roots         []ReconcileRoot
	Confirmed     bool
	Removed       int // paths marked removed (with confirm)
	Orphaned      int // contents left without any path
	DeletesQueued int // remote trace deletes queued (with confirm and DeleteOnRemove)
	DeletesDone   int // of those, done by Reconcile itself (when Run is not running)
	DeletesFailed int // failed for now; kept and retried by the next run
}

// Reconcile lists, under each root, the tracked files that are gone from
// disk: the removals the guard of rule 6 held back (`tracesync reconcile`).
// With confirm it marks them removed, and with DeleteOnRemove queues the
// remote deletes of the contents left without a path, at once (no
// DeleteDelay): the user said so. When Run is running it performs those
// deletes; otherwise Reconcile tries each once and leaves failures for the
// next run.
func (e *Engine) Reconcile(ctx context.Context, roots []string, confirm bool) (ReconcileReport, error) {
	rep := ReconcileReport{Confirmed: confirm}
	var all []string
	for _, root := range roots {
		root = filepath.Clean(root)
		g, err := trackedGone(e.st, root)
		if err != nil {
			return rep, fmt.Errorf("reconcile %s: %w", root, err)
		}
		rep.Roots = append(rep.Roots, ReconcileRoot{Root: root, Tracked: g.live, Gone: g.paths, Errors: g.errs})
		all = append(all, g.paths...)
	}
	if !confirm || len(all) == 0 {
		return rep, nil
	}
	ro := &removeOp{paths: all}
	var deletes []store.Delete
	err := e.st.Update(ctx, func(tx *store.Tx) error {
		deletes = nil
		now := e.cfg.Now()
		if err := ro.apply(tx, now); err != nil {
			return err
		}
		if !e.cfg.DeleteOnRemove {
			return nil
		}
		for _, or := range ro.orphans {
			oo := &orphanOp{hash: or.hash}
			if err := oo.apply(tx, now); err != nil {
				return err
			}
			deletes = append(deletes, oo.deletes...)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("reconcile: record removals: %w", err)
	}
	rep.Removed, rep.Orphaned, rep.DeletesQueued = ro.removed, len(ro.orphans), len(deletes)
	e.log.Warn().Int("removed", rep.Removed).Int("deletes", rep.DeletesQueued).Strs("roots", roots).Msg("reconcile confirmed: gone files marked removed")
	if len(deletes) == 0 {
		return rep, nil
	}
	if e.started.Load() {
		select {
		case <-e.done:
		default:
			select {
			case e.nudge <- struct{}{}:
			default:
			}
			return rep, nil
		}
	}
	for _, d := range deletes {
		err := e.wait(ctx)
		if err == nil {
			err = e.api.Delete(ctx, d.TraceID)
		}
		if err == nil || client.Classify(err) == client.ClassNotFound {
			rep.DeletesDone++
			if err := e.st.Update(ctx, func(tx *store.Tx) error { return tx.DeleteDelete(d.TraceID) }); err != nil {
				return rep, fmt.Errorf("reconcile: record delete of trace %s: %w", d.TraceID, err)
			}
			continue
		}
		rep.DeletesFailed++
		msg := err.Error()
		_ = e.st.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			return (&deleteFailOp{id: d.TraceID, attempts: d.Attempts + 1, lastErr: msg}).apply(tx, e.cfg.Now())
		})
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}
