package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newForgetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forget PATH...",
		Short: "Drop what the state knows of paths, so the next scan uploads them again",
		Long: `forget drops the records of the given paths and, where no other path
references the same content, the content's record too, so the next scan hashes
and uploads them again. The traces they were uploaded as are NOT deleted
remotely.

It needs no API key. While a daemon runs, it asks the daemon.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths, err := trackedPaths(args)
			if err != nil {
				return err
			}
			h, _, closeFn, err := stateHandler(g, false)
			if errors.Is(err, errNoState) {
				return fmt.Errorf("not tracked: %v (%w)", args, err)
			}
			if err != nil {
				return err
			}
			defer closeFn()
			n, err := h.Forget(cmd.Context(), paths)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "forgot %d %s (their old traces are not deleted remotely)\n", n, pluralize(n, "path", "paths"))
			return nil
		},
	}
}
