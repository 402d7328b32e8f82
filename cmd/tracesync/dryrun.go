package main

// dryrun.go owns `backfill --dry-run`: what a backfill would upload, link,
// skip or quarantine, decided from the folders and the state alone.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// runDryRun lists what a backfill would do, without the API: it scans the
// folders like a backfill, hashes and validates each file, and compares
// with the state of the last target this state directory synced to.
func runDryRun(ctx context.Context, g *globals, f *syncFlags, dirs []string) error {
	stateDir, err := g.resolveStateDir()
	if err != nil {
		return err
	}
	var db *store.DB
	if _, err := os.Stat(filepath.Join(stateDir, store.FileName)); err == nil {
		if db, err = store.Open(stateDir, store.Options{Log: g.log}); err != nil {
			return explainStateError(err, stateDir)
		}
		defer db.Close()
	}
	plan, err := planBackfill(ctx, db, f, dirs)
	if err != nil {
		return err
	}
	plan.write(g.stdout)
	return nil
}

// dryPlan is what a backfill would do with each file.
type dryPlan struct {
	mu    sync.Mutex // guards everything below (Known runs on the watcher's goroutines)
	rows  []dryRow
	bytes int64
	count map[string]int
}

type dryRow struct {
	action, path, detail string
	size                 int64
}

func (p *dryPlan) add(action, path, detail string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows = append(p.rows, dryRow{action, path, detail, size})
	p.count[action]++
	if action == "upload" {
		p.bytes += size
	}
}

func (p *dryPlan) write(w io.Writer) {
	sort.Slice(p.rows, func(i, j int) bool { return p.rows[i].path < p.rows[j].path })
	for _, r := range p.rows {
		if r.action == "unchanged" {
			continue
		}
		line := fmt.Sprintf("%-10s %s (%s)", r.action, r.path, humanBytes(r.size))
		if r.detail != "" {
			line += ": " + r.detail
		}
		fmt.Fprintln(w, line)
	}
	tooOld := ""
	if n := p.count["too-old"]; n > 0 {
		tooOld = fmt.Sprintf(", skip %d older than --max-age", n)
	}
	fmt.Fprintf(w, "dry run: would upload %s (%s), link %d, skip %d empty%s, quarantine %d, leave %d incomplete; %d unchanged; nothing was uploaded\n",
		countOf(p.count["upload"], "file", "files"), humanBytes(p.bytes), p.count["link"], p.count["skip"], tooOld, p.count["quarantine"], p.count["incomplete"], p.count["unchanged"])
}

// planBackfill scans dirs once (the watcher in Once mode, like a backfill)
// and decides, without the API, what a backfill would do with each file.
// db may be nil (nothing synced yet).
func planBackfill(ctx context.Context, db *store.DB, f *syncFlags, dirs []string) (*dryPlan, error) {
	plan := &dryPlan{count: map[string]int{}}
	known := func(dir string, files []watcher.File, known []bool) {
		for i, file := range files {
			path, st := joinPath(dir, file.Name), file.Stat
			if !f.shard.ownsPath(dirs, path) {
				known[i] = true // another host's share (--shard)
				continue
			}
			if db == nil {
				continue
			}
			rec, ok := db.Unchanged(path, st.Dev, st.Ino, st.Size, st.ModTime)
			if !ok || rec.State == store.StateRemoved || rec.State == store.StatePending || rec.State == store.StateRetrying {
				continue
			}
			if rec.State == store.StateQuarantined {
				plan.add("quarantine", path, "quarantined earlier: "+rec.LastError, st.Size)
			} else {
				plan.add("unchanged", path, "", st.Size)
			}
			known[i] = true
		}
	}
	w, err := watcher.New(watcher.Config{
		Roots: dirs, NoRecursive: f.noRecursive, Include: f.include, Exclude: f.exclude,
		Settle: f.settle, SettleTimeout: f.settleTimeout, FollowSymlinks: f.followSymlinks,
		RootMarker: f.rootMarker, Once: true, Known: known,
	})
	if err != nil {
		return nil, asUsage(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }() // owned here: waited for below
	// The engine's own hashing and rules decide each file.
	var st uploader.PlanStore
	if db != nil {
		st = db
	}
	planner := uploader.NewPlanner(st, int64(f.maxFileSize), f.remoteName.v)
	planner.MaxInflate = int64(f.maxInflate)
	var planErr error
	for ev := range w.Events() {
		switch ev.Kind {
		case watcher.RootGone:
			plan.add("quarantine", ev.Root, "folder unusable: "+ev.Reason, 0)
		case watcher.Ready:
			if !f.shard.owns(ev.Root, ev.Path) {
				continue // another host's share (--shard)
			}
			if planErr != nil {
				continue // drain the scan; the error is returned below
			}
			if why, old := f.tooOld(ev.Stat.ModTime, time.Now()); old {
				plan.add("too-old", ev.Path, why, ev.Stat.Size) // not read, as the backfill would not
				continue
			}
			pl, err := planner.Plan(ev.Path, ev.Root)
			if err != nil {
				planErr = err
				continue
			}
			detail := pl.Detail
			if pl.Action == "incomplete" {
				// A backfill sends it back to settling and, if it is still
				// cut when its single pass ends, lists it as incomplete
				// without recording it: not a quarantine.
				detail = strings.TrimPrefix(detail, ev.Path+": ") + "; a backfill would not upload it: complete it, then run again"
			}
			if pl.Partial {
				// Its complete lines go up; its last line, cut, leaves it
				// listed incomplete as well, as the backfill would.
				detail = "its complete lines; the last line is cut, so it is also left incomplete"
				plan.mu.Lock()
				plan.count["incomplete"]++
				plan.mu.Unlock()
			}
			if pl.Action != "" {
				plan.add(pl.Action, ev.Path, detail, pl.Size)
			}
		}
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if planErr != nil {
		return nil, planErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return plan, nil
}
