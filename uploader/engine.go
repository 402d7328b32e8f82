package uploader

// engine.go owns the Engine's API: New, Run, Shutdown, and what other
// goroutines may ask of a running engine (Progress, Known, Requeue, health).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// ErrAlreadyRun is returned by Run when the Engine has already been run:
// an Engine runs once.
var ErrAlreadyRun = errors.New("uploader: engine already run")

// Engine is the sync engine. Create it with New, run it with Run; Known,
// Progress, Requeue, Healthy, Ready and Reconcile may be called from any
// goroutine.
type Engine struct {
	cfg Config
	st  Store
	api API
	log zerolog.Logger
	m   *Metrics
	lim *rate.Limiter // nil: unlimited
	cc  *concurrency  // how many uploads and deletes may run at once

	// workCtx bounds in-flight uploads and deletes; Shutdown cancels it
	// when its own deadline passes.
	workCtx    context.Context
	workCancel context.CancelFunc

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Shutdown: stop taking work
	done     chan struct{} // closed when Run returns
	requeue  chan []string
	nudge    chan struct{} // buffered 1: new deletes are in the store (Reconcile)
	confirm  chan []string // roots whose held removals Reconcile confirmed

	beat      atomic.Int64 // unix nanoseconds of the main loop's last turn
	readyFlag atomic.Bool

	mu   sync.Mutex // guards prog
	prog Progress
}

// Progress is a snapshot of what the engine has done since Run began, for a
// progress bar, a summary, sd_notify STATUS and the metrics.
type Progress struct {
	FilesSeen int   // ready files taken (a file seen again counts again)
	FilesDone int   // of those, the ones that reached a final state
	FilesRead int   // of those done, the ones whose bytes were read (not refused unread: too large, unsupported)
	BytesSeen int64 // the sizes of the files taken, but for those over MaxFileSize (refused unread)
	BytesDone int64 // the bytes read of the files done: a file refused unread adds nothing

	Hashing  int // files being hashed and validated
	Queued   int // uploads waiting for a worker (incl. backoff and the upload-name lock)
	InFlight int // uploads and deletes running now
	// Concurrency is how many uploads and deletes may run at once now: the
	// adaptive limit, or Config.Workers. MaxConcurrency is its ceiling
	// (Config.MaxWorkers, or Workers when fixed).
	Concurrency, MaxConcurrency int
	Adaptive                    bool // Concurrency adapts (Config.Workers is 0)
	Retrying                    int  // uploads waiting for a retry after a transient failure
	Settling                    int  // files sent back to settling (incomplete or changed)

	Uploaded          int            // files whose content was uploaded by this run
	Linked            int            // files linked to an already uploaded content (no upload)
	Adopted           int            // files whose content the server already held under its unique name (no upload)
	Unchanged         int            // files already uploaded with these bytes
	Skipped           int            // empty files
	TooOld            int            // files skipped unread: modified longer ago than Config.MaxAge
	Deleted           int            // files deleted after upload (Config.AfterUpload)
	Archived          int            // files moved to Config.ArchiveDir after upload
	Quarantined       int            // files that can never succeed as they are
	QuarantineReasons map[string]int // by reason: invalid, too-large, unreadable, unsupported, incomplete, rejected
	BytesUploaded     int64

	DeletesDone    int
	DeletesPending int
	HeldBack       int // tracked files whose removal the mass-delete guard held back

	Paused      bool   // the pool is paused (key rejected, or API unreachable)
	PauseReason string //
	Recovering  bool   // leftover create-phase intents are being resolved; no upload starts meanwhile
}

// New returns an engine for the given store and API. It checks cfg.
func New(cfg Config, st Store, api API) (*Engine, error) {
	if st == nil || api == nil {
		return nil, &configError{"a store and an API client are required"}
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		st:      st,
		api:     api,
		log:     cfg.Log,
		m:       cfg.Metrics,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		requeue: make(chan []string),
		nudge:   make(chan struct{}, 1),
		confirm: make(chan []string),
	}
	if e.m == nil {
		e.m = NewMetrics(nil)
	}
	e.m.setCounts(st.Counts)
	e.cc = newConcurrency(cfg, time.Now)
	if e.cc.adaptive {
		e.api = measuredAPI{API: api, cc: e.cc}
	}
	if cfg.RateLimit > 0 {
		e.lim = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, min(e.cc.ceiling, int(cfg.RateLimit))))
	}
	e.workCtx, e.workCancel = context.WithCancel(context.Background())
	e.prog.QuarantineReasons = map[string]int{}
	return e, nil
}

// Known reports whether the store already holds path with these bytes:
// same device, inode, size and modification time, and not removed. It is
// KnownIn for one file.
func (e *Engine) Known(path string, st watcher.Stat) bool {
	known := []bool{false}
	e.KnownIn(filepath.Dir(path), []watcher.File{{Name: filepath.Base(path), Stat: st}}, known)
	return known[0]
}

// KnownIn is the watcher's restart fast path (watcher.Config.Known) for
// files of the directory dir: it sets known[i] when the store holds
// files[i] with these bytes and nothing is left to do for it, looking the
// batch up in one read of the store. Entries already true are left alone
// (the caller vouched for them). It returns how many of the files it
// vouched for have a final result (uploaded or skipped).
func (e *Engine) KnownIn(dir string, files []watcher.File, known []bool) (final int) {
	var old []int // files not vouched for by their record that --max-age may vouch for
	_ = e.st.ReadPaths(func(r *store.PathReader) error {
		r.StatNames(dir, len(files), func(i int) string { return files[i].Name }, func(i int, rec store.PathStat, ok bool) {
			st := files[i].Stat
			switch {
			case known[i]:
			case !ok || !rec.Unchanged(st.Dev, st.Ino, st.Size, st.ModTime):
				if e.cfg.MaxAge > 0 {
					old = append(old, i)
				}
			case rec.More:
				// Cut at the size limit, its next segment not taken yet
				// (a stop between two): read again, though unchanged.
			case rec.State == store.StateUploaded && e.cfg.AfterUpload != AfterUploadKeep:
				// Still here: read it once more, and it is deleted or archived.
			default:
				known[i] = true
				if rec.State == store.StateUploaded || rec.State == store.StateSkipped {
					final++
				}
			}
		})
		return nil
	})
	for _, i := range old {
		if e.knownTooOld(filepath.Join(dir, files[i].Name), files[i].Stat) {
			known[i] = true
			final++ // skipped for its age
		}
	}
	return final
}

// Progress returns a snapshot of the counters.
func (e *Engine) Progress() Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.prog
	p.QuarantineReasons = maps.Clone(e.prog.QuarantineReasons)
	return p
}

func (e *Engine) progress(fn func(p *Progress)) {
	e.mu.Lock()
	fn(&e.prog)
	e.mu.Unlock()
}

// Requeue makes paths eligible now (`tracesync retry`): quarantined and
// retrying paths are read, decided and uploaded again without waiting. It
// returns at once; it does nothing when Run is not running.
func (e *Engine) Requeue(paths []string) {
	if !e.started.Load() || len(paths) == 0 {
		return
	}
	select {
	case e.requeue <- paths:
	case <-e.done:
	case <-e.stop:
	}
}

// Healthy reports whether Run's main loop is turning: false before Run,
// after it returned, or when the loop has not turned for
// Config.HealthTimeout (wedged). For /healthz and the systemd watchdog.
func (e *Engine) Healthy() bool {
	if !e.started.Load() {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
	}
	last := time.Unix(0, e.beat.Load())
	return time.Since(last) < e.cfg.HealthTimeout
}

// Ready reports whether the engine takes work: leftover intents are
// resolved, a first scan has been seen, and the pool is not paused. For
// /readyz.
func (e *Engine) Ready() bool {
	return e.Healthy() && e.readyFlag.Load()
}

// Run runs the engine on the watcher's events until ctx ends (or, with
// Config.OneShot, until events is closed and every path is final). w takes
// the paths sent back to settling.
//
// When ctx ends (or Shutdown is called) Run stops taking work, lets the
// uploads and deletes in flight finish, records their results and returns
// ctx's error. Bound that wait with Shutdown. With OneShot it returns nil
// once done. Any other error is a store failure.
func (e *Engine) Run(ctx context.Context, events <-chan watcher.Event, w Resettler) error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer close(e.done)
	defer e.workCancel()
	e.beat.Store(time.Now().UnixNano())
	l := newLoop(e, events, w)
	return l.run(ctx)
}

// Shutdown stops Run from taking work and waits for it to return; if ctx
// ends first, the uploads and deletes in flight are canceled (their intents
// stay in the store and are resolved on the next start), and Shutdown waits
// for Run to record that and return, then returns ctx's error.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	if !e.started.Load() {
		return nil
	}
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		e.workCancel()
		<-e.done
		return fmt.Errorf("shutdown: in-flight work canceled: %w", ctx.Err())
	}
}
