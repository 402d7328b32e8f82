package main

// verify.go is `tracesync verify`: the wiring around checkTraces (the
// state's snapshot, the API client, progress, output) and --repair.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/internal/logging"
	"github.com/tracesync/tracesync/store"
)

// verifyListed is how many missing contents and forgotten paths the text
// report names.
const verifyListed = 20

func newVerifyCmd(g *globals) *cobra.Command {
	var repair, confirm, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [--repair [--confirm]] [--json]",
		Short: "Check that the traces the state records still exist on the server",
		Long: `verify checks, for every content the state records for the target, that
its traces are still on the server, by listing the project's traces in pages
of 500 (or, for a few contents in a big project, the traces of each upload's
name): never one request per trace. It prints the contents with missing
traces and their local files, and counts the traces on the server that the
state does not record ("unknown": in a fleet, other hosts' uploads; this is
not an error).

--repair says what it would forget: the files holding a content with missing
traces. With --confirm it forgets them, so the next run or backfill uploads
them again, and queues the delete of those contents' traces that are still
on the server, so the upload leaves one whole copy. A content no file holds
any more is only dropped from the state.

verify reads the state file itself: stop a running daemon first. It needs the
API key, like run.

Exit status: 0 when every recorded trace is on the server (or, with --repair
--confirm, every content missing some was forgotten), 1 when some are missing
or the check failed, 2 for a usage or configuration error.`,
		Example: `  tracesync verify
  tracesync verify --json > verify.json
  tracesync verify --repair            # say what would be forgotten
  tracesync verify --repair --confirm  # forget it; then: tracesync backfill DIR`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if confirm && !repair {
				return usageErrorf("--confirm goes with --repair: tracesync verify --repair --confirm")
			}
			return runVerify(cmd.Context(), g, repair, confirm, asJSON)
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "say what would be forgotten so the next run uploads it again; with --confirm, forget it")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "with --repair: forget the contents with missing traces (without it nothing changes)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	return cmd
}

// repairReport is what --repair forgot, or would forget.
type repairReport struct {
	Confirmed     bool     `json:"confirmed"`      // false: nothing was changed
	Contents      int      `json:"contents"`       // content records dropped
	Paths         []string `json:"paths"`          // files forgotten: the next run or backfill uploads them again
	DeletesQueued int      `json:"deletes_queued"` // traces still on the server of forgotten contents, queued for delete
	Changed       []string `json:"changed"`        // contents (hashes) changed since the check: left alone
}

func runVerify(ctx context.Context, g *globals, repair, confirm, asJSON bool) error {
	dir, err := g.resolveStateDir()
	if err != nil {
		return err
	}
	if err := verifyNoDaemon(ctx, dir); err != nil {
		return err
	}
	file := filepath.Join(dir, store.FileName)
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return asUsage(fmt.Errorf("%w at %s: nothing to verify (is --state-dir right?)", errNoState, file))
	}
	api, err := g.newClient(ctx)
	if err != nil {
		return err
	}
	target := api.Target().String()
	snap, err := verifySnapshotOf(g, dir, target)
	if err != nil {
		return err
	}
	bar := newVerifyBar(g.stderr, logging.IsTerminal(g.stderr) && !asJSON)
	rep, err := checkTraces(ctx, api, snap, bar.update)
	bar.clear()
	if err != nil {
		return err
	}
	rep.Target = target
	if repair && len(rep.Missing) > 0 {
		var r repairReport
		if confirm {
			r, err = applyRepair(ctx, g, dir, target, rep)
			if err != nil {
				return err
			}
		} else {
			r = planRepair(snap, rep)
		}
		rep.Repair = &r
	}
	if asJSON {
		err = printJSONValue(g.stdout, rep)
	} else {
		err = writeVerify(g.stdout, rep)
	}
	if err != nil {
		return err
	}
	if len(rep.Missing) > 0 && (rep.Repair == nil || !rep.Repair.Confirmed || len(rep.Repair.Changed) > 0) {
		return errSilentFailure
	}
	return nil
}

// verifyNoDaemon refuses while a daemon serves dir: it holds the state's
// lock, and what verify reads would change under it.
func verifyNoDaemon(ctx context.Context, dir string) error {
	h, err := control.Dial(control.SocketPath(dir))
	if errors.Is(err, control.ErrNoDaemon) {
		return nil
	}
	if err != nil {
		return err
	}
	pid := ""
	if st, err := h.Status(ctx); err == nil && st.DaemonPID > 0 {
		pid = fmt.Sprintf(" (pid %d)", st.DaemonPID)
	}
	return fmt.Errorf("a running tracesync%s (a daemon or a backfill) holds the state in %s, and verify reads the state file itself: stop the daemon (systemctl stop tracesync) or let the backfill finish, run verify, then start the daemon again", pid, dir)
}

// verifySnapshotOf reads the target's contents and pending deletes from the
// state opened read-only, and closes it before any listing, so a daemon
// started meanwhile is not kept waiting for the lock.
func verifySnapshotOf(g *globals, dir, target string) (verifySnapshot, error) {
	db, err := store.OpenReadOnly(dir, store.Options{Target: target, Log: g.log})
	if err != nil {
		return verifySnapshot{}, explainStateError(err, dir)
	}
	defer db.Close()
	has, err := db.HasTarget()
	if err != nil {
		return verifySnapshot{}, err
	}
	if !has {
		return verifySnapshot{}, asUsage(fmt.Errorf("the state %s records nothing for %s: pass the --base-url, --organization-id and --project-id it syncs to (tracesync status shows them)", db.File(), target))
	}
	snap := verifySnapshot{Deleting: map[string]bool{}}
	err = db.ForEachContent(func(c store.Content, paths []string) error {
		snap.Contents = append(snap.Contents, verifyContent{Hash: c.Hash, Filename: c.Filename, Paths: paths, TraceIDs: c.TraceIDs})
		return nil
	})
	if err != nil {
		return verifySnapshot{}, fmt.Errorf("read the state's contents: %w", err)
	}
	dels, err := db.Deletes()
	if err != nil {
		return verifySnapshot{}, fmt.Errorf("read the state's pending deletes: %w", err)
	}
	for _, d := range dels {
		snap.Deleting[d.TraceID] = true
	}
	return snap, nil
}

// planRepair is what applyRepair would do, worked out from the snapshot:
// the same files and contents ForgetContent would drop.
func planRepair(snap verifySnapshot, rep verifyReport) repairReport {
	r := repairReport{Paths: []string{}, Changed: []string{}}
	gone := missingIDs(rep)
	forgotten := map[string]bool{}
	byHash := map[string]bool{}
	for _, m := range rep.Missing {
		byHash[m.Hash] = true
		for _, p := range m.Paths {
			forgotten[p] = true
		}
	}
	for _, c := range snap.Contents {
		// A content goes when it is missing traces, or when every file
		// holding it is forgotten (another segment of a forgotten file).
		drop := byHash[c.Hash.String()]
		if !drop && len(c.Paths) > 0 {
			drop = !slices.ContainsFunc(c.Paths, func(p string) bool { return !forgotten[p] })
		}
		if !drop {
			continue
		}
		r.Contents++
		if len(c.Paths) == 0 {
			continue // nothing uploads it again: its traces stay
		}
		for _, id := range c.TraceIDs {
			if !gone[id] && !snap.Deleting[id] {
				r.DeletesQueued++
			}
		}
	}
	for p := range forgotten {
		r.Paths = append(r.Paths, p)
	}
	slices.Sort(r.Paths)
	return r
}

// applyRepair forgets the contents with missing traces and the files that
// hold them, in one transaction of the state opened read-write (no other
// tracesync may hold it), and queues the delete of their traces still on
// the server when a file will upload them again. A content changed since
// the check (uploaded again, forgotten) is left alone and named.
func applyRepair(ctx context.Context, g *globals, dir, target string, rep verifyReport) (repairReport, error) {
	db, err := store.Open(dir, store.Options{Target: target, Log: g.log})
	if err != nil {
		var le *store.LockedError
		if errors.As(err, &le) {
			return repairReport{}, fmt.Errorf("%w (verify --repair --confirm needs the state to itself: stop the daemon or backfill, then run it again)", err)
		}
		return repairReport{}, explainStateError(err, dir)
	}
	defer db.Close()
	gone := missingIDs(rep)
	var r repairReport
	err = db.Update(ctx, func(tx *store.Tx) error {
		r = repairReport{Confirmed: true, Paths: []string{}, Changed: []string{}} // fn may run more than once
		dropped := map[store.Hash]bool{}
		now := time.Now()
		for _, m := range rep.Missing {
			h, err := store.ParseHash(m.Hash)
			if err != nil {
				return err
			}
			if dropped[h] {
				continue // went with a file forgotten for another content
			}
			c, err := tx.GetContent(h)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !sameIDs(c.TraceIDs, m)) {
				r.Changed = append(r.Changed, m.Hash)
				continue
			}
			if err != nil {
				return err
			}
			paths, drops, err := tx.ForgetContent(h)
			if err != nil {
				return err
			}
			r.Paths = append(r.Paths, paths...)
			for _, d := range drops {
				dropped[d.Hash] = true
				r.Contents++
				if len(paths) == 0 {
					continue // nothing uploads it again: its traces stay
				}
				for _, id := range d.TraceIDs {
					if gone[id] {
						continue
					}
					if _, err := tx.GetDelete(id); err == nil {
						continue
					}
					if err := tx.PutDelete(store.Delete{TraceID: id, Hash: d.Hash, QueuedAt: now}); err != nil {
						return err
					}
					r.DeletesQueued++
				}
			}
		}
		return nil
	})
	if err != nil {
		return repairReport{}, explainStateError(fmt.Errorf("repair the state: %w", err), dir)
	}
	slices.Sort(r.Paths)
	return r, nil
}

// sameIDs reports whether a content still records the traces the check saw.
func sameIDs(ids []string, m missingContent) bool {
	return len(ids) == m.Traces && !slices.ContainsFunc(m.MissingIDs, func(id string) bool { return !slices.Contains(ids, id) })
}

// missingIDs is the set of every trace the report found missing.
func missingIDs(rep verifyReport) map[string]bool {
	out := map[string]bool{}
	for _, m := range rep.Missing {
		for _, id := range m.MissingIDs {
			out[id] = true
		}
	}
	return out
}

// writeVerify prints the report for people.
func writeVerify(w io.Writer, rep verifyReport) error {
	ew := &errWriter{w: w}
	scope := fmt.Sprintf("listed the project's %s", countOf(rep.ProjectTraces, "trace", "traces"))
	if rep.Mode == "sources" {
		scope = fmt.Sprintf("listed the traces of each upload's name (the project holds %s)", countOf(rep.ProjectTraces, "trace", "traces"))
	}
	if rep.Mode == "none" {
		scope = "nothing to list"
	}
	ew.printf("verified %s with %s against %s: %s in %s\n", countOf(rep.Contents, "content", "contents"),
		countOf(rep.Traces, "trace", "traces"), rep.Target, scope, countOf(rep.Requests, "request", "requests"))
	if len(rep.Missing) == 0 {
		ew.printf("missing: none; every recorded trace is on the server\n")
	} else {
		ew.printf("missing: %s of %s gone from the server:\n", countOf(rep.MissingTraces, "trace", "traces"), countOf(len(rep.Missing), "content", "contents"))
		for i, m := range rep.Missing {
			if i == verifyListed {
				ew.printf("  ... and %d more (--json lists them all)\n", len(rep.Missing)-verifyListed)
				break
			}
			where := "(no local file)"
			switch len(m.Paths) {
			case 0:
			case 1:
				where = m.Paths[0]
			default:
				where = fmt.Sprintf("%s (and %d more %s)", m.Paths[0], len(m.Paths)-1, pluralize(len(m.Paths)-1, "file", "files"))
			}
			ew.printf("  %s: %d of %s missing (uploaded as %s)\n", where, m.Missing, countOf(m.Traces, "trace", "traces"), m.Filename)
		}
	}
	if rep.Unknown > 0 {
		scope := "in the project"
		if rep.Mode == "sources" {
			scope = "under this state's upload names"
		}
		ids := make([]string, 0, len(rep.UnknownListed))
		for _, u := range rep.UnknownListed {
			ids = append(ids, u.ID)
		}
		more := ""
		if rep.Unknown > len(ids) {
			more = ", ..."
		}
		ew.printf("unknown: %s %s that this state does not record (other hosts' uploads, or traces made outside tracesync; not an error): %s%s\n",
			countOf(rep.Unknown, "trace", "traces"), scope, strings.Join(ids, " "), more)
	}
	if r := rep.Repair; r != nil {
		writeRepair(ew, r)
	} else if len(rep.Missing) > 0 {
		ew.printf("tracesync verify --repair says what it would forget so that the next run uploads these files again\n")
	}
	return ew.err
}

func writeRepair(ew *errWriter, r *repairReport) {
	verb, deletes := "would forget", "would queue"
	if r.Confirmed {
		verb, deletes = "forgot", "queued"
	}
	ew.printf("repair: %s %s and %s; the next run or backfill uploads these files again:\n",
		verb, countOf(r.Contents, "content", "contents"), countOf(len(r.Paths), "file", "files"))
	for i, p := range r.Paths {
		if i == verifyListed {
			ew.printf("  ... and %d more\n", len(r.Paths)-verifyListed)
			break
		}
		ew.printf("  %s\n", p)
	}
	if r.DeletesQueued > 0 {
		ew.printf("repair: %s the delete of %s still on the server, so each upload leaves one whole copy\n",
			deletes, countOf(r.DeletesQueued, "trace", "traces"))
	}
	if len(r.Changed) > 0 {
		ew.printf("repair: left %s that changed since the check; run verify again\n", countOf(len(r.Changed), "content", "contents"))
	}
	if !r.Confirmed {
		ew.printf("nothing changed: run the same command with --confirm to do it\n")
	}
}

// errWriter keeps the first write error, so a report is printed without
// checking each line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

// verifyBar shows the listing's progress on a terminal, redrawn in place
// as the backfill's bar is; it shows nothing otherwise.
type verifyBar struct {
	w        io.Writer
	terminal bool
	last     time.Time
	drawn    bool
}

func newVerifyBar(w io.Writer, terminal bool) *verifyBar { return &verifyBar{w: w, terminal: terminal} }

func (b *verifyBar) update(p verifyProgress) {
	if !b.terminal || time.Since(b.last) < barInterval {
		return
	}
	b.last = time.Now()
	what := "the project's traces"
	if p.Phase == "sources" {
		what = "traces by upload name"
	}
	line := fmt.Sprintf("verify: listed %s %s", count(p.Listed), what)
	if p.Total > 0 {
		line = fmt.Sprintf("verify: listed %s of %s %s (%3.0f%%)", count(p.Listed), count(p.Total), what, 100*min(1, float64(p.Listed)/float64(p.Total)))
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s, %s", line, countOf(p.Requests, "request", "requests"))
	b.drawn = true
}

func (b *verifyBar) clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}
