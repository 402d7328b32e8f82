package main

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"github.com/tracesync/tracesync/store"
)

func newRetryCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "retry (--all | PATH...)",
		Short: "Retry quarantined or retrying files now",
		Long: `retry moves the given paths (or, with --all, every path) that are quarantined
or waiting to retry back to pending, with attempts reset and no backoff, so the
next pass uploads them. Paths in other states are left as they are.

It needs no API key. While a daemon runs, it asks the daemon, which picks the
files up; otherwise the next run or backfill does.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case !all && len(args) == 0:
				return usageErrorf("retry: give the paths to retry (tracesync files --state quarantined lists them), or --all for every quarantined or retrying path")
			case all && len(args) > 0:
				return usageErrorf("retry: give --all or paths, not both")
			}
			paths, err := trackedPaths(args)
			if err != nil {
				return err
			}
			h, _, closeFn, err := stateHandler(g, false)
			if errors.Is(err, errNoState) {
				if all {
					fmt.Fprintln(g.stdout, "requeued 0 files")
					return nil
				}
				return fmt.Errorf("not tracked: %v (%w)", args, err)
			}
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := h.Retry(cmd.Context(), paths, all)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "requeued %d %s\n", res.Requeued, pluralize(res.Requeued, "file", "files"))
			left := slices.Sorted(maps.Keys(res.Left))
			for _, p := range left {
				fmt.Fprintf(g.stdout, "  %s: %s, %s\n", p, res.Left[p], notRetriedWhy(res.Left[p]))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every quarantined or retrying path")
	return cmd
}

// trackedPaths makes paths absolute and clean, as the store keys them.
func trackedPaths(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		p, err := filepath.Abs(a)
		if err != nil {
			return nil, usageErrorf("path %q: %v", a, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// notRetriedWhy says why a path in state s was not moved back to pending.
func notRetriedWhy(s store.State) string {
	switch s {
	case store.StateUploaded:
		return "nothing to retry (already uploaded or linked)"
	case store.StatePending:
		return "already waiting for its upload"
	case store.StateSkipped:
		return "nothing to upload (empty)"
	case store.StateRemoved:
		return "gone from disk"
	case store.StateIncomplete:
		return "not whole when a backfill read it: the next run or backfill reads it again"
	}
	return "not retried"
}

func pluralize(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
