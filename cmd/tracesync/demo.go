package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/internal/logging"
	"github.com/tracesync/tracesync/store"
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
	var real bool
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Try tracesync on your machine: a local API, a drop folder and sample traces",
		Long: `demo shows tracesync end to end with nothing to set up. It starts an embedded Stratix-compatible API on 127.0.0.1 (its
traces kept under DIR/api), creates the drop folder DIR/drop, copies a few
sample traces into it, and runs the daemon on it with console logs. It
prints the API's base URL and the command that lists the uploaded traces.
Drop more .json or .jsonl files into DIR/drop and watch them upload.

An API key in the environment is not used: the demo uploads to the real
API only with --real (which needs LAYERLENS_STRATIX_API_KEY or
--api-key-file), and says so.

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
			return runDemo(cmd.Context(), g, &f, demoOptions{dir: dir, apiAddr: apiAddr, duration: duration, real: real,
				logFormatGiven: logFormatGiven, self: selfCommand(os.Executable, exec.LookPath)})
		},
	}
	addSyncFlags(cmd.Flags(), &f)
	cmd.Flags().StringVar(&dir, "dir", "./tracesync-demo", "demo folder: the drop folder is DIR/drop, the embedded API's data DIR/api, the state DIR/state")
	cmd.Flags().StringVar(&apiAddr, "api-addr", demoAPIAddr, "address of the embedded API (a free port is used if this one is taken)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long, as Ctrl-C would (0: run until Ctrl-C)")
	cmd.Flags().BoolVar(&real, "real", false, "upload the sample traces to the real API (needs LAYERLENS_STRATIX_API_KEY or --api-key-file) instead of the embedded one")
	return cmd
}

// demoOptions are the demo's own flags, and how to call this binary.
type demoOptions struct {
	dir, apiAddr   string
	duration       time.Duration
	real           bool   // --real: the configured API, not the embedded one
	logFormatGiven bool   // --log-format was given: keep it
	self           string // the command that runs this binary again (selfCommand)
}

func runDemo(ctx context.Context, g *globals, f *syncFlags, o demoOptions) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return usageErrorf("--dir %q: %v", o.dir, err)
	}
	var keySource string
	if o.real {
		if _, keySource, err = g.apiKey(); err != nil {
			return usageErrorf("--real uploads the sample traces to the real API at %s, which needs an API key: set LAYERLENS_STRATIX_API_KEY or pass --api-key-file (or leave out --real for the embedded API): %w", g.resolvedBaseURL(), err)
		}
	}
	if g.stateDir == "" {
		g.stateDir = filepath.Join(dir, "state")
	}
	// A demo already running here holds the state: say so before the banner.
	if err := checkStateFree(g); err != nil {
		return fmt.Errorf("%w: is a demo already running in %s? stop it, or pass --dir to run another demo in another folder", err, dir)
	}
	drop := filepath.Join(dir, "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		return fmt.Errorf("create the drop folder: %w (pass --dir to use another place)", err)
	}
	if !o.logFormatGiven {
		log, err := logging.NewWithOptions(g.stderr, g.logLevel, "console", logging.Options{Roots: g.logRoots})
		if err != nil {
			return asUsage(err)
		}
		g.log = log
	}

	out := g.stdout
	if o.real {
		fmt.Fprintf(out, "tracesync demo --real: uploading the sample traces to the REAL API at\n  %s (key from %s)\n", g.resolvedBaseURL(), keySource)
	} else {
		srv, err := listenDemoAPI(o.apiAddr, filepath.Join(dir, "api"))
		if err != nil {
			return err
		}
		defer srv.Close()
		getenv := g.getenv
		g.getenv = func(k string) string {
			switch k {
			case "LAYERLENS_STRATIX_API_KEY":
				return demoAPIKey
			case "LAYERLENS_ATLAS_API_KEY":
				return "" // the embedded API's key wins over any configured one
			}
			return getenv(k)
		}
		g.baseURL = srv.URL()
		fmt.Fprintf(out, "tracesync demo: an embedded Stratix-compatible API runs at\n  %s\n", srv.URL())
		if keyConfigured(getenv, g.apiKeyFile) {
			fmt.Fprintln(out, "  (the configured API key is not used: pass --real to upload to the real API)")
		}
	}

	copied, err := copyDemoTraces(drop)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "drop folder: %s (%s copied in; drop your own .json/.jsonl files there too)\n", drop, countOf(copied, "sample trace", "sample traces"))
	if o.real {
		fmt.Fprintf(out, "list the uploaded traces:\n  %s traces list\n", o.self)
	} else {
		fmt.Fprintf(out, "list the uploaded traces (from another terminal, while the demo runs):\n  LAYERLENS_STRATIX_API_KEY=%s %s traces list --base-url %s\n", demoAPIKey, o.self, g.baseURL)
	}
	fmt.Fprintf(out, "status: %s status --state-dir %s\n", o.self, g.stateDir)
	if o.duration > 0 {
		fmt.Fprintf(out, "running for %s...\n", o.duration)
	} else {
		fmt.Fprintln(out, "running until Ctrl-C...")
	}

	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	dirs := []string{drop}
	if err := runDaemon(ctx, g, f, dirs, false); err != nil {
		return err
	}
	fmt.Fprintln(out, "demo stopped; run it again to continue where it left off")
	return nil
}

// checkStateFree opens and closes the state, so a state held by another
// process is reported before anything is printed or started.
func checkStateFree(g *globals) error {
	dir, err := g.resolveStateDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return explainStateError(fmt.Errorf("create the state directory: %w", err), dir)
	}
	db, err := store.Open(dir, store.Options{Log: g.log})
	if err != nil {
		return explainStateError(err, dir)
	}
	return db.Close()
}

// selfCommand is how the user runs this binary again: "go run
// ./cmd/tracesync" when go run built it (its executable lies in a go-build
// work directory), "tracesync" when that name on PATH is this binary, else
// the executable's path.
func selfCommand(executable func() (string, error), lookPath func(string) (string, error)) string {
	exe, err := executable()
	if err != nil {
		return "tracesync"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/tracesync"
	}
	if onPath, err := lookPath("tracesync"); err == nil {
		if filepath.Clean(onPath) == filepath.Clean(exe) {
			return "tracesync"
		}
		if a, err1 := filepath.EvalSymlinks(onPath); err1 == nil {
			if b, err2 := filepath.EvalSymlinks(exe); err2 == nil && a == b {
				return "tracesync"
			}
		}
	}
	return exe
}

// keyConfigured reports whether the user pointed tracesync at a key at
// all (an environment variable, --api-key-file or a systemd credential).
func keyConfigured(getenv func(string) string, apiKeyFile string) bool {
	for _, k := range []string{"LAYERLENS_STRATIX_API_KEY", "LAYERLENS_ATLAS_API_KEY", "CREDENTIALS_DIRECTORY"} {
		if getenv(k) != "" {
			return true
		}
	}
	return apiKeyFile != ""
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
