package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tracesync/tracesync/internal/logging"
	"github.com/tracesync/tracesync/internal/profiling"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes, decided here and nowhere else (design.md, "Operating it"),
// the same for every command:
//
//	0  success
//	1  runtime failure: the API unreachable or failing, the state file held
//	   by another process, a full or failing disk, a backfill file that
//	   failed for good, an interruption
//	2  usage or configuration error: flags, arguments, environment, the API
//	   key missing or rejected, a base URL with no API behind it, no such
//	   project, a state directory the user may not write or that holds no
//	   (or a newer) tracesync state
//
// A configuration error is one only a person can fix: systemd does not
// restart a unit that exits 2 (RestartPreventExitStatus in the unit).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitCodeOf is the table above applied to the error a command returned.
func exitCodeOf(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errKeyRejected):
		// Untyped where it is made: the daemon keeps trying a rejected key
		// (a key rotated a moment late); a command that gives up exits 2.
		return exitUsage
	}
	return exitFailure
}

// exitError carries an exit code up to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage or configuration error: exit code 2.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// asUsage marks err as a usage or configuration error: exit code 2.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUsage, err: err}
}

// failed is a runtime outcome that is not an error message of its own
// (e.g. a backfill that quarantined files): exit code 1, message already shown.
var errSilentFailure = errors.New("failed")

// globals are the flags and environment every command shares. One value per
// invocation; no package-level state.
type globals struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	baseURL        string
	apiKeyFile     string
	organizationID string
	projectID      string
	projectName    string
	stateDir       string
	logLevel       string
	logFormat      string
	cpuProfile     string
	memProfile     string
	stopProfile    func() error

	log      zerolog.Logger // built in PersistentPreRunE
	logRoots *logging.Roots // the watched folders console lines shorten paths against, set once known

	// fromEnv names the flags applyEnv set from the environment, with the
	// variable each came from.
	fromEnv map[string]string
}

// Main runs the tracesync command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, log: zerolog.Nop(), logRoots: &logging.Roots{}}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if g.stopProfile != nil {
		if perr := g.stopProfile(); perr != nil {
			fmt.Fprintf(stderr, "tracesync: %v\n", perr)
		}
	}
	if err == nil {
		return exitOK
	}
	code := exitCodeOf(err)
	if !errors.Is(err, errSilentFailure) {
		fmt.Fprintf(stderr, "tracesync: %v\n", err)
	}
	return code
}

// usageErrorsTyped makes cobra's own errors about flags, arguments and
// unknown commands usage errors (exit 2) where cobra makes them, for every
// command under c: cobra returns them as plain errors.
func usageErrorsTyped(c *cobra.Command) {
	c.SetFlagErrorFunc(flagError)
	switch args := c.Args; {
	case args != nil:
		c.Args = func(cmd *cobra.Command, a []string) error { return asUsage(args(cmd, a)) }
	case c.HasSubCommands() && !c.Runnable():
		// cobra's own check (legacyArgs) would name an unknown command
		// in a plain error; a group of commands run alone shows its help.
		c.Args = func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", a[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageErrorf("%s (see %s --help)", msg, cmd.CommandPath())
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		usageErrorsTyped(sub)
	}
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "tracesync",
		Short: "Keep folders of trace files in sync with the Stratix traces API",
		Long: `tracesync watches folders of *.json and *.jsonl trace files and uploads each
new file exactly once to the Stratix traces API (LayerLens), remembering in a
local store which traces it became. It runs as a daemon (run), as a one-shot
backfill (backfill), or as a self-contained demo on an embedded local API (demo).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv, ignored, err := applyEnv(cmd, g.getenv)
			if err != nil {
				return asUsage(err)
			}
			g.fromEnv = fromEnv
			log, err := logging.NewWithOptions(g.stderr, g.logLevel, g.logFormat, logging.Options{Roots: g.logRoots})
			if err != nil {
				return asUsage(err)
			}
			g.log = log
			if g.memProfile == "" {
				profiling.StopHeapSampling()
			}
			if g.cpuProfile != "" || g.memProfile != "" {
				if g.stopProfile, err = profiling.Start(cmd.Context(), g.cpuProfile, g.memProfile); err != nil {
					return asUsage(err)
				}
			}
			for _, name := range ignored {
				flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "TRACESYNC_"), "_", "-"))
				log.Warn().Str("variable", name).Msgf("%s is ignored: --%s is read only from the command line", name, flag)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.baseURL, "base-url", "", "Stratix API base URL (env LAYERLENS_STRATIX_BASE_URL; default "+defaultBaseURLHelp+")")
	pf.StringVar(&g.apiKeyFile, "api-key-file", "", "file holding the API key (env TRACESYNC_API_KEY_FILE; under systemd $CREDENTIALS_DIRECTORY/api-key); the key itself is read only from LAYERLENS_STRATIX_API_KEY or a file, never a flag")
	pf.StringVar(&g.organizationID, "organization-id", "", "organization to use (default: the one the API key belongs to)")
	pf.StringVar(&g.projectID, "project-id", "", "project to use (default: the organization's first project)")
	pf.StringVar(&g.projectName, "project", "", "project to use, by name (ignored when --project-id is set)")
	pf.StringVar(&g.stateDir, "state-dir", "", "state directory (env TRACESYNC_STATE_DIR; default $STATE_DIRECTORY, else $XDG_STATE_HOME/tracesync, else ~/.local/state/tracesync)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "auto", "log format: auto (console on a terminal, JSON otherwise), json, console")
	pf.StringVar(&g.cpuProfile, "cpuprofile", "", "write a Go CPU profile to this file (for developers)")
	pf.StringVar(&g.memProfile, "memprofile", "", "write a Go heap profile to this file when asked to stop (SIGTERM, Ctrl-C), else at exit (for developers)")
	_ = pf.MarkHidden("cpuprofile")
	_ = pf.MarkHidden("memprofile")

	root.AddCommand(
		newVersionCmd(g),
		newTracesCmd(g),
		newStatusCmd(g),
		newFilesCmd(g),
		newRetryCmd(g),
		newForgetCmd(g),
		newStateCmd(g),
		newStateDirCmd(g),
		newRunCmd(g),
		newBackfillCmd(g),
		newDemoCmd(g),
		newReconcileCmd(g),
		newVerifyCmd(g),
		newCheckConfigCmd(g),
	)
	usageErrorsTyped(root)
	helpNamesEnv(root)
	return root
}

const defaultBaseURLHelp = "https://api.layerlens.ai/api/v1"

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(g.stdout, "tracesync %s\n", version)
			return err
		},
	}
}

// envAliases are the environment variables a flag is read from besides
// TRACESYNC_<FLAG>, first match wins.
var envAliases = map[string][]string{
	"base-url": {"LAYERLENS_STRATIX_BASE_URL", "LAYERLENS_ATLAS_BASE_URL"},
}

// commandLineOnly are the flags never read from the environment: one-shot
// switches that confirm a deletion or an action on every path, or change
// what a command prints. Left set in a shell or an env file they would act
// silently on every later invocation (TRACESYNC_CONFIRM=1 would confirm
// every reconcile). Settings that describe the service (e.g.
// --delete-on-remove) stay readable from the environment.
var commandLineOnly = map[string]bool{
	"help":    true,
	"confirm": true, // reconcile: marks files removed, deletes traces with --delete-on-remove
	"dry-run": true, // backfill: a dry run instead of the real one
	"all":     true, // retry --all (every quarantined path), traces list --all
	"json":    true, // output form of status, files and traces
}

// envName is the TRACESYNC_<FLAG> variable of a flag.
func envName(flag string) string {
	return "TRACESYNC_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag the user did not give from the environment:
// TRACESYNC_<FLAG> (upper case, dashes as underscores), plus envAliases,
// except the commandLineOnly flags. It returns the flags it set, by name,
// with the variable each came from, and the commandLineOnly variables that
// are set (and ignored), so the caller can warn.
func applyEnv(cmd *cobra.Command, getenv func(string) string) (fromEnv map[string]string, ignored []string, err error) {
	var errs []error
	fromEnv = map[string]string{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if commandLineOnly[f.Name] {
			if name := envName(f.Name); f.Name != "help" && getenv(name) != "" {
				ignored = append(ignored, name)
			}
			return
		}
		if f.Changed {
			return
		}
		names := append([]string{envName(f.Name)}, envAliases[f.Name]...)
		for _, name := range names {
			v := getenv(name)
			if v == "" {
				continue
			}
			fromEnv[f.Name] = name
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				if err := sv.Replace(splitList(v)); err != nil {
					errs = append(errs, envValueError(name, v, f, err))
				}
			} else if err := f.Value.Set(v); err != nil {
				errs = append(errs, envValueError(name, v, f, err))
			}
			f.Changed = true
			return
		}
	})
	return fromEnv, ignored, errors.Join(errs...)
}

// splitList splits a list given in one environment variable, by commas.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// apiKey returns the API key and where it came from (for messages; never the
// key itself). Order: LAYERLENS_STRATIX_API_KEY (or LAYERLENS_ATLAS_API_KEY),
// --api-key-file / TRACESYNC_API_KEY_FILE, $CREDENTIALS_DIRECTORY/api-key.
func (g *globals) apiKey() (key, source string, err error) {
	for _, name := range []string{"LAYERLENS_STRATIX_API_KEY", "LAYERLENS_ATLAS_API_KEY"} {
		if v := strings.TrimSpace(g.getenv(name)); v != "" {
			return v, "environment variable " + name, nil
		}
	}
	file := g.apiKeyFile
	if file == "" {
		if dir := g.getenv("CREDENTIALS_DIRECTORY"); dir != "" {
			file = filepath.Join(dir, "api-key")
		}
	}
	if file == "" {
		return "", "", asUsage(errors.New("no API key: set LAYERLENS_STRATIX_API_KEY, or put the key in a file and pass --api-key-file FILE (under systemd: LoadCredential=api-key:/etc/tracesync/api-key)"))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", asUsage(fmt.Errorf("read API key file: %w (pass --api-key-file or set LAYERLENS_STRATIX_API_KEY)", err))
	}
	key = strings.TrimSpace(string(b))
	if key == "" {
		return "", "", asUsage(fmt.Errorf("API key file %s is empty: put the key in it", file))
	}
	return key, "file " + file, nil
}

// resolvedBaseURL is --base-url (or its environment) else the default.
func (g *globals) resolvedBaseURL() string {
	if g.baseURL != "" {
		return g.baseURL
	}
	return defaultBaseURLHelp
}

// resolveStateDir returns the state directory: --state-dir or
// TRACESYNC_STATE_DIR, else $STATE_DIRECTORY (systemd; the first of a
// colon-separated list), else $XDG_STATE_HOME/tracesync, else
// ~/.local/state/tracesync.
func (g *globals) resolveStateDir() (string, error) {
	if g.stateDir != "" {
		return filepath.Abs(g.stateDir)
	}
	if v := g.getenv("STATE_DIRECTORY"); v != "" {
		return strings.Split(v, ":")[0], nil
	}
	if v := g.getenv("XDG_STATE_HOME"); v != "" {
		return filepath.Join(v, "tracesync"), nil
	}
	home := g.getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", asUsage(errors.New("cannot find a state directory: pass --state-dir or set TRACESYNC_STATE_DIR"))
		}
		home = h
	}
	return filepath.Join(home, ".local", "state", "tracesync"), nil
}
