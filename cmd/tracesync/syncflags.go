package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// syncFlags are the flags of the syncing commands: the common set
// (addCommonFlags: run, backfill, demo, check-config) and the daemon set
// (addDaemonFlags: not backfill). Each is also read from TRACESYNC_<FLAG>
// by applyEnv.
type syncFlags struct {
	// compactState: pack the state file when a quarter or more of it is
	// slack, as a backfill ends and as run starts.
	compactState    bool
	workers         workersFlag
	maxWorkers      int
	include         []string
	exclude         []string
	settle          time.Duration
	settleTimeout   time.Duration
	rescanInterval  time.Duration
	deleteOnRemove  bool
	maxDelete       int
	maxDeleteWindow time.Duration
	maxFileSize     byteSize
	maxInflate      byteSize
	rateLimit       float64
	metricsAddr     string
	shutdownTimeout time.Duration
	noRecursive     bool
	followSymlinks  bool
	poll            time.Duration
	rootMarker      string
	retention       time.Duration
	remoteName      remoteNameFlag
	noRemoteCheck   bool
	probeInterval   time.Duration
	maxLag          time.Duration
	shard           shardFlag
	afterUpload     afterUploadFlag
	archiveDir      string
	maxAge          time.Duration
}

// Defaults of the shared flags.
const (
	defaultSettle          = time.Second
	defaultSettleTimeout   = 10 * time.Minute
	defaultRescanInterval  = 10 * time.Minute
	defaultMaxDelete       = 100
	defaultMaxDeleteWindow = 10 * time.Minute
	defaultShutdownTimeout = 30 * time.Second
	defaultProbeInterval   = 30 * time.Second
	defaultMaxLag          = watcher.DefaultMaxLag
	defaultRetention       = store.DefaultRetention // 720h: 30 days
	minRetention           = time.Hour
)

// alwaysIgnoredHelp lists the names the watcher always ignores
// (watcher/filter.go, ignoredName), as --exclude's help and the README
// give them.
const alwaysIgnoredHelp = ".*, *.tmp, *.part, *.swp, *~, #*#"

// dirsEnv is the environment variable read for the folders when no DIR
// argument is given: a comma-separated list.
const dirsEnv = "TRACESYNC_DIRS"

// Limits of the shared flags, checked by validate and named in the help.
const (
	minRescanInterval = time.Second
	minPoll           = 10 * time.Millisecond
	minProbeInterval  = 100 * time.Millisecond
	minMaxLag         = 100 * time.Millisecond
)

// addSyncFlags defines the flags of the commands that sync continuously
// (run, demo, check-config): the common set and the daemon set.
func addSyncFlags(fs *pflag.FlagSet, f *syncFlags) {
	addCommonFlags(fs, f)
	addDaemonFlags(fs, f)
}

// addCommonFlags defines the flags every syncing command uses, backfill
// included, with their defaults, into f. It also sets the daemon flags'
// defaults, so f validates where they are not defined.
func addCommonFlags(fs *pflag.FlagSet, f *syncFlags) {
	f.maxFileSize = byteSize(client.MaxFileSize)
	f.maxInflate = byteSize(uploader.DefaultMaxInflate)
	f.rescanInterval, f.maxDelete, f.maxDeleteWindow, f.maxLag = defaultRescanInterval, defaultMaxDelete, defaultMaxDeleteWindow, defaultMaxLag
	fs.Var(&f.workers, "workers", workersHelp)
	fs.BoolVar(&f.compactState, "compact-state", true, "rewrite the state file packed when a quarter or more of it is slack (pages left part full by inserts, free pages): a backfill as it ends, run as it starts; false leaves it as it is")
	fs.IntVar(&f.maxWorkers, "max-workers", defaultMaxWorkers, fmt.Sprintf("with --workers auto, the most uploads and deletes in flight at once (1 to %d)", maxWorkers))
	fs.StringSliceVar(&f.include, "include", append([]string(nil), watcher.DefaultInclude...), "glob of file names to sync (repeatable, or comma-separated); .gz and .zst files are uploaded decompressed")
	fs.StringSliceVar(&f.exclude, "exclude", nil, "glob of file names or paths to skip, on top of the temporary names always skipped ("+alwaysIgnoredHelp+")")
	fs.DurationVar(&f.settle, "settle", defaultSettle, "quiet time before a file counts as written (more than 0)")
	fs.DurationVar(&f.settleTimeout, "settle-timeout", defaultSettleTimeout, "how long a file may stay incomplete (unparsable .json, .jsonl without final newline) before it is quarantined (at least --settle)")
	fs.Var(&f.maxFileSize, "max-file-size", "largest file to upload, e.g. 10MiB (1 byte to 50MiB, the API's limit and the default); larger files are quarantined")
	fs.Var(&f.maxInflate, "max-inflate", "most bytes a compressed file (.gz, .zst) may decompress to, e.g. 4GiB (at least 1 byte); past it the file is quarantined as a decompression bomb")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0, "API requests per second at most (0: no limit)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9464 (empty: off)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM/SIGINT, how long in-flight uploads may take to finish (0 or more)")
	fs.BoolVar(&f.noRecursive, "no-recursive", false, "sync only the top level of each folder, not its subfolders")
	fs.BoolVar(&f.followSymlinks, "follow-symlinks", false, "follow symbolic links (never out of a folder)")
	fs.Var(&f.remoteName, "remote-name", "the name each upload gets at the server: unique (the file's stem, 16 hex digits of its content's SHA-256, its extension: safe with any number of uploaders into one project) or basename (the bare file name: only for one uploader per project)")
	fs.BoolVar(&f.noRemoteCheck, "no-remote-check", false, "do not ask the server, before uploading a content this state does not know, whether its unique name is already there (to adopt it instead of uploading it again)")
	fs.DurationVar(&f.probeInterval, "probe-interval", defaultProbeInterval, "while uploads are paused (key rejected, API unreachable or answering 503), how often one request checks whether it works again (at least "+minProbeInterval.String()+")")
	fs.Var(&f.shard, "shard", "take only share K of N of the files, K from 0 to N-1 (e.g. $JOB_COMPLETION_INDEX/8), so N hosts that see the same folders split them with no coordinator: a file's share is the hash of its path relative to its folder; the other shares' files are neither read nor recorded here (empty: every file)")
	fs.Var(&f.afterUpload, "after-upload", "what to do with a local file once its traces are recorded: keep, delete, or archive (move it under --archive-dir); never a quarantined, incomplete, skipped or still-growing file; not with --delete-on-remove")
	fs.StringVar(&f.archiveDir, "archive-dir", "", "with --after-upload archive, the folder files move to, under their path relative to their synced folder; created if missing; must be outside the synced folders and on their file system")
	fs.DurationVar(&f.maxAge, "max-age", 0, "skip, unread, a file modified longer ago than this, e.g. 720h (recorded skipped: tracesync files --state skipped; a file touched later is read); 0: no limit")
	fs.DurationVar(&f.retention, "retention", defaultRetention, "keep records of removed files this long, then prune them and the contents no file, upload or delete refers to (run: after the first scan, then daily; backfill: at the end); 0 keeps everything, else at least 1h")
}

// addDaemonFlags defines the flags only a command that keeps watching
// uses: rescans, polling, and the remote deletes with their guard.
func addDaemonFlags(fs *pflag.FlagSet, f *syncFlags) {
	fs.DurationVar(&f.rescanInterval, "rescan-interval", defaultRescanInterval, "full rescan of every folder this often, as a safety net (0 disables, else at least "+minRescanInterval.String()+")")
	fs.DurationVar(&f.maxLag, "max-lag", defaultMaxLag, "a .jsonl that keeps growing has its complete lines on the server within about this long of being written, even when it is never quiet for --settle (at least "+minMaxLag.String()+")")
	fs.DurationVar(&f.poll, "poll", 0, "poll every INTERVAL instead of using inotify (for NFS, SMB); 0 uses inotify, else at least "+minPoll.String())
	fs.StringVar(&f.rootMarker, "root-marker", "", "a file that must exist in each folder (like .stfolder); without it the folder counts as unmounted and nothing is deleted")
	fs.BoolVar(&f.deleteOnRemove, "delete-on-remove", false, "delete a file's traces remotely when no local file holds its content any more")
	fs.IntVar(&f.maxDelete, "max-delete", defaultMaxDelete, "with --delete-on-remove, delete the traces of at most this many removed files within --max-delete-window; removals past it are held back whole, the first ones included, until tracesync reconcile --confirm (renamed or moved files do not count; 0 or more)")
	fs.DurationVar(&f.maxDeleteWindow, "max-delete-window", defaultMaxDeleteWindow, "the time window --max-delete counts over (more than 0)")
}

// validate checks the shared flags; every error says how to fix it.
func (f *syncFlags) validate() error {
	var errs []error
	errs = append(errs, f.validateWorkers()...)
	if err := f.shard.validate(); err != nil {
		errs = append(errs, err)
	}
	if f.settle <= 0 {
		errs = append(errs, fmt.Errorf("--settle %s: use a positive duration such as 1s", f.settle))
	}
	if f.settleTimeout < f.settle {
		errs = append(errs, fmt.Errorf("--settle-timeout %s: must be at least --settle (%s)", f.settleTimeout, f.settle))
	}
	if f.rescanInterval < 0 {
		errs = append(errs, fmt.Errorf("--rescan-interval %s: use 0 (off) or a positive duration such as 10m", f.rescanInterval))
	} else if f.rescanInterval > 0 && f.rescanInterval < minRescanInterval {
		errs = append(errs, fmt.Errorf("--rescan-interval %s: use at least %s (or 0 to disable)", f.rescanInterval, minRescanInterval))
	}
	if f.maxLag < minMaxLag {
		errs = append(errs, fmt.Errorf("--max-lag %s: use at least %s, e.g. 5s", f.maxLag, minMaxLag))
	}
	if f.probeInterval < minProbeInterval {
		errs = append(errs, fmt.Errorf("--probe-interval %s: use at least %s, e.g. 30s", f.probeInterval, minProbeInterval))
	}
	if f.maxDelete < 0 {
		errs = append(errs, fmt.Errorf("--max-delete %d: use 0 or more", f.maxDelete))
	}
	if f.maxDeleteWindow <= 0 {
		errs = append(errs, fmt.Errorf("--max-delete-window %s: use a positive duration such as 10m", f.maxDeleteWindow))
	}
	if f.maxFileSize <= 0 || int64(f.maxFileSize) > client.MaxFileSize {
		errs = append(errs, fmt.Errorf("--max-file-size %s: use 1 byte to 50MiB (the API refuses larger files)", &f.maxFileSize))
	}
	if f.maxInflate <= 0 {
		errs = append(errs, fmt.Errorf("--max-inflate %s: use at least 1 byte, e.g. 1GiB", &f.maxInflate))
	}
	if f.rateLimit < 0 {
		errs = append(errs, fmt.Errorf("--rate-limit %g: use 0 (no limit) or a positive number of requests per second", f.rateLimit))
	}
	if f.shutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s: use 0 or a positive duration such as 30s", f.shutdownTimeout))
	}
	if f.poll < 0 || (f.poll > 0 && f.poll < minPoll) {
		errs = append(errs, fmt.Errorf("--poll %s: use 0 (inotify) or an interval of at least %s", f.poll, minPoll))
	}
	if f.retention < 0 || (f.retention > 0 && f.retention < minRetention) {
		errs = append(errs, fmt.Errorf("--retention %s: use 0 (keep every record) or at least %s, e.g. 720h for 30 days", f.retention, minRetention))
	}
	if strings.ContainsRune(f.rootMarker, filepath.Separator) {
		errs = append(errs, fmt.Errorf("--root-marker %q: give a file name, not a path", f.rootMarker))
	}
	for _, pats := range [][]string{f.include, f.exclude} {
		for _, p := range pats {
			if _, err := filepath.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("glob %q: %w (quote it, and check brackets)", p, err))
			}
		}
	}
	if len(f.include) == 0 {
		errs = append(errs, errors.New("--include is empty: give at least one glob such as *.json"))
	}
	errs = append(errs, f.validateAfterUpload()...)
	return asUsage(errors.Join(errs...))
}

// resolveDirs returns the folders to sync: the DIR arguments, else
// TRACESYNC_DIRS (comma-separated). Each must be an existing directory;
// the result is absolute, cleaned and without duplicates.
func resolveDirs(args []string, getenv func(string) string) ([]string, error) {
	dirs := args
	if len(dirs) == 0 {
		dirs = splitList(getenv(dirsEnv))
	}
	if len(dirs) == 0 {
		return nil, usageErrorf("no folder to sync: pass DIR... or set %s=/path/one,/path/two", dirsEnv)
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, usageErrorf("folder %q: %v", d, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, usageErrorf("folder %s: %v (create it, or fix the path)", abs, errors.Unwrap(err))
		}
		if !fi.IsDir() {
			return nil, usageErrorf("%s is not a directory: pass folders, not files", abs)
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		out = append(out, abs)
	}
	for i, a := range out {
		for j, b := range out {
			if i != j && strings.HasPrefix(a, b+string(filepath.Separator)) {
				return nil, usageErrorf("folder %s is inside %s: pass only %s", a, b, b)
			}
		}
	}
	return out, nil
}

// byteSize is a flag value in bytes that accepts unit suffixes: 52428800,
// 50MiB, 10MB, 512KiB, 1GiB.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	switch {
	case n > 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Type() string { return "size" }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v < 0 {
		return 0, fmt.Errorf("size %q: use bytes or a number with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return int64(v * mult), nil
}

// remoteNameFlag is --remote-name: unique or basename.
type remoteNameFlag struct{ v uploader.RemoteNaming }

func (r *remoteNameFlag) String() string { return r.v.String() }
func (r *remoteNameFlag) Type() string   { return "unique|basename" }
func (r *remoteNameFlag) Set(s string) error {
	v, ok := uploader.ParseRemoteNaming(strings.TrimSpace(s))
	if !ok {
		return fmt.Errorf("%q: use unique (the default) or basename", s)
	}
	r.v = v
	return nil
}

// absClean returns p absolute and cleaned.
func absClean(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.Clean(abs), nil
}

// engineHints are the engine's words for what the user can do: this
// command's flags and commands.
func engineHints(f *syncFlags) uploader.Hints {
	return uploader.Hints{
		Key:    "the key (LAYERLENS_STRATIX_API_KEY or --api-key-file)",
		Budget: "raise --max-delete or shorten --max-delete-window to allow more",
		MaxAge: "--max-age",
		Confirm: func(root string) string {
			if f.deleteOnRemove {
				return "run `tracesync reconcile --confirm --delete-on-remove " + root + "` (it works while the daemon runs)"
			}
			return "run `tracesync reconcile --confirm " + root + "` (it works while the daemon runs)"
		},
	}
}
