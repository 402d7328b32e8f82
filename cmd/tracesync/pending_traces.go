package main

import "github.com/spf13/cobra"

// This file holds commands not built yet; its owner deletes it when they land.

func newTracesCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "traces", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("traces: not built yet") }}
}
