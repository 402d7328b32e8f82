package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
)

func newFilesCmd(g *globals) *cobra.Command {
	var (
		state  string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "files",
		Short: "List tracked paths with their state, hash, trace ids, attempts and last error",
		Long: `files lists every path the state tracks for the last used target, one row per
path, in path order. --state keeps one state (` + stateNames() + `).

It needs no API key. While a daemon runs, it asks the daemon.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "" && !store.State(state).Valid() {
				return usageErrorf("unknown --state %q: use one of %s", state, stateNames())
			}
			files := []control.File{}
			h, _, closeFn, err := stateHandler(g, true)
			switch {
			case errors.Is(err, errNoState):
			case err != nil:
				return err
			default:
				defer closeFn()
				if files, err = h.Files(cmd.Context(), store.State(state)); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSONValue(g.stdout, files)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "STATE\tATTEMPTS\tHASH\tTRACES\tPATH\tLAST ERROR\n")
			for _, f := range files {
				hash := "-"
				if len(f.Hash) >= 12 {
					hash = f.Hash[:12]
				}
				traces := "-"
				if len(f.TraceIDs) > 0 {
					traces = strings.Join(f.TraceIDs, ",")
				}
				lastErr := strings.TrimPrefix(f.LastError, f.Path+": ") // the PATH column names it already
				path := f.Path
				if f.Segments > 1 {
					path += fmt.Sprintf(" (%d segments, %d bytes sent)", f.Segments, f.Sent)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", f.State, f.Attempts, hash, traces, path, lastErr)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only paths in this state: "+stateNames())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// stateNames lists the state names for help and errors.
func stateNames() string {
	names := make([]string, len(store.States))
	for i, s := range store.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
