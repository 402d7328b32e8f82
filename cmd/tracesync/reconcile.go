package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

// maxGoneListed is how many gone files reconcile names per folder.
const maxGoneListed = 20

func newReconcileCmd(g *globals) *cobra.Command {
	var confirm, deleteOnRemove bool
	var rateLimit float64
	cmd := &cobra.Command{
		Use:   "reconcile [--confirm] DIR...",
		Short: "Show (and with --confirm, act on) removals the mass-delete guard held back",
		Long: `The daemon holds removals back, marking nothing removed and deleting
nothing remote, when a watched folder vanishes, is on another disk than its
files were recorded on (an unmounted disk), lacks its --root-marker, a scan
meets an I/O error, a removal would leave a folder with no tracked file, or
removals would delete the traces of more than --max-delete tracked files
within --max-delete-window. reconcile lists, for each DIR, the tracked files
that are gone from disk. With --confirm it marks them removed and, with
--delete-on-remove, deletes the traces of contents no file holds any more; a
folder held on another disk then syncs its new files. Confirmed removals do
not count against --max-delete.

While a daemon runs, reconcile asks it over the control socket in the state
directory (the daemon's own --delete-on-remove then decides whether traces
are deleted); otherwise it opens the state itself.
With no DIR argument the folders come from TRACESYNC_DIRS.`,
		Example: `  tracesync reconcile /var/lib/agent-traces
  tracesync reconcile --confirm --delete-on-remove /var/lib/agent-traces`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if rateLimit < 0 {
				return usageErrorf("--rate-limit %g: use 0 (no limit) or a positive number", rateLimit)
			}
			dirs, err := resolveReconcileDirs(args, g.getenv)
			if err != nil {
				return err
			}
			return runReconcile(cmd.Context(), g, dirs, confirm, deleteOnRemove, rateLimit)
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "mark the gone files removed (and, with --delete-on-remove, delete their traces); without it nothing changes")
	cmd.Flags().BoolVar(&deleteOnRemove, "delete-on-remove", false, "with --confirm, delete remotely the traces of contents no file holds any more")
	cmd.Flags().Float64Var(&rateLimit, "rate-limit", 0, "API requests per second at most (0: no limit)")
	return cmd
}

// resolveReconcileDirs is resolveDirs, except that a folder may be missing:
// a vanished folder is what reconcile is for.
func resolveReconcileDirs(args []string, getenv func(string) string) ([]string, error) {
	dirs := args
	if len(dirs) == 0 {
		dirs = splitList(getenv(dirsEnv))
	}
	if len(dirs) == 0 {
		return nil, usageErrorf("no folder given: pass DIR... or set %s", dirsEnv)
	}
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		abs, err := absClean(d)
		if err != nil {
			return nil, usageErrorf("folder %q: %v", d, err)
		}
		out = append(out, abs)
	}
	return out, nil
}

func runReconcile(ctx context.Context, g *globals, dirs []string, confirm, deleteOnRemove bool, rateLimit float64) error {
	if done, err := reconcileWithDaemon(ctx, g, dirs, confirm, deleteOnRemove); done || err != nil {
		return err
	}
	api, err := g.newClient(ctx)
	if err != nil {
		return err
	}
	stateDir, err := g.resolveStateDir()
	if err != nil {
		return err
	}
	db, err := store.Open(stateDir, store.Options{Target: api.Target().String(), Log: g.log})
	if err != nil {
		var le *store.LockedError
		if errors.As(err, &le) {
			return fmt.Errorf("%w (reconcile needs the daemon stopped: systemctl stop tracesync, then start it again after)", err)
		}
		return explainStateError(err, stateDir)
	}
	defer db.Close()
	eng, err := uploader.New(uploader.Config{DeleteOnRemove: deleteOnRemove, RateLimit: rateLimit, Log: g.log}, db, api)
	if err != nil {
		return asUsage(err)
	}
	rep, err := eng.Reconcile(ctx, dirs, confirm)
	if err != nil {
		return err
	}
	writeReconcile(g.stdout, rep, deleteOnRemove)
	if rep.DeletesFailed > 0 {
		return errSilentFailure
	}
	return nil
}

// reconcileWithDaemon asks a running daemon to reconcile, and reports
// whether one answered.
func reconcileWithDaemon(ctx context.Context, g *globals, dirs []string, confirm, deleteOnRemove bool) (bool, error) {
	stateDir, err := g.resolveStateDir()
	if err != nil {
		return false, err
	}
	h, err := control.Dial(control.SocketPath(stateDir))
	if errors.Is(err, control.ErrNoDaemon) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	crep, err := h.Reconcile(ctx, dirs, confirm)
	if err != nil {
		return true, fmt.Errorf("reconcile through the running daemon: %w", err)
	}
	if confirm && deleteOnRemove != crep.DeleteOnRemove {
		if crep.DeleteOnRemove {
			g.log.Warn().Msg("the running daemon deletes remotely the traces of removed contents (it runs with --delete-on-remove), whatever this command's flag says")
		} else {
			g.log.Warn().Msg("the running daemon runs without --delete-on-remove: the confirmed files are marked removed and their traces are kept")
		}
	}
	rep := uploader.ReconcileReport{Confirmed: crep.Confirmed, Removed: crep.Removed, Orphaned: crep.Orphaned,
		DeletesQueued: crep.DeletesQueued, DeletesDone: crep.DeletesDone, DeletesFailed: crep.DeletesFailed}
	for _, r := range crep.Roots {
		rep.Roots = append(rep.Roots, uploader.ReconcileRoot{Root: r.Root, Tracked: r.Tracked, Gone: r.Gone, Errors: r.Errors})
	}
	writeReconcile(g.stdout, rep, crep.DeleteOnRemove)
	if confirm && crep.DeletesQueued > 0 {
		fmt.Fprintln(g.stdout, "the running daemon performs the queued deletes")
	}
	return true, nil
}

func writeReconcile(w io.Writer, rep uploader.ReconcileReport, deleteOnRemove bool) {
	gone := 0
	for _, r := range rep.Roots {
		gone += len(r.Gone)
		fmt.Fprintf(w, "%s: %d tracked files, %d gone from disk\n", r.Root, r.Tracked, len(r.Gone))
		for i, p := range r.Gone {
			if i == maxGoneListed {
				fmt.Fprintf(w, "  ... and %d more\n", len(r.Gone)-maxGoneListed)
				break
			}
			fmt.Fprintf(w, "  gone: %s\n", p)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  could not check: %s\n", e)
		}
	}
	switch {
	case gone == 0:
		fmt.Fprintln(w, "nothing held back: every tracked file is still on disk")
	case !rep.Confirmed:
		what := "mark them removed"
		if deleteOnRemove {
			what += " and delete the traces of contents no file holds any more"
		}
		fmt.Fprintf(w, "nothing changed; if these files are really gone, run the same command with --confirm to %s\n", what)
	default:
		fmt.Fprintf(w, "marked %s removed; %s no file left", countOf(rep.Removed, "file", "files"), countOf(rep.Orphaned, "content has", "contents have"))
		if deleteOnRemove {
			fmt.Fprintf(w, "; %d remote trace deletes queued, %d done, %d failed (retried)", rep.DeletesQueued, rep.DeletesDone, rep.DeletesFailed)
		} else {
			fmt.Fprint(w, "; their traces are kept (pass --delete-on-remove to delete them)")
		}
		fmt.Fprintln(w)
	}
}
