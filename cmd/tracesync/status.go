package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
)

// errNoState says the state directory holds no state file yet; the read
// commands show an empty store rather than creating one.
var errNoState = errors.New("no state file yet")

// daemonAnswerWait is how long the read commands wait for a process that
// holds the state file to answer on its control socket.
const daemonAnswerWait = 5 * time.Second

// stateHandler returns what answers the status, files, retry and forget
// commands: the running daemon over its control socket when one answers,
// else the state file opened directly (the last used target): for reading
// only (status, files) with readOnly, which spares a large state the walk
// of every page a writable open makes. close releases it. With no state
// file at all it returns errNoState (wrapped, naming the file) and creates
// nothing. No API key is needed either way.
func stateHandler(g *globals, readOnly bool) (h control.Handler, file string, closeFn func(), err error) {
	dir, err := g.resolveStateDir()
	if err != nil {
		return nil, "", nil, err
	}
	file = filepath.Join(dir, store.FileName)
	h, err = control.Dial(control.SocketPath(dir))
	if err == nil {
		return h, file, func() {}, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, file, nil, err
	}
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, file, nil, fmt.Errorf("%w at %s", errNoState, file)
	}
	open := store.Open
	if readOnly {
		open = store.OpenForReading
	}
	db, err := open(dir, store.Options{Log: g.log})
	var locked *store.LockedError
	if errors.As(err, &locked) {
		g.log.Debug().Str("state", file).Str("socket", control.SocketPath(dir)).Msg("the state file is held by another process: waiting for it to answer on its control socket")
	}
	for deadline := time.Now().Add(daemonAnswerWait); errors.As(err, &locked) && time.Now().Before(deadline); {
		// Another process holds the file but did not answer on the
		// socket: a daemon that is still opening its store (its socket
		// comes up right after). Ask it again for a moment.
		time.Sleep(100 * time.Millisecond)
		if h, derr := control.Dial(control.SocketPath(dir)); derr == nil {
			return h, file, func() {}, nil
		}
		db, err = open(dir, store.Options{Log: g.log})
	}
	if errors.As(err, &locked) {
		return nil, file, nil, explainStateError(fmt.Errorf("%w (it did not answer on its control socket %s within %v either)", err, control.SocketPath(dir), daemonAnswerWait), dir)
	}
	if errors.Is(err, syscall.EROFS) {
		// A state disk that turned read-only: status and files still
		// answer (retry and forget say they need it writable).
		g.log.Warn().Str("state", file).Msg("the state directory is on a read-only file system: showing the state read-only")
		db, err = store.OpenReadOnly(dir, store.Options{Log: g.log})
	}
	if err != nil {
		return nil, file, nil, explainStateError(err, dir)
	}
	return control.NewStoreHandler(db), file, func() { _ = db.Close() }, nil
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the state holds: files per state, contents, traces, pending deletes, recent errors",
		Long: `status shows the state of the target last used with this state directory:
how many files are in each state, distinct contents and traces, remote deletes
still to do, leftover upload intents and the last errors with their paths.

It needs no API key and makes no API call. While a daemon runs, it asks the
daemon over the control socket in the state directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := readStatus(cmd.Context(), g)
			if err != nil {
				return err
			}
			if asJSON {
				// The raw target key stays for tools that read it; its parts
				// are given as words beside it.
				out := struct {
					control.Status
					BaseURL        string `json:"base_url,omitempty"`
					OrganizationID string `json:"organization_id,omitempty"`
					ProjectID      string `json:"project_id,omitempty"`
				}{Status: st}
				if t, ok := client.ParseTarget(st.Target); ok {
					out.BaseURL, out.OrganizationID, out.ProjectID = t.BaseURL, t.OrganizationID, t.ProjectID
				}
				return printJSONValue(g.stdout, out)
			}
			return printStatus(g.stdout, st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (a \"files\" object keyed by state name)")
	return cmd
}

func readStatus(ctx context.Context, g *globals) (control.Status, error) {
	h, file, closeFn, err := stateHandler(g, true)
	if errors.Is(err, errNoState) {
		files := make(map[store.State]int, len(store.States))
		for _, s := range store.States {
			files[s] = 0
		}
		return control.Status{StateFile: file, Files: files, LastErrors: []control.FileError{}}, nil
	}
	if err != nil {
		return control.Status{}, err
	}
	defer closeFn()
	return h.Status(ctx)
}

func printStatus(w io.Writer, st control.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch t, ok := client.ParseTarget(st.Target); {
	case st.Target == "":
		fmt.Fprintf(tw, "Target:\t(none: nothing has been synced with this state directory)\n")
	case ok:
		fmt.Fprintf(tw, "API:\t%s\n", t.BaseURL)
		fmt.Fprintf(tw, "Organization:\t%s\n", t.OrganizationID)
		fmt.Fprintf(tw, "Project:\t%s\n", t.ProjectID)
	default:
		fmt.Fprintf(tw, "Target:\t%s\n", st.Target)
	}
	fmt.Fprintf(tw, "State file:\t%s\n", st.StateFile)
	if st.Daemon {
		fmt.Fprintf(tw, "Source:\trunning daemon (pid %d)\n", st.DaemonPID)
	} else {
		fmt.Fprintf(tw, "Source:\tstate file (no daemon running)\n")
	}
	fmt.Fprintf(tw, "Files:\t\n")
	for _, s := range store.States {
		fmt.Fprintf(tw, "  %s\t%d\n", s, st.Files[s])
	}
	fmt.Fprintf(tw, "Contents:\t%d\n", st.Contents)
	fmt.Fprintf(tw, "Traces:\t%d\n", st.Traces)
	fmt.Fprintf(tw, "Deletes pending:\t%d\n", st.DeletesPending)
	fmt.Fprintf(tw, "Upload intents:\t%d\n", st.Intents)
	if st.Chained > 0 {
		fmt.Fprintf(tw, "Growing files:\t%d, in %d segments\n", st.Chained, st.Segments)
	}
	if st.HeldBack > 0 {
		fmt.Fprintf(tw, "Removals held back:\t%d (see tracesync reconcile)\n", st.HeldBack)
	}
	if c := st.Concurrency; c != nil {
		if c.Mode == "auto" {
			fmt.Fprintf(tw, "Concurrency:\t%d now, adaptive up to %d (--workers auto); %d in flight\n", c.Limit, c.Max, c.InFlight)
		} else {
			fmt.Fprintf(tw, "Concurrency:\t%d, fixed (--workers %d); %d in flight\n", c.Limit, c.Max, c.InFlight)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.LastErrors) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nLast errors:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range st.LastErrors {
		at := ""
		if !e.At.IsZero() {
			at = e.At.Local().Format(time.DateTime)
		}
		if strings.Contains(e.Error, e.Path) { // the message names the file itself: once is enough
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", at, e.State, e.Error)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s: %s\n", at, e.State, e.Path, e.Error)
	}
	return tw.Flush()
}

// printJSONValue prints v as indented JSON.
func printJSONValue(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
