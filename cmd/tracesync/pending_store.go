package main

import "github.com/spf13/cobra"

// This file holds commands not built yet; its owner deletes it when they land.

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "status", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("status: not built yet") }}
}

func newFilesCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "files", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("files: not built yet") }}
}

func newRetryCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "retry", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("retry: not built yet") }}
}

func newForgetCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "forget", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("forget: not built yet") }}
}

func newStateCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "state", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("state: not built yet") }}
}
