package main

import "github.com/spf13/cobra"

// This file holds commands not built yet; its owner deletes it when they land.

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "run", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("run: not built yet") }}
}

func newBackfillCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "backfill", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("backfill: not built yet") }}
}

func newDemoCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "demo", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("demo: not built yet") }}
}

func newReconcileCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "reconcile", Hidden: true, RunE: func(*cobra.Command, []string) error { return usageErrorf("reconcile: not built yet") }}
}
