package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/internal/logging"
)

// demoFS holds the sample traces the demo drops in: the project's own,
// small and realistic, in the shape agents write.
//
//go:embed demodata/*.json demodata/*.jsonl
var demoFS embed.FS

// Demo defaults: the embedded API's key and preferred address. A fixed port
// keeps the target (and so the demo's state) the same across runs.
const (
	demoAPIKey  = "demo-key"
	demoAPIAddr = "127.0.0.1:8780"
)

func newDemoCmd(g *globals) *cobra.Command {
	var f syncFlags
	var dir, apiAddr string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Try tracesync on your machine: a local API, a drop folder and sample traces",
		Long: `demo shows tracesync end to end with nothing to set up. When no API key is
configured it starts an embedded Stratix-compatible API on 127.0.0.1 (its
traces kept under DIR/api), creates the drop folder DIR/drop, copies a few
sample traces into it, and runs the daemon on it with console logs. It
prints the API's base URL and the command that lists the uploaded traces.
Drop more .json or .jsonl files into DIR/drop and watch them upload.

With an API key configured (LAYERLENS_STRATIX_API_KEY or --api-key-file) the
demo uploads the sample traces to that real API instead, and says so.

It runs until Ctrl-C, or for --duration.`,
		Example: `  go run ./cmd/tracesync demo
  tracesync demo --dir /tmp/tracesync-demo --duration 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			if duration < 0 {
				return usageErrorf("--duration %s: use 0 (until Ctrl-C) or a positive duration", duration)
			}
			logFormatGiven := cmd.Flag("log-format").Changed
			return runDemo(cmd.Context(), g, &f, dir, apiAddr, duration, logFormatGiven)
		},
	}
	addSyncFlags(cmd.Flags(), &f)
	cmd.Flags().StringVar(&dir, "dir", "./tracesync-demo", "demo folder: the drop folder is DIR/drop, the embedded API's data DIR/api, the state DIR/state")
	cmd.Flags().StringVar(&apiAddr, "api-addr", demoAPIAddr, "address of the embedded API (a free port is used if this one is taken)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long, as Ctrl-C would (0: run until Ctrl-C)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, f *syncFlags, dir, apiAddr string, duration time.Duration, logFormatGiven bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return usageErrorf("--dir %q: %v", dir, err)
	}
	drop := filepath.Join(dir, "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		return fmt.Errorf("create the drop folder: %w (pass --dir to use another place)", err)
	}
	if !logFormatGiven {
		log, err := logging.NewWithOptions(g.stderr, g.logLevel, "console", logging.Options{Roots: g.logRoots})
		if err != nil {
			return asUsage(err)
		}
		g.log = log
	}

	_, keySource, keyErr := g.apiKey()
	embedded := keyErr != nil && !keyConfigured(g)
	if keyErr != nil && !embedded {
		return keyErr // a key file is configured but unreadable: say so rather than demo on the side
	}
	out := g.stdout
	if embedded {
		srv, err := listenDemoAPI(apiAddr, filepath.Join(dir, "api"))
		if err != nil {
			return err
		}
		defer srv.Close()
		getenv := g.getenv
		g.getenv = func(k string) string {
			if k == "LAYERLENS_STRATIX_API_KEY" {
				return demoAPIKey
			}
			return getenv(k)
		}
		g.baseURL = srv.URL()
		if g.stateDir == "" {
			g.stateDir = filepath.Join(dir, "state")
		}
		fmt.Fprintf(out, "tracesync demo: no API key configured, so an embedded Stratix-compatible API runs at\n  %s\n", srv.URL())
	} else {
		if g.stateDir == "" {
			g.stateDir = filepath.Join(dir, "state")
		}
		fmt.Fprintf(out, "tracesync demo: an API key is configured (%s): uploading the sample traces to the REAL API at\n  %s\n", keySource, g.resolvedBaseURL())
	}

	copied, err := copyDemoTraces(drop)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "drop folder: %s (%d sample traces copied in; drop your own .json/.jsonl files there too)\n", drop, copied)
	if embedded {
		fmt.Fprintf(out, "list the uploaded traces (from another terminal, while the demo runs):\n  LAYERLENS_STRATIX_API_KEY=%s tracesync traces list --base-url %s\n", demoAPIKey, g.baseURL)
		fmt.Fprintf(out, "  (from a checkout: LAYERLENS_STRATIX_API_KEY=%s go run ./cmd/tracesync traces list --base-url %s)\n", demoAPIKey, g.baseURL)
	} else {
		fmt.Fprintf(out, "list the uploaded traces:\n  tracesync traces list\n")
	}
	fmt.Fprintf(out, "status: tracesync status --state-dir %s\n", g.stateDir)
	if duration > 0 {
		fmt.Fprintf(out, "running for %s...\n", duration)
	} else {
		fmt.Fprintln(out, "running until Ctrl-C...")
	}

	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	dirs := []string{drop}
	if err := runDaemon(ctx, g, f, dirs); err != nil {
		return err
	}
	fmt.Fprintln(out, "demo stopped; run it again to continue where it left off")
	return nil
}

// keyConfigured reports whether the user pointed tracesync at a key at
// all (an environment variable, --api-key-file or a systemd credential).
func keyConfigured(g *globals) bool {
	for _, k := range []string{"LAYERLENS_STRATIX_API_KEY", "LAYERLENS_ATLAS_API_KEY", "CREDENTIALS_DIRECTORY"} {
		if g.getenv(k) != "" {
			return true
		}
	}
	return g.apiKeyFile != ""
}

// listenDemoAPI starts the embedded API on addr, or on a free port when
// addr is taken.
func listenDemoAPI(addr, dataDir string) (*stratixtest.Server, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the demo API's data folder: %w", err)
	}
	opts := stratixtest.Options{APIKey: demoAPIKey, DataDir: dataDir, OrgID: "org-demo", OrgName: "tracesync demo", ProjectID: "proj-demo"}
	srv, err := stratixtest.Listen(addr, opts)
	if err != nil {
		srv, err = stratixtest.Listen("127.0.0.1:0", opts)
	}
	if err != nil {
		return nil, fmt.Errorf("start the embedded API: %w", err)
	}
	return srv, nil
}

// copyDemoTraces writes the embedded sample traces into drop, each under a
// temporary name renamed into place (as producers should). Files already
// there are left alone. It returns how many it wrote.
func copyDemoTraces(drop string) (int, error) {
	entries, err := fs.ReadDir(demoFS, "demodata")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		dst := filepath.Join(drop, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		data, err := demoFS.ReadFile("demodata/" + e.Name())
		if err != nil {
			return n, err
		}
		tmp := filepath.Join(drop, "."+e.Name()+".tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return n, fmt.Errorf("copy a sample trace into %s: %w", drop, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return n, fmt.Errorf("copy a sample trace into %s: %w", drop, err)
		}
		n++
	}
	return n, nil
}
