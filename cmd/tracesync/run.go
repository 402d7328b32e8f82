package main

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/systemd"
	"github.com/tracesync/tracesync/uploader"
)

func newRunCmd(g *globals) *cobra.Command {
	var f syncFlags
	var drainOnExit bool
	cmd := &cobra.Command{
		Use:   "run [flags] DIR...",
		Short: "Watch folders and upload every new trace file (the daemon)",
		Long: `run is the daemon: it scans every DIR, uploads what is new, then watches
for files that are written, renamed or moved in, and uploads each content
once. With no DIR argument the folders come from TRACESYNC_DIRS
(comma-separated).

Signals: SIGTERM or SIGINT stop taking work and let in-flight uploads finish
within --shutdown-timeout, then exit 0; SIGHUP rescans every folder.
With --drain-on-exit, SIGTERM first takes every file on disk now, lets it
settle and uploads it, within the same --shutdown-timeout (a sidecar whose
folder is lost with its pod).
If the state file is deleted or replaced, or its directory removed, while
it runs, it stops the same way and exits 1, for its service manager to
restart it on a fresh state.
Under systemd (Type=notify) it reports READY once the first scan is queued,
a STATUS line with live counts, and watchdog pings while healthy.

Records of files removed longer ago than --retention (default 30 days) are
pruned once the first scan is queued, then every 24 hours.`,
		Example: `  tracesync run /var/lib/agent-traces
  TRACESYNC_DIRS=/srv/a,/srv/b TRACESYNC_WORKERS=8 tracesync run
  tracesync run --delete-on-remove --metrics-addr 127.0.0.1:9464 ./drop`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			dirs, err := resolveDirs(args, g.getenv)
			if err != nil {
				return err
			}
			return runDaemon(cmd.Context(), g, &f, dirs, drainOnExit)
		},
	}
	addSyncFlags(cmd.Flags(), &f)
	cmd.Flags().BoolVar(&drainOnExit, "drain-on-exit", false, "on SIGTERM/SIGINT, first upload every file on disk (letting it settle), within --shutdown-timeout")
	return cmd
}

// runDaemon is `tracesync run` once its flags are checked: the daemon until
// ctx ends (SIGTERM, SIGINT).
func runDaemon(ctx context.Context, g *globals, f *syncFlags, dirs []string, drainOnExit bool) error {
	s, err := openSyncer(ctx, g, f, dirs, false)
	if errors.Is(err, errStoppedConnecting) {
		g.log.Info().Msg("stopped before the API could be reached; nothing was started")
		return nil
	}
	if err != nil {
		return err
	}
	defer s.close()
	s.drainOnExit = drainOnExit

	notifier := systemd.NewNotifier(g.getenv)
	scanned := make(chan struct{})
	hooks := syncHooks{
		scanned: scanned,
		extra: []func(context.Context) error{
			func(ctx context.Context) error {
				notifyLoop(ctx, notifier, scanned, func() string { return statusLine(s.eng.Progress()) }, s.eng.Healthy, g.log)
				return nil
			},
			func(egCtx context.Context) error {
				select {
				case <-ctx.Done(): // the signal: shutdown begins
				case <-egCtx.Done(): // the engine stopped on its own (an error)
				}
				if err := notifier.Stopping(); err != nil {
					g.log.Debug().Err(err).Msg("systemd STOPPING=1")
				}
				return nil
			},
			func(ctx context.Context) error {
				return onSignal(ctx, func() {
					g.log.Info().Msg("SIGHUP: rescanning every folder")
					s.w.Rescan()
				}, syscall.SIGHUP)
			},
			s.controlGuard,
			s.pruneLoop(scanned),
		},
	}
	return s.run(ctx, hooks)
}

// startControl answers `tracesync status`, `files`, `retry` and `forget`
// on the control socket beside the state file (the daemon and a backfill
// alike) from now until close, which stops it before the store is closed:
// the store stays locked to this process meanwhile, through a shutdown's
// drain too, so the read commands always have someone to ask.
func (s *syncer) startControl(g *globals) {
	socket := control.SocketPath(filepath.Dir(s.db.File()))
	handler := &daemonHandler{Handler: control.NewStoreHandler(s.db), db: s.db, eng: s.eng, deleteOnRemove: s.f.deleteOnRemove && !s.once}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctlStop, s.ctlDone = cancel, make(chan struct{})
	go func() {
		defer close(s.ctlDone)
		err := control.Serve(ctx, socket, handler)
		if errors.Is(err, control.ErrAlreadyServing) {
			s.ctlErr = err // another process on this state: the store lock should have caught it
			return
		}
		if err != nil {
			// status and files then fall back to "stop the daemon first"; syncing goes on.
			g.log.Error().Err(err).Msg("control socket unavailable: tracesync status and files cannot ask this process")
		}
	}()
}

// controlGuard ends the sync when another process already serves this
// state directory's control socket.
func (s *syncer) controlGuard(ctx context.Context) error {
	select {
	case <-s.ctlDone:
		return s.ctlErr
	case <-ctx.Done():
		return nil
	}
}

// daemonHandler answers the control socket from the store, and hands the
// paths `tracesync retry` moved back to pending to the engine, so they are
// uploaded now rather than on the next rescan.
type daemonHandler struct {
	control.Handler
	db             *store.DB
	eng            *uploader.Engine
	deleteOnRemove bool // the engine's DeleteOnRemove
}

// Status adds what only the running engine knows: the removals it holds
// back and its upload pool's concurrency.
func (h *daemonHandler) Status(ctx context.Context) (control.Status, error) {
	st, err := h.Handler.Status(ctx)
	p := h.eng.Progress()
	st.HeldBack = p.HeldBack
	mode := "fixed"
	if p.Adaptive {
		mode = "auto"
	}
	st.Concurrency = &control.Concurrency{Mode: mode, Limit: p.Concurrency, Max: p.MaxConcurrency, InFlight: p.InFlight}
	return st, err
}

// Reconcile runs the engine's Reconcile: with confirm, the engine marks the
// gone files removed, drops its holds of the roots and deletes the traces
// of contents left without a file (with delete-on-remove).
func (h *daemonHandler) Reconcile(ctx context.Context, roots []string, confirm bool) (control.ReconcileReport, error) {
	rep, err := h.eng.Reconcile(ctx, roots, confirm)
	out := control.ReconcileReport{Confirmed: rep.Confirmed, Removed: rep.Removed, Orphaned: rep.Orphaned,
		DeletesQueued: rep.DeletesQueued, DeletesDone: rep.DeletesDone, DeletesFailed: rep.DeletesFailed, DeleteOnRemove: h.deleteOnRemove}
	for _, r := range rep.Roots {
		out.Roots = append(out.Roots, control.ReconcileRoot{Root: r.Root, Tracked: r.Tracked, Gone: r.Gone, Errors: r.Errors})
	}
	return out, err
}

func (h *daemonHandler) Retry(ctx context.Context, paths []string, all bool) (control.RetryResult, error) {
	if all {
		var err error
		if paths, err = control.RetryablePaths(ctx, h.db); err != nil {
			return control.RetryResult{}, err
		}
		if len(paths) == 0 {
			return control.RetryResult{}, nil
		}
	}
	res, err := h.Handler.Retry(ctx, paths, false)
	if err != nil {
		return res, err
	}
	h.eng.Requeue(paths)
	if all {
		res.Left = nil // --all named no path: what changed meanwhile is not news
	}
	return res, nil
}
