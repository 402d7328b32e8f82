package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// The concrete types cmd wires must satisfy the engine's interfaces.
var (
	_ uploader.Store     = (*store.DB)(nil)
	_ uploader.API       = (*client.Client)(nil)
	_ uploader.Resettler = (*watcher.Watcher)(nil)
)

// syncer is one sync (run or backfill) wired together: API client, store,
// engine and watcher, plus the optional metrics listener.
type syncer struct {
	g      *globals
	f      *syncFlags
	dirs   []string
	once   bool // backfill
	api    *client.Client
	target client.Target
	db     *store.DB
	// stateDir holds db's file.
	stateDir string
	eng      *uploader.Engine
	w        *watcher.Watcher
	reg      *prometheus.Registry

	metricsLn   net.Listener // nil without --metrics-addr, or once served
	metricsStop func()       // stops serving it; nil when not served
	probes      *probes      // what /healthz and /readyz answer

	// engineStarted is set as the engine's Run begins: until then /healthz
	// says ok (the sync is being built), after it the engine's heartbeat.
	engineStarted atomic.Bool

	// drainOnExit: on SIGTERM, upload what is on disk before stopping (run
	// --drain-on-exit); drain tracks it (drain.go).
	drainOnExit bool
	drain       drainSet

	// The control socket is served from when the engine exists until the
	// store is closed (startControl, close): all the while this process
	// holds the state file's lock, including a shutdown's drain.
	ctlStop context.CancelFunc
	ctlDone chan struct{}
	ctlErr  error // what the control socket's server ended with, once ctlDone is closed

	scanUnchanged atomic.Int64 // files the scans found already done (not read again): see known
	otherShards   atomic.Int64 // files the scans left to the other shares of --shard: see known
	resettler     *trackingResettler
}

// trackingResettler passes the engine's "back to settling" calls to the
// watcher and remembers which paths are waiting to come back, so a
// backfill can name the files its single pass left unfinished (a .jsonl
// cut mid-line, a file that changed while it was read).
type trackingResettler struct {
	w *watcher.Watcher

	mu      sync.Mutex // guards pending
	pending map[string]bool
}

func (r *trackingResettler) Resettle(path string) {
	r.mu.Lock()
	r.pending[path] = true
	r.mu.Unlock()
	r.w.Resettle(path)
}

// back records that path was reported again (Ready or Incomplete).
func (r *trackingResettler) back(path string) {
	r.mu.Lock()
	delete(r.pending, path)
	r.mu.Unlock()
}

// unfinished returns the paths still waiting, sorted.
func (r *trackingResettler) unfinished() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.pending))
	for p := range r.pending {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// daemonLockWait is how long `tracesync run` waits for the state file's
// lock. status, files, retry and forget hold it for a moment when no
// daemon answers them; a daemon that starts meanwhile (systemd restarting
// it under an operator's monitoring loop) waits for them instead of
// failing. A backfill keeps the store's 1 s: the holder is then most
// likely a daemon, and the error says what to do.
const daemonLockWait = 5 * time.Second

// openSyncer builds everything a sync needs, in the order that fails
// fastest: flags, metrics address, API target, store, engine, watcher.
// The caller must close it.
func openSyncer(ctx context.Context, g *globals, f *syncFlags, dirs []string, once bool) (_ *syncer, err error) {
	s := &syncer{g: g, f: f, dirs: dirs, once: once, reg: newRegistry(), probes: newProbes()}
	defer func() {
		// s, not the named result: every error return sets that to nil.
		if err != nil {
			s.close()
		}
	}()
	if err := f.prepareArchive(dirs); err != nil {
		return nil, err
	}
	if f.metricsAddr != "" {
		if s.metricsLn, err = listenMetrics(f.metricsAddr); err != nil {
			return nil, err
		}
		// Served from now on: a liveness probe gets its answer while the
		// API is still being reached.
		s.probes.wait("connecting to the Stratix API at " + g.resolvedBaseURL())
		s.startMetrics()
	}
	if s.api, err = s.connect(ctx); err != nil {
		return nil, err
	}
	s.target = s.api.Target()
	stateDir, err := g.resolveStateDir()
	if err != nil {
		return nil, err
	}
	opts := store.Options{Target: s.target.String(), Log: g.log}
	if !once {
		opts.Timeout = daemonLockWait
	}
	if !once && f.compactState {
		compactAtStart(g, stateDir)
	}
	s.stateDir = stateDir
	s.db, err = store.Open(stateDir, opts)
	if err != nil {
		var le *store.LockedError
		if errors.As(err, &le) && once {
			return nil, fmt.Errorf("%w (a running `tracesync run` syncs its folders itself: wait for the other process or stop it; a backfill with its own --state-dir keeps a second record, but uploads nothing the other already uploaded: it finds those contents on the server by name)", err)
		}
		return nil, explainStateError(err, stateDir)
	}
	s.eng, err = uploader.New(uploader.Config{
		Workers:         f.workers.count(),
		MaxWorkers:      f.maxWorkers,
		MaxFileSize:     int64(f.maxFileSize),
		MaxInflate:      int64(f.maxInflate),
		DeleteOnRemove:  f.deleteOnRemove && !once,
		MaxDelete:       f.maxDelete,
		MaxDeleteWindow: f.maxDeleteWindow,
		// A rescan reports a renamed file's old path gone at once, while
		// its new path may still be settling, and rm -rf removes files one
		// by one: removals gather for one remove grace before they are
		// judged, and orphans wait as long again before their deletes, so
		// a new path links to the content (rule 5) and a mass delete is
		// judged as one.
		DeleteDelay:   watcher.DefaultRemoveGrace(f.settle),
		RateLimit:     f.rateLimit,
		RemoteName:    f.remoteName.v,
		NoRemoteCheck: f.noRemoteCheck,
		ProbeInterval: f.probeInterval,
		Hints:         engineHints(f),
		OneShot:       once,
		AfterUpload:   f.afterUpload.v,
		ArchiveDir:    f.archiveDir,
		MaxAge:        f.maxAge,
		Log:           g.log,
		Metrics:       uploader.NewMetrics(s.reg),
	}, s.db, s.api)
	if err != nil {
		return nil, asUsage(err)
	}
	s.startControl(g)
	maxLag := f.maxLag
	if once {
		maxLag = -1 // a backfill treats every file as quiet
	}
	s.w, err = watcher.New(watcher.Config{
		Roots:          dirs,
		NoRecursive:    f.noRecursive,
		Include:        f.include,
		Exclude:        f.exclude,
		Settle:         f.settle,
		SettleTimeout:  f.settleTimeout,
		MaxLag:         maxLag,
		RescanInterval: f.rescanInterval,
		Poll:           f.poll,
		FollowSymlinks: f.followSymlinks,
		RootMarker:     f.rootMarker,
		Once:           once,
		Known:          s.known,
		Log:            g.log,
	})
	if err != nil {
		return nil, asUsage(err)
	}
	s.resettler = &trackingResettler{w: s.w, pending: map[string]bool{}}
	g.logRoots.Set(dirs)
	g.log.Info().Strs("dirs", dirs).Str("base_url", s.target.BaseURL).Str("organization", s.target.OrganizationID).
		Str("project", s.target.ProjectID).Str("state", s.db.File()).Msg("tracesync starting")
	return s, nil
}

// connect builds the API client, which finds the organization and project.
// A backfill fails at once when that fails (a person is waiting). The
// daemon keeps trying while the API is unreachable or rejects the key,
// with a capped backoff and one log line per try (rule 11), so a host that
// boots before its network, or a key rotated a moment late, does not make
// it exit; a configuration error (no key, no such project) exits.
func (s *syncer) connect(ctx context.Context) (*client.Client, error) {
	bo := newConnectBackoff()
	for {
		api, err := s.g.newClient(ctx)
		if err == nil {
			return api, nil
		}
		var ee *exitError
		class := client.Classify(err)
		if s.once || errors.As(err, &ee) || (class != client.ClassTransient && class != client.ClassAuth) {
			return nil, err
		}
		wait := bo.NextBackOff()
		s.probes.wait("waiting for the Stratix API (retrying): " + err.Error())
		s.g.log.Error().Err(err).Dur("retry_in", wait).Msg("cannot start syncing yet; retrying")
		select {
		case <-ctx.Done():
			return nil, errStoppedConnecting
		case <-time.After(wait):
		}
	}
}

// newConnectBackoff is the daemon's wait between tries to reach the API at
// start: 1s (randomized by half) doubling up to 1m, forever.
func newConnectBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = time.Second
	bo.MaxInterval = time.Minute
	bo.MaxElapsedTime = 0
	bo.Reset() // NewExponentialBackOff started from its own 500ms default
	return bo
}

// errStoppedConnecting: the daemon was stopped (SIGTERM, SIGINT) while it
// waited for the API; it had started nothing, so it exits 0.
var errStoppedConnecting = errors.New("stopped before the API could be reached")

// close releases what openSyncer opened; a second call does nothing.
func (s *syncer) close() {
	if s.ctlStop != nil {
		s.ctlStop()
		<-s.ctlDone
		s.ctlStop = nil
	}
	if s.metricsStop != nil {
		s.metricsStop()
		s.metricsStop = nil
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close()
		s.metricsLn = nil
	}
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			s.g.log.Error().Err(err).Msg("close state store")
		}
		s.db = nil
	}
}

// syncHooks are what run and backfill add around the common pipeline.
type syncHooks struct {
	// scanned is closed once every root's first scan is queued (or the root
	// was reported gone).
	scanned chan struct{}
	// extra goroutines, owned by the same errgroup; each must return when
	// its context is done.
	extra []func(ctx context.Context) error
}

// errInterrupted is returned by (*syncer).run when a signal ended the sync.
var errInterrupted = errors.New("interrupted")

// run runs the watcher and the engine, and hooks, until the sync ends: for
// a backfill when every file is final, for the daemon when ctx (SIGTERM or
// SIGINT) ends. Then the engine stops taking work and in-flight uploads get
// --shutdown-timeout to finish; everything else stops after it. One
// errgroup owns every goroutine. It returns errInterrupted when ctx ended a
// backfill, and nil when it ended the daemon.
func (s *syncer) run(ctx context.Context, hooks syncHooks) error {
	// pipeCtx ends everything when the engine has stopped; it is not
	// canceled by the signal directly, so in-flight work can finish.
	pipeCtx, stopPipe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipe()
	eg, egCtx := errgroup.WithContext(pipeCtx)

	events := make(chan watcher.Event, 256)
	eg.Go(func() error {
		if err := s.w.Run(egCtx); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		return nil
	})
	eg.Go(func() error { return s.forward(egCtx, events, hooks.scanned) })

	engineDone := make(chan struct{})
	eg.Go(func() error {
		defer close(engineDone)
		defer stopPipe()
		s.engineStarted.Store(true)
		err := s.eng.Run(egCtx, events, s.resettler)
		if err != nil && !errors.Is(err, context.Canceled) {
			return explainStateError(fmt.Errorf("sync engine: %w", err), filepath.Dir(s.db.File()))
		}
		return nil
	})

	// A state file deleted or replaced under the sync ends it like a
	// signal would, but with an error (exit 1).
	watch := &stateWatch{dir: filepath.Dir(s.db.File()), file: s.db.File(), check: s.db.CheckFile, poll: statePollInterval, log: s.g.log}
	eg.Go(func() error {
		if err := watch.run(egCtx); err != nil {
			return stateGoneError(err, s.once)
		}
		return nil
	})

	interrupted := false
	eg.Go(func() error {
		select {
		case <-engineDone:
			return nil
		case <-egCtx.Done():
		case <-ctx.Done():
			interrupted = true
		}
		sctx, cancel := context.WithTimeout(context.Background(), s.f.shutdownTimeout)
		defer cancel()
		if interrupted && s.drainOnExit {
			s.g.log.Info().Dur("shutdown_timeout", s.f.shutdownTimeout).
				Msg("stopping: uploading every file on disk first (--drain-on-exit)")
			s.drainBeforeStop(sctx)
		}
		if interrupted {
			s.g.log.Info().Int("in_flight", s.eng.Progress().InFlight).Dur("shutdown_timeout", s.f.shutdownTimeout).
				Msg("stopping: no new uploads; waiting for the ones in flight")
		}
		if err := s.eng.Shutdown(sctx); err != nil {
			s.g.log.Warn().Err(err).Msg("shutdown timeout reached: in-flight uploads were canceled; their intents are kept and resolved on the next start")
		}
		stopPipe()
		return nil
	})

	s.probes.running(s.healthy, s.ready)
	for _, fn := range hooks.extra {
		eg.Go(func() error { return fn(egCtx) })
	}

	err := eg.Wait()
	if err != nil {
		return err
	}
	if interrupted && s.once {
		return errInterrupted
	}
	if !s.once { // a backfill ends with its summary instead
		p := s.eng.Progress()
		s.g.log.Info().Int("uploaded", p.Uploaded).Int("linked", p.Linked+p.Adopted).Int("quarantined", p.Quarantined).
			Int("traces_deleted", p.DeletesDone).Msg("stopped")
	}
	return nil
}

// forward passes the watcher's events to the engine and closes scanned once
// every root has finished its first scan (ScanDone) or was reported gone.
func (s *syncer) forward(ctx context.Context, out chan<- watcher.Event, scanned chan struct{}) error {
	defer close(out)
	pending := make(map[string]bool, len(s.dirs))
	for _, d := range s.dirs {
		pending[d] = true
	}
	files, unchanged := 0, 0
	for ev := range s.w.Events() {
		if (ev.Kind == watcher.Ready || ev.Kind == watcher.Incomplete) && !s.f.shard.owns(ev.Root, ev.Path) {
			continue // another host's share (--shard): never read or recorded here
		}
		switch ev.Kind {
		case watcher.Ready, watcher.Incomplete:
			s.resettler.back(ev.Path)
		case watcher.ScanDone, watcher.RootGone:
			s.drain.scanned(ev.Root)
			if pending[ev.Root] {
				delete(pending, ev.Root)
				files += ev.Scan.Files
				unchanged += ev.Scan.Unchanged
				if len(pending) == 0 && scanned != nil {
					verb := "watching"
					if s.once {
						verb = "scanned"
					}
					// Known vouched for the other shares' files: they are not
					// this host's, nor unchanged.
					other := int(s.otherShards.Load())
					files, unchanged = files-other, unchanged-other
					msg := fmt.Sprintf("%s %d %s, %d %s", verb, len(s.dirs), pluralize(len(s.dirs), "folder", "folders"), files, pluralize(files, "file", "files"))
					if unchanged > 0 {
						msg += fmt.Sprintf(" (%d unchanged since the last run)", unchanged)
					}
					if s.f.shard.n > 0 {
						msg += fmt.Sprintf(" in share %s; %d %s left to the other shares", &s.f.shard, other, pluralize(other, "file", "files"))
					}
					s.g.log.Info().Int("files", files).Int("unchanged", unchanged).Int("other_shards", other).Msg(msg)
					close(scanned)
					scanned = nil
				}
			}
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// known is the engine's restart fast path (uploader.Engine.KnownIn), which
// also counts the files it vouches for that an earlier run finished, and
// vouches for the files of the other shares of --shard. A
// pending or retrying path is not counted: the engine finishes it and
// counts it as uploaded; nor a quarantined one, which the summary counts
// from the store.
func (s *syncer) known(dir string, files []watcher.File, known []bool) {
	if s.f.shard.n > 1 {
		for i, f := range files {
			if !s.f.shard.ownsPath(s.dirs, joinPath(dir, f.Name)) {
				// Another host's share: vouched for, so the watcher
				// neither settles nor reports it.
				known[i] = true
				s.otherShards.Add(1)
			}
		}
	}
	s.scanUnchanged.Add(int64(s.eng.KnownIn(dir, files, known)))
	if s.drain.recording() {
		for i, f := range files {
			if !known[i] {
				s.drain.found(joinPath(dir, f.Name))
			}
		}
	}
}

// joinPath is the path of the file name in the directory dir, as the
// watcher names it.
func joinPath(dir, name string) string {
	if dir == string(filepath.Separator) {
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

func (s *syncer) healthy() error {
	if !s.eng.Healthy() && !s.engineStarted.Load() {
		return nil // the sync is about to start
	}
	if !s.eng.Healthy() {
		return errors.New("sync engine is not running or its main loop is stuck")
	}
	return nil
}

func (s *syncer) ready() error {
	if !s.engineStarted.Load() {
		return errors.New("sync engine starting")
	}
	if err := s.healthy(); err != nil {
		return err
	}
	p := s.eng.Progress()
	switch {
	case p.Paused:
		return fmt.Errorf("uploads paused: %s", p.PauseReason)
	case p.Recovering:
		return errors.New("resolving uploads interrupted by the last stop")
	case !s.eng.Ready():
		return errors.New("first scan not queued yet")
	}
	return nil
}

// statusLine is the one-line summary for sd_notify STATUS and logs.
func statusLine(p uploader.Progress) string {
	line := fmt.Sprintf("uploaded %d, linked %d, queued %d, in flight %d, retrying %d, quarantined %d",
		p.Uploaded, p.Linked, p.Queued+p.Hashing, p.InFlight, p.Retrying, p.Quarantined)
	if p.HeldBack > 0 {
		line += fmt.Sprintf(", %d removals held back (tracesync reconcile)", p.HeldBack)
	}
	if p.Paused {
		line += "; PAUSED: " + p.PauseReason
	}
	return line
}

// readOnlyFS reports whether the file system holding dir is mounted
// read-only now.
func readOnlyFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}

// onSignal calls fn for every sig until ctx is done.
func onSignal(ctx context.Context, fn func(), sig ...os.Signal) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig...)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			fn()
		}
	}
}

// explainStateError adds what to do to an error of the state directory
// dir: a full disk, a read-only file system, a failing disk, or a
// directory the user may not write. The last is a configuration error
// (exit 2: systemd does not restart what only a person can fix), as is a
// file that is no state this binary can use; a disk that fails or fills
// and a state held by another process exit 1, so the daemon comes back by
// itself when they clear.
func explainStateError(err error, dir string) error {
	file := filepath.Join(dir, store.FileName)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: the file system holding the state directory %s is full: free space there (df -h %s), then start tracesync again; what was uploaded is recorded and will not be uploaded again", err, dir, dir)
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EIO) && readOnlyFS(dir):
		// A disk error that makes ext4 (errors=remount-ro) read-only
		// under the open file fails the sync in flight with EIO, and
		// only the writes after it with EROFS.
		return fmt.Errorf("%w: the state directory %s is on a read-only file system, so its state file %s cannot be written: make it writable again (a disk error remounts it read-only: check dmesg) or pass --state-dir", err, dir, file)
	case errors.Is(err, syscall.EIO):
		return fmt.Errorf("%w: the disk holding the state file %s failed a write: check dmesg and the disk, then start tracesync again; uploads whose record was not written are resolved on the next start", err, file)
	case errors.Is(err, fs.ErrPermission):
		return asUsage(fmt.Errorf("%w: the user running tracesync (uid %d) may not write the state directory %s: fix its owner or mode (under systemd, StateDirectory= does this) or pass --state-dir", err, os.Getuid(), dir))
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("%w, or pass --state-dir to use another state directory", err)
	case errors.Is(err, store.ErrSchemaTooNew), errors.Is(err, store.ErrNotStateFile), errors.Is(err, store.ErrNoMigration):
		// Not a tracesync state this binary can use: only a person fixes that.
		return asUsage(fmt.Errorf("%w, or pass --state-dir to use another state directory", err))
	case errors.Is(err, store.ErrNoStateFile):
		return asUsage(fmt.Errorf("%w (is --state-dir right?)", err))
	}
	return err
}
