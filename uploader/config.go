// Package uploader is tracesync's sync engine: it takes the watcher's events
// (a path is ready, a path is gone, a scan finished, a root vanished),
// hashes and validates files, decides with the store what each one needs,
// and runs the uploads (presign, PUT, create) and remote deletes through the
// client with one backoff policy. The rules of design.md live here and
// nowhere else.
//
// It knows the store, the client and the watcher only through their types
// and the small interfaces Store and API declared below; cmd/tracesync wires
// the concrete values.
package uploader

// config.go owns the engine's configuration and the interfaces it needs of
// the store and the API.

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// Store is what the engine needs of the state store (*store.DB).
type Store interface {
	GetPath(path string) (store.PathRecord, error)
	PathByInode(dev, ino uint64) (string, bool)
	GetContent(h store.Hash) (store.Content, error)
	Refs(h store.Hash) ([]string, error)
	ReadPaths(fn func(*store.PathReader) error) error
	Intents() ([]store.Intent, error)
	Deletes() ([]store.Delete, error)
	TraceIDsNamed(filename string) (map[string]bool, error)
	DeletesAmong(ids []string) (map[string]bool, error)
	ScanPaths(prefix string, fn func(path, root []byte, st store.PathStat) bool) error
	Counts() (store.Counts, error)
	Update(ctx context.Context, fn func(*store.Tx) error) error
	Submit(fn func(*store.Tx) error, done func(error)) error
}

// API is what the engine needs of the traces API (*client.Client). Errors
// are read with client.Classify and client.RetryAfter.
type API interface {
	Presign(ctx context.Context, filename, contentType string, size int64) (client.Presigned, error)
	Put(ctx context.Context, url, contentType string, body io.Reader, size int64) ([32]byte, error)
	Create(ctx context.Context, filename string) ([]string, error)
	List(ctx context.Context, opts client.ListOptions) (client.ListResult, error)
	All(ctx context.Context, opts client.ListOptions) iter.Seq2[client.TraceWithEvaluations, error]
	Delete(ctx context.Context, id string) error
}

// Resettler sends a path back to settling (*watcher.Watcher): the engine
// calls it when a file turned out incomplete or changed under an upload
// (design.md rule 7).
type Resettler interface {
	Resettle(path string)
}

// Config configures an Engine. The zero value of each field is noted.
type Config struct {
	// Workers fixes how many uploads and deletes run at once. 0 means
	// adaptive: the number grows while the API's latency holds and halves
	// on 429, 503, timeouts and latency jumps, between 1 and MaxWorkers
	// (concurrency.go).
	Workers int
	// MaxWorkers is the most uploads and deletes the adaptive limit allows
	// at once; it has no effect with a fixed Workers. 0 means
	// DefaultMaxWorkers (256).
	MaxWorkers int
	// HashWorkers is how many files are hashed and validated at once; 0
	// means 2.
	HashWorkers int
	// MaxUploadJobs is how many contents may wait for (or be in) an
	// upload before the engine stops hashing more files; the rest wait in
	// line unhashed, which keeps memory flat through a backfill of a large
	// archive. 0 means 2048.
	MaxUploadJobs int
	// PathWindow is how many paths may have work under way (waiting to be
	// hashed, hashed, or waiting for their upload) before the engine stops
	// taking the watcher's events: the watcher's scan then waits, so a
	// backfill of a million files holds a window of them in memory, not
	// the whole list. 0 means 8 × MaxUploadJobs.
	PathWindow int
	// MaxFileSize is the largest file uploaded; larger files are
	// quarantined before they are read. 0 means client.MaxFileSize, which
	// is also the most allowed.
	MaxFileSize int64
	// MaxInflate is the most bytes a compressed file may decompress to;
	// past it the file is quarantined (a decompression bomb). 0 means
	// DefaultMaxInflate.
	MaxInflate int64
	// DeleteOnRemove deletes a content's traces remotely once no path
	// references it any more (design.md rule 4). Off: nothing remote is
	// ever deleted.
	DeleteOnRemove bool
	// MaxDelete is the most tracked files whose removal may delete traces
	// remotely within MaxDeleteWindow; removals past it are held back
	// whole until confirmed (rule 6). 0 means 100.
	MaxDelete int
	// MaxDeleteWindow is the window MaxDelete counts over; 0 means 10 m.
	MaxDeleteWindow time.Duration
	// DeleteDelay is how long removals gather before they are judged
	// together (at least a few milliseconds), and how long an orphaned
	// content then waits before its traces are deleted (re-checked then).
	// It must be longer than the watcher's settle time, so that a renamed
	// file's new path is decided before its old path's removal (rule 5).
	// 0 means watcher.DefaultRemoveGrace of the default settle time; a
	// negative value means the least wait.
	DeleteDelay time.Duration
	// RateLimit caps API requests (presign, create, list, delete; not the
	// presigned PUT) per second across all workers; 0 means unlimited.
	RateLimit float64
	// InitialBackoff and MaxBackoff bound the retry interval of transient
	// failures; 0 means 1 s and 5 m.
	InitialBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often one probe runs while the pool is paused
	// (a rejected key, or the API unreachable); 0 means 30 s.
	ProbeInterval time.Duration
	// ConnFailures is how many transport failures in a row (no HTTP answer)
	// pause the pool; 0 means 3.
	ConnFailures int
	// RecoverySkew is the clock skew allowed when adopting traces after a
	// crash under a bare basename (--remote-name basename); a unique name
	// needs no time window. 0 means 5 m.
	RecoverySkew time.Duration
	// RemoteName is how uploads are named at the server; the zero value
	// names each by its content (RemoteNameUnique).
	RemoteName RemoteNaming
	// NoRemoteCheck skips asking the server, before uploading a content
	// the store does not know, whether traces of its unique name already
	// exist (uploaded by another process, or recorded in a lost state).
	// It has no effect with RemoteNameBasename, whose names say nothing
	// of the content. False: ask.
	NoRemoteCheck bool
	// AfterUpload is what happens to a local file once its traces are
	// recorded durably (afterupload.go); the zero value keeps it. It
	// cannot be combined with DeleteOnRemove.
	AfterUpload AfterUpload
	// ArchiveDir is where AfterUploadArchive moves files, each at its path
	// relative to its root: absolute, prepared by PrepareArchiveDir.
	ArchiveDir string
	// MaxAge skips, unread, a file modified longer ago than this
	// (maxage.go); 0 means no limit.
	MaxAge time.Duration
	// OneShot (backfill): Run returns nil once the event channel is closed
	// and every known path is final (uploaded, linked, skipped or
	// quarantined). Transient failures keep retrying until ctx ends.
	OneShot bool
	// HealthTimeout is how long the main loop may go without a turn before
	// Healthy reports false; 0 means 30 s.
	HealthTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives the engine's lines; the zero value logs nothing.
	Log zerolog.Logger
	// Hints say, in the log lines, what the user can do; the zero value
	// gives general advice.
	Hints Hints
	// Metrics receives the engine's metrics; nil means none.
	Metrics *Metrics
}

// ErrConfig is wrapped by New's errors about an invalid Config.
var ErrConfig = errors.New("invalid engine configuration")

func (c *Config) setDefaults() error {
	if c.MaxWorkers == 0 {
		c.MaxWorkers = DefaultMaxWorkers
	}
	if c.HashWorkers == 0 {
		c.HashWorkers = 2
	}
	if c.MaxUploadJobs == 0 {
		c.MaxUploadJobs = 2048
	}
	if c.PathWindow == 0 {
		c.PathWindow = 8 * c.MaxUploadJobs
	}
	if c.MaxFileSize == 0 {
		c.MaxFileSize = client.MaxFileSize
	}
	if c.MaxInflate == 0 {
		c.MaxInflate = DefaultMaxInflate
	}
	if c.MaxDelete == 0 {
		c.MaxDelete = 100
	}
	if c.MaxDeleteWindow == 0 {
		c.MaxDeleteWindow = 10 * time.Minute
	}
	if c.DeleteDelay == 0 {
		c.DeleteDelay = watcher.DefaultRemoveGrace(watcher.DefaultSettle)
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 30 * time.Second
	}
	if c.ConnFailures == 0 {
		c.ConnFailures = 3
	}
	if c.RecoverySkew == 0 {
		c.RecoverySkew = 5 * time.Minute
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = 30 * time.Second
	}
	c.Hints.setDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.Workers < 0:
		return errorsJoin("workers must be at least 1 (or 0: adaptive)")
	case c.MaxWorkers < 0:
		return errorsJoin("max workers must be at least 1")
	case c.HashWorkers < 0:
		return errorsJoin("hash workers must be at least 1")
	case c.PathWindow < 0:
		return errorsJoin("path window must be at least 1")
	case c.MaxUploadJobs < 0:
		return errorsJoin("max upload jobs must be at least 1")
	case c.MaxFileSize < 0 || c.MaxFileSize > client.MaxFileSize:
		return errorsJoin("max file size must be between 1 byte and 50 MiB (the API's limit)")
	case c.MaxInflate < 0:
		return errorsJoin("max inflate must not be negative")
	case c.MaxDelete < 0:
		return errorsJoin("max delete must not be negative")
	case c.MaxDeleteWindow < 0 || c.InitialBackoff < 0 || c.MaxBackoff < c.InitialBackoff || c.ProbeInterval < 0 || c.RecoverySkew < 0:
		return errorsJoin("durations must not be negative, and the maximum backoff must not be below the initial one")
	case c.RateLimit < 0:
		return errorsJoin("rate limit must not be negative")
	}
	return c.checkAfterUpload()
}

func errorsJoin(msg string) error { return &configError{msg} }

type configError struct{ msg string }

func (e *configError) Error() string        { return "invalid engine configuration: " + e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfig }

// Hints are the words the engine's log lines use for what the user can do.
// The engine knows no flags or commands: cmd/tracesync fills these with
// its own.
type Hints struct {
	// Key says where the API key comes from, e.g. "the key
	// (LAYERLENS_STRATIX_API_KEY or --api-key-file)". Empty: "the key".
	Key string
	// Confirm says how to confirm the held-back removals under a root,
	// e.g. "run `tracesync reconcile --confirm /srv/traces`". Nil: confirm
	// them with Engine.Reconcile.
	Confirm func(root string) string
	// Budget names the settings of the delete budget, e.g. "--max-delete
	// and --max-delete-window". Empty: "the delete budget".
	Budget string
	// MaxAge names the age limit in a skipped file's reason, e.g.
	// "--max-age". Empty: "the max age".
	MaxAge string
}

func (h Hints) maxAge() string {
	if h.MaxAge == "" {
		return "the max age"
	}
	return h.MaxAge
}

func (h Hints) key() string {
	if h.Key == "" {
		return "the key"
	}
	return h.Key
}

func (h Hints) confirm(root string) string {
	if h.Confirm == nil {
		return "confirm them (Engine.Reconcile on " + root + ")"
	}
	return h.Confirm(root)
}

func (h *Hints) setDefaults() {
	if h.Budget == "" {
		h.Budget = "the delete budget"
	}
}
