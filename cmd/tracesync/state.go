package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
)

func newStateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Maintain the state file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf("state: give a subcommand: compact")
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "compact",
		Short: "Rewrite the state file offline to reclaim space; reports sizes before and after",
		Long: `compact rewrites the state file (bbolt's compact) into a new file that
atomically replaces it, and prints its size before and after: first the
space it takes on disk (allocated blocks, what df and du count), then its
apparent size (what ls -l shows; bbolt reserves 16 MiB up front in a sparse
file, so the apparent size of a new state file overstates it). It works offline:
while a daemon (or any tracesync) holds the state, it refuses and changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.resolveStateDir()
			if err != nil {
				return err
			}
			if h, err := control.Dial(control.SocketPath(dir)); err == nil {
				pid := ""
				if st, err := h.Status(cmd.Context()); err == nil && st.DaemonPID > 0 {
					pid = fmt.Sprintf(" (pid %d)", st.DaemonPID)
				}
				return fmt.Errorf("a tracesync daemon%s is running on %s: stop it before compacting (compact rewrites the file offline)", pid, dir)
			} else if !errors.Is(err, control.ErrNoDaemon) {
				return err
			}
			file := filepath.Join(dir, store.FileName)
			diskBefore, diskErr := store.Allocated(file)
			before, after, err := store.Compact(dir)
			if err != nil {
				return explainStateError(err, dir)
			}
			diskAfter, err := store.Allocated(file)
			if err == nil {
				err = diskErr
			}
			if err != nil {
				return fmt.Errorf("compacted %s, but cannot read its size on disk: %w", file, err)
			}
			fmt.Fprintf(g.stdout, "compacted %s: %s -> %s on disk (allocated blocks); apparent size %s -> %s\n",
				file, compactSize(diskBefore), compactSize(diskAfter), compactSize(before), compactSize(after))
			return nil
		},
	})
	return cmd
}

// compactSize formats a size in bytes for people: 1.5 MiB.
func compactSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
