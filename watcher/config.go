package watcher

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Config says what to watch and how. The zero value of every field except
// Roots is a usable default.
type Config struct {
	// Roots are the directories to watch. Made absolute and cleaned by New.
	Roots []string
	// NoRecursive watches only the files directly in each root. Zero value:
	// recursive.
	NoRecursive bool
	// Include are globs (path.Match syntax) matched on the path relative to
	// its root and on the basename; a file is included if any matches.
	// nil means DefaultInclude (.json and .jsonl, plain or compressed).
	Include []string
	// Exclude are globs matched like Include; a file (or a directory, which
	// is then not descended) matching any is skipped.
	Exclude []string
	// Settle is how long a file must have had no event before it is checked
	// for readiness. 0 means DefaultSettle (1 s).
	Settle time.Duration
	// MaxLag bounds how long a .jsonl that keeps changing waits before it
	// is reported Ready (with Event.Growing) without settling, so its
	// complete lines go out while it is still written. 0 means
	// DefaultMaxLag; negative means never (wait for quiet).
	MaxLag time.Duration
	// SettleTimeout is how long a path sent back by Resettle may keep
	// coming back before it is reported Incomplete. 0 means
	// DefaultSettleTimeout (10 min).
	SettleTimeout time.Duration
	// RemoveGrace is how long a path must stay gone before it is reported
	// Removed. 0 means 2×Settle + 1 s. It must be longer than Settle, so a
	// rename's new path is reported Ready before its old path is reported
	// Removed (design.md rule 5).
	RemoveGrace time.Duration
	// RescanInterval is the period of the safety-net full rescan. 0 means
	// no periodic rescan.
	RescanInterval time.Duration
	// Poll, when > 0, makes every root polled with this period instead of
	// watched with inotify. Roots on filesystems without inotify (NFS,
	// SMB/CIFS, FUSE, 9p, Ceph) are polled whatever this says, with
	// DefaultPoll when Poll is 0; so are subtrees that ran out of inotify
	// watches.
	Poll time.Duration
	// FollowSymlinks reports a symlink to a regular file under the link's
	// path, with the target's Stat, when the target is inside one of the
	// roots. Symlinks to directories are never descended: their targets,
	// being inside the roots, are watched where they are. Zero value:
	// symlinks are ignored.
	FollowSymlinks bool
	// RootMarker, when not empty, is the name of a file that must exist
	// directly in each root; a root without it is reported RootGone.
	RootMarker string
	// Once makes Run scan every root once (no inotify, no polling, no
	// periodic rescan), report each matching file Ready once it settles,
	// one ScanDone per root scanned (a missing root gets RootGone instead),
	// and then return and close Events. Resettle works until then; a path
	// sent back after Run returned is not reported again, so a backfill
	// treats a file still incomplete at the end as incomplete itself.
	Once bool
	// Known is the restart fast path: it sets known[i] when files[i], a file
	// of the directory dir, is already recorded with this (dev, ino, size,
	// mtime); such a file is not reported Ready. nil means nothing is
	// known. A scan calls it with the files of one directory a batch at a
	// time (a few hundred at most, in the order met), so that a batch is
	// answered from one read of the consumer's store; files and known are
	// valid only during the call. It is called only from the scanner
	// goroutine (never concurrently with itself, but concurrently with the
	// consumer reading Events), for every matching regular file a full
	// scan, a scan of a new directory or the first poll of a polled tree
	// finds: once per file per scan, and before that root's ScanDone. It
	// must be fast: a restart over a million unchanged files is a million
	// answers.
	Known func(dir string, files []File, known []bool)
	// Log receives the watcher's log lines. Zero value: zerolog's zero
	// Logger, which writes nothing.
	Log zerolog.Logger
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Defaults used when the corresponding Config field is zero.
const (
	DefaultSettle        = time.Second
	DefaultSettleTimeout = 10 * time.Minute
	DefaultMaxLag        = 5 * time.Second
	// DefaultPoll is the polling period of roots on filesystems without
	// inotify and of subtrees that ran out of watches, when Config.Poll is 0.
	DefaultPoll = 10 * time.Second
)

// DefaultInclude is the include list used when Config.Include is nil:
// trace files, plain or compressed with gzip or zstd.
var DefaultInclude = []string{"*.json", "*.jsonl", "*.json.gz", "*.jsonl.gz", "*.json.zst", "*.jsonl.zst"}

// ErrConfig is returned (wrapped) by New when the configuration is unusable.
var ErrConfig = errors.New("watcher: invalid configuration")

func configErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// withDefaults validates cfg and returns a copy with defaults filled in and
// roots absolute and cleaned.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Roots) == 0 {
		return cfg, configErrorf("no root to watch: give at least one directory")
	}
	roots := make([]string, 0, len(cfg.Roots))
	seen := map[string]bool{}
	for _, r := range cfg.Roots {
		if r == "" {
			return cfg, configErrorf("empty root path")
		}
		abs, err := filepath.Abs(r)
		if err != nil {
			return cfg, configErrorf("root %q: %v", r, err)
		}
		abs = filepath.Clean(abs)
		if seen[abs] {
			continue
		}
		seen[abs] = true
		roots = append(roots, abs)
	}
	for _, a := range roots {
		for _, b := range roots {
			if a != b && isUnder(b, a) {
				return cfg, configErrorf("root %s is inside root %s: give only the outer one", b, a)
			}
		}
	}
	cfg.Roots = roots
	if cfg.Include == nil {
		cfg.Include = DefaultInclude
	}
	for _, g := range append(append([]string{}, cfg.Include...), cfg.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return cfg, configErrorf("bad glob %q: %v", g, err)
		}
	}
	if cfg.Settle < 0 || cfg.SettleTimeout < 0 || cfg.RemoveGrace < 0 || cfg.RescanInterval < 0 || cfg.Poll < 0 {
		return cfg, configErrorf("durations must not be negative")
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.SettleTimeout == 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.RemoveGrace == 0 {
		cfg.RemoveGrace = DefaultRemoveGrace(cfg.Settle)
	}
	if cfg.RemoveGrace <= cfg.Settle {
		return cfg, configErrorf("remove grace %v must be longer than settle %v, so a rename's new path is seen before its old path is removed", cfg.RemoveGrace, cfg.Settle)
	}
	if strings.ContainsRune(cfg.RootMarker, filepath.Separator) {
		return cfg, configErrorf("root marker %q must be a file name, not a path", cfg.RootMarker)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// isUnder reports whether p is dir or inside it (both clean and absolute).
func isUnder(p, dir string) bool {
	if p == dir {
		return true
	}
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir) && len(p) > len(dir) && p[len(dir)] == filepath.Separator
}

// DefaultRemoveGrace is the remove grace for a settle time: long enough
// for a rename's new path to settle and be reported before the old path is.
// The engine waits as long before it deletes a content a rescan found gone
// (a rescan reports removals at once, without this grace).
func DefaultRemoveGrace(settle time.Duration) time.Duration {
	return 2*settle + time.Second
}
