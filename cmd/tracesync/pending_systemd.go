package main

import "github.com/spf13/cobra"

// This file holds commands not built yet; its owner deletes it when they land.

func newCheckConfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "check-config", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("check-config: not built yet") }}
}
