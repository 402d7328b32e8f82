package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/logging"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

// Backfill progress refresh: the bar on a terminal, a line otherwise.
const (
	barInterval   = 200 * time.Millisecond
	plainInterval = 10 * time.Second
)

// maxListed is how many quarantined files the summary names one by one.
const maxListed = 20

func newBackfillCmd(g *globals) *cobra.Command {
	var f syncFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "backfill [flags] DIR...",
		Short: "Upload every new or changed trace file in folders once, then exit",
		Long: `backfill scans every DIR once, uploads every file that is new or changed
(each content once: a second path with the same bytes is linked, not
uploaded), waits for the queue to drain and prints a summary. With no DIR
argument the folders come from TRACESYNC_DIRS (comma-separated).

It shows a progress bar on a terminal and a line every 10s otherwise.
Re-running the same command after an interruption (Ctrl-C, SIGKILL, a
reboot) uploads nothing twice: what is done is remembered in the state
directory. Transient API failures are retried until they succeed or you
press Ctrl-C.

Exit status: 0 when every file was uploaded, linked or skipped (empty);
1 when any file is quarantined (see the summary, or
tracesync files --state quarantined) or the run was interrupted;
2 on a usage or configuration error.`,
		Example: `  tracesync backfill /archive/traces
  tracesync backfill --dry-run /archive/traces
  tracesync backfill --workers 16 --exclude 'scratch/*' /archive/2025 /archive/2026`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A daemon's TRACESYNC_DELETE_ON_REMOVE is dropped first, so it
			// does not conflict with --after-upload here.
			if err := backfillDeleteOnRemove(g, &f); err != nil {
				return err
			}
			if err := f.validate(); err != nil {
				return err
			}
			dirs, err := resolveDirs(args, g.getenv)
			if err != nil {
				return err
			}
			if dryRun {
				return runDryRun(cmd.Context(), g, &f, dirs)
			}
			return runBackfill(cmd.Context(), g, &f, dirs, !cmd.Flag("log-level").Changed)
		},
	}
	addCommonFlags(cmd.Flags(), &f)
	// Defined, hidden, only to refuse it with advice (backfillDeleteOnRemove).
	cmd.Flags().BoolVar(&f.deleteOnRemove, "delete-on-remove", false, "refused: a backfill never deletes")
	_ = cmd.Flags().MarkHidden("delete-on-remove")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be uploaded, linked, skipped or quarantined; upload nothing (needs no API key)")
	return cmd
}

// backfillDeleteOnRemove refuses --delete-on-remove on the command line:
// a backfill uploads and never deletes, so the flag would promise what it
// does not do. From the environment (TRACESYNC_DELETE_ON_REMOVE in the
// service's env file, sourced to run a backfill) it is a setting of the
// daemon: ignored, with a warning.
func backfillDeleteOnRemove(g *globals, f *syncFlags) error {
	if !f.deleteOnRemove {
		return nil
	}
	if name, ok := g.fromEnv["delete-on-remove"]; ok {
		g.log.Warn().Str("variable", name).Msgf("%s is ignored by backfill: a backfill never deletes (tracesync run --delete-on-remove does)", name)
		f.deleteOnRemove = false
		return nil
	}
	return usageErrorf("--delete-on-remove is not for backfill: a backfill uploads and never deletes; use tracesync run --delete-on-remove to delete the traces of files removed while it watches, or tracesync reconcile --confirm --delete-on-remove DIR for files already gone")
}

// runBackfill is `tracesync backfill` once its flags are checked.
// quietLogs lowers the log level to warn when a progress bar is shown, so
// per-file lines do not bury it (unless --log-level was given).
func runBackfill(ctx context.Context, g *globals, f *syncFlags, dirs []string, quietLogs bool) error {
	stateDir, finished, err := syncBackfill(ctx, g, f, dirs, quietLogs)
	// Compacted once the sync's store, engine and watcher are closed and
	// unreachable, so the copy reuses their memory instead of adding to it.
	if f.compactState && finished {
		compactAfterBackfill(g, stateDir)
	}
	return err
}

// syncBackfill is runBackfill up to its summary. finished says whether it
// ran to the end (not interrupted, no setup error); stateDir is where the
// state is.
func syncBackfill(ctx context.Context, g *globals, f *syncFlags, dirs []string, quietLogs bool) (stateDir string, finished bool, _ error) {
	start := time.Now()
	terminal := logging.IsTerminal(g.stderr)
	interval := plainInterval
	if terminal {
		interval = barInterval
	}
	bar := newProgressPrinter(g.stderr, terminal, start, interval)
	if terminal {
		// Log lines go through the bar: it is cleared, the line written, the bar redrawn.
		level := g.logLevel
		if quietLogs {
			level = "warn"
		}
		format := g.logFormat
		if format == "" || format == "auto" {
			format = "console"
		}
		log, err := logging.NewWithOptions(&barLogWriter{p: bar}, level, format, logging.Options{Roots: g.logRoots})
		if err != nil {
			return "", false, asUsage(err)
		}
		g.log = log
	}

	s, err := openSyncer(ctx, g, f, dirs, true)
	if err != nil {
		return "", false, err
	}
	defer s.close()

	hooks := syncHooks{extra: []func(context.Context) error{
		s.controlGuard,
		func(ctx context.Context) error {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case now := <-t.C:
					bar.mu.Lock()
					bar.Update(snapshotOf(s.eng.Progress()), now)
					bar.mu.Unlock()
				}
			}
		},
	}}
	runErr := s.run(ctx, hooks)
	bar.mu.Lock()
	bar.Clear()
	bar.mu.Unlock()
	if runErr != nil && !errors.Is(runErr, errInterrupted) {
		return "", false, runErr
	}
	if runErr == nil && f.retention > 0 {
		s.prune(ctx, 0, s.eng.Progress().FilesSeen > 0) // the engine has stopped: nothing is being read
	}

	sum, err := summarize(s.db, dirs, s.eng.Progress(), int(s.scanUnchanged.Load()), time.Since(start))
	if err != nil {
		return "", false, fmt.Errorf("read the results from the state: %w", err)
	}
	sum.addIncomplete(s.db, s.resettler.unfinished())
	sum.interrupted = errors.Is(runErr, errInterrupted)
	sum.write(g.stdout)
	if sum.interrupted || sum.quarantined > 0 || sum.unfinished > 0 || len(sum.incomplete) > 0 {
		return s.stateDir, !sum.interrupted, errSilentFailure
	}
	return s.stateDir, true, nil
}

// minCompactSlack is the least slack, in bytes on disk, that a backfill
// compacts away: below it the copy is not worth its time. Tests lower it.
var minCompactSlack int64 = 1 << 20

// compactAfterBackfill packs the state file a backfill has grown: inserts
// leave pages part full and copy-on-write leaves free pages, often half
// the file. A failure only costs disk space, so it is a warning.
func compactAfterBackfill(g *globals, dir string) {
	start := time.Now()
	// The sync's memory is garbage now: collect it first, so the copy
	// reuses it rather than growing the heap past the backfill's peak.
	debug.FreeOSMemory()
	before, after, done, err := store.CompactIfSlack(dir, minCompactSlack)
	if err != nil {
		g.log.Warn().Err(err).Msg("the state file was not compacted (it works as it is; tracesync state compact retries)")
		return
	}
	if done {
		fmt.Fprintf(g.stdout, "state compacted in %s: %s -> %s on disk\n", time.Since(start).Round(time.Millisecond), compactSize(before), compactSize(after))
	}
}

// compactAtStart packs the state file before a daemon opens it, when a
// quarter or more of it is slack: a daemon's state grows as a backfill's
// does, and it can only be packed while no one holds it. A failure is
// logged and the start goes on (Open then says what is wrong, if anything).
func compactAtStart(g *globals, dir string) {
	start := time.Now()
	before, after, done, err := store.CompactIfSlack(dir, minCompactSlack)
	var locked *store.LockedError
	switch {
	case errors.Is(err, fs.ErrNotExist): // no state yet
	case errors.As(err, &locked), errors.Is(err, store.ErrCorrupt):
		// Open waits for the lock, or moves the file aside, and says so.
	case err != nil:
		g.log.Warn().Err(err).Msg("the state file was not compacted at start (it works as it is)")
	case done:
		g.log.Info().Str("took", time.Since(start).Round(time.Millisecond).String()).
			Str("before", compactSize(before)).Str("after", compactSize(after)).
			Msg("state file compacted: it had a quarter or more of slack")
	}
}

func snapshotOf(p uploader.Progress) progressSnapshot {
	return progressSnapshot{
		FilesTotal: p.FilesSeen, FilesDone: p.FilesDone,
		BytesTotal: p.BytesSeen, BytesDone: p.BytesDone,
		Uploaded: p.Uploaded, Linked: p.Linked + p.Unchanged + p.Adopted, Skipped: p.Skipped + p.TooOld,
		Quarantined: p.Quarantined, Retrying: p.Retrying,
	}
}

// barLogWriter writes log lines above the progress bar.
type barLogWriter struct{ p *progressPrinter }

func (w *barLogWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	redraw := w.p.drawn
	w.p.Clear()
	n, err := w.p.w.Write(b)
	if redraw && w.p.last != nil {
		fmt.Fprintf(w.p.w, "\r\x1b[K%s", *w.p.last)
		w.p.drawn = true
	}
	return n, err
}

// backfillSummary is what a backfill did, for the final report.
type backfillSummary struct {
	elapsed       time.Duration
	uploaded      int
	bytesUploaded int64
	adopted       int
	linked        int
	unchanged     int // already uploaded by an earlier run (by stat or by hash)
	skipped       int
	tooOld        int            // skipped unread for --max-age
	deleted       int            // deleted after upload (--after-upload delete)
	archived      int            // moved to --archive-dir after upload
	quarantined   int            // paths under the folders quarantined now (this run or earlier)
	reasons       map[string]int // this run's quarantines by reason
	listed        []store.PathRecord
	unfinished    int      // pending or retrying paths left (an interrupted run)
	incomplete    []string // files sent back to settling that never came back whole
	filesDone     int      // files that reached a final state
	filesRead     int      // of those, the ones read (not refused unread: too large)
	bytesDone     int64    // the bytes read
	interrupted   bool
	roots         []string // the folders backfilled
	recordErr     error    // recording the incomplete files in the state failed
}

// summarize combines the engine's counters with the store's view of the
// folders (which also knows files quarantined by an earlier run that this
// run did not read again because they had not changed).
func summarize(db *store.DB, dirs []string, p uploader.Progress, scanUnchanged int, elapsed time.Duration) (*backfillSummary, error) {
	s := &backfillSummary{
		elapsed: elapsed, uploaded: p.Uploaded, bytesUploaded: p.BytesUploaded, adopted: p.Adopted, linked: p.Linked,
		unchanged: p.Unchanged + scanUnchanged, skipped: p.Skipped, reasons: p.QuarantineReasons,
		tooOld: p.TooOld, deleted: p.Deleted, archived: p.Archived,
		filesDone: p.FilesDone, filesRead: p.FilesRead, bytesDone: p.BytesDone, roots: dirs,
	}
	for _, d := range dirs {
		var listed []string // read whole afterwards, for their reasons
		err := db.ScanPaths(d+string(filepath.Separator), func(p, _ []byte, st store.PathStat) bool {
			switch st.State {
			case store.StateQuarantined, store.StatePending, store.StateRetrying:
			default:
				return true
			}
			if _, err := os.Lstat(string(p)); errors.Is(err, os.ErrNotExist) {
				return true // gone since; a backfill does not track removals
			}
			if st.State != store.StateQuarantined {
				s.unfinished++
				return true
			}
			s.quarantined++
			if len(s.listed)+len(listed) < maxListed {
				listed = append(listed, string(p))
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		for _, p := range listed {
			r, err := db.GetPath(p)
			if err != nil {
				return nil, err
			}
			s.listed = append(s.listed, r)
		}
	}
	return s, nil
}

// addIncomplete records the files the engine sent back to settling that
// the single pass of a backfill never reported again: still on disk and
// not in a final state.
func (s *backfillSummary) addIncomplete(db *store.DB, paths []string) {
	var record []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		rec, err := db.GetPath(p)
		if err == nil {
			switch {
			case rec.State == store.StateUploaded && (rec.Prior > 0 || rec.End != 0) && rec.Size > rec.SegEnd():
				// Its complete lines are sent; its last line is not finished.
				s.incomplete = append(s.incomplete, p)
				continue
			case rec.State == store.StateUploaded, rec.State == store.StateSkipped, rec.State == store.StateQuarantined, rec.State == store.StateRemoved:
				continue
			}
		}
		s.incomplete = append(s.incomplete, p)
		record = append(record, p)
	}
	s.recordIncomplete(db, record)
}

// rootOf is the folder of roots that holds p ("" if none does).
func rootOf(roots []string, p string) string {
	best := ""
	for _, r := range roots {
		if (p == r || strings.HasPrefix(p, r+string(filepath.Separator))) && len(r) > len(best) {
			best = r
		}
	}
	return best
}

// recordIncomplete records paths as incomplete in the state, so status and
// files show them after the backfill, and the next run reads them again.
func (s *backfillSummary) recordIncomplete(db *store.DB, paths []string) {
	if len(paths) == 0 {
		return
	}
	now := time.Now()
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range paths {
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			rec, err := tx.GetPath(p)
			if err != nil {
				rec = store.PathRecord{Path: p, FirstSeen: now}
			}
			if rec.Root == "" {
				rec.Root = rootOf(s.roots, p)
			}
			rec.State, rec.Size, rec.ModTime, rec.UpdatedAt = store.StateIncomplete, fi.Size(), fi.ModTime(), now
			rec.LastError = p + ": not whole when the backfill read it (cut mid-value, or changed while read); complete it, then run again"
			if err := tx.PutPath(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.recordErr = err
	}
}

func (s *backfillSummary) write(w io.Writer) {
	secs := s.elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	word := "done"
	if s.interrupted {
		word = "INTERRUPTED"
	}
	fmt.Fprintf(w, "backfill %s in %s: %s read, %s", word, s.elapsed.Round(10*time.Millisecond), countOf(s.filesRead, "file", "files"), humanBytes(s.bytesDone))
	if unread := s.filesDone - s.filesRead; unread > 0 {
		fmt.Fprintf(w, "; %s refused unread (see quarantined)", countOf(unread, "file", "files"))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  uploaded     %8s  (%s sent)\n", count(s.uploaded), humanBytes(s.bytesUploaded))
	if s.adopted > 0 {
		fmt.Fprintf(w, "  adopted      %8s  (already on the server under its content's name: recorded, no upload)\n", count(s.adopted))
	}
	fmt.Fprintf(w, "  linked       %8s  (same bytes as an uploaded file: no upload)\n", count(s.linked))
	fmt.Fprintf(w, "  unchanged    %8s  (recorded by an earlier run with these bytes: not read again)\n", count(s.unchanged))
	fmt.Fprintf(w, "  skipped      %8s  (empty files)\n", count(s.skipped))
	s.writeAfterUpload(w)
	fmt.Fprintf(w, "  quarantined  %8s", count(s.quarantined))
	if len(s.reasons) > 0 {
		keys := make([]string, 0, len(s.reasons))
		for k := range s.reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.reasons[k]))
		}
		fmt.Fprintf(w, "  (this run: %s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	for _, r := range s.listed {
		if strings.HasPrefix(r.LastError, r.Path) {
			fmt.Fprintf(w, "      %s\n", r.LastError) // the message names the file itself
		} else {
			fmt.Fprintf(w, "      %s: %s\n", r.Path, r.LastError)
		}
	}
	if s.quarantined > len(s.listed) {
		fmt.Fprintf(w, "      ... and %d more: tracesync files --state quarantined\n", s.quarantined-len(s.listed))
	}
	if s.recordErr != nil {
		fmt.Fprintf(w, "  could not record the incomplete files in the state: %v\n", s.recordErr)
	}
	if len(s.incomplete) > 0 {
		fmt.Fprintf(w, "  incomplete   %8s  (not whole when read: cut mid-value, or changed while read; not uploaded)\n", count(len(s.incomplete)))
		for i, p := range s.incomplete {
			if i == maxListed {
				fmt.Fprintf(w, "      ... and %d more\n", len(s.incomplete)-maxListed)
				break
			}
			fmt.Fprintf(w, "      %s: incomplete\n", p)
		}
	}
	fmt.Fprintf(w, "  rate         %.0f files/s, %s/s\n", float64(s.filesRead)/secs, humanBytes(int64(float64(s.bytesDone)/secs)))
	switch {
	case len(s.incomplete) > 0:
		fmt.Fprintln(w, "complete the incomplete files (writers should write a temporary name and rename it into place), then run the same command again")
	case s.interrupted || s.unfinished > 0:
		fmt.Fprintf(w, "%s not finished: run the same command again to finish (nothing is uploaded twice)\n", countOf(s.unfinished, "file", "files"))
	case s.quarantined > 0:
		fmt.Fprintln(w, "fix the quarantined files (they are retried when their bytes change), or run tracesync retry PATH after fixing the cause")
	}
}
