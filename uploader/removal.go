package uploader

// removal.go owns finding the tracked files that are gone from disk, and
// Reconcile, the user's confirmation of removals the guard held back.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

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
// gone (lstat: does not exist). `tracesync reconcile` asks it; a scan
// tells the engine what it met instead (notSeen).
func trackedGone(st Store, path string) (gone, error) {
	return tracked(st, path, func(p []byte) (bool, error) {
		_, err := os.Lstat(string(p))
		switch {
		case err == nil:
			return false, nil
		case errors.Is(err, fs.ErrNotExist):
			return true, nil
		}
		return false, err
	})
}

// notSeen lists the tracked live paths under root that a full scan with
// keys did not meet. The guard checks each with lstat before acting.
func notSeen(st Store, root string, scan *watcher.ScanSummary) (gone, error) {
	return tracked(st, root, func(p []byte) (bool, error) { return !scan.SawKey(watcher.PathKey(scan.Seed, p)), nil })
}

// allUnder lists every tracked live path at or under path: the watcher
// reported path gone (a file, or a folder with everything in it).
func allUnder(st Store, path string) (gone, error) {
	return tracked(st, path, func([]byte) (bool, error) { return true, nil })
}

// tracked walks the tracked live paths at or under path, counting them and
// their devices, and lists those isGone says are gone. isGone runs inside
// a read of the store: it must not use it.
func tracked(st Store, path string, isGone func(p []byte) (bool, error)) (gone, error) {
	g := gone{devs: map[uint64]int{}}
	path = filepath.Clean(path)
	err := st.ScanPaths(path, func(p, _ []byte, rec store.PathStat) bool {
		if !underBytes(p, path) || rec.State == store.StateRemoved {
			return true
		}
		g.live++
		if rec.Dev != 0 {
			g.devSeen = true
			g.devs[rec.Dev]++
		}
		isG, err := isGone(p)
		switch {
		case err != nil:
			g.errs = append(g.errs, err.Error())
		case isG:
			g.paths = append(g.paths, string(p))
		}
		return true
	})
	return g, err
}

// underBytes is under for a path read from the store: p is dir or inside it.
func underBytes(p []byte, dir string) bool {
	if len(p) < len(dir) || string(p[:len(dir)]) != dir {
		return false
	}
	return len(p) == len(dir) || dir == string(filepath.Separator) || p[len(dir)] == filepath.Separator
}

// tellConfirmed tells a running loop that roots were confirmed: it drops
// its holds of them and lets the files it parked for them go on. It
// reports whether the loop runs.
func (e *Engine) tellConfirmed(ctx context.Context, roots []string) (bool, error) {
	if !e.started.Load() {
		return false, nil
	}
	select {
	case e.confirm <- slices.Clone(roots):
		return true, nil
	case <-e.done:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
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
// With confirm, a running engine also drops its holds of those roots (a
// root held on another device syncs its new files from then on); the
// confirmed removals do not count against the MaxDelete budget.
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
	if !confirm {
		return rep, nil
	}
	if len(all) == 0 {
		_, err := e.tellConfirmed(ctx, roots)
		return rep, err
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
	running, err := e.tellConfirmed(ctx, roots)
	if err != nil {
		return rep, err
	}
	if len(deletes) == 0 {
		return rep, nil
	}
	if running {
		select {
		case e.nudge <- struct{}{}:
		default:
		}
		return rep, nil
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
