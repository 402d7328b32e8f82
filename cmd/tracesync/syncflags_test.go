package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "52428800", want: 52428800},
		{in: "50MiB", want: 50 << 20},
		{in: "50mib", want: 50 << 20},
		{in: "10MB", want: 10_000_000},
		{in: "512KiB", want: 512 << 10},
		{in: "1.5GiB", want: 3 << 29},
		{in: " 4k ", want: 4096},
		{in: "lots", bad: true},
		{in: "10XB", bad: true},
		{in: "", bad: true},
		{in: "-1", bad: true},
	} {
		got, err := parseByteSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseByteSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for n, want := range map[int64]string{50 << 20: "50MiB", 4096: "4KiB", 1 << 30: "1GiB", 1000: "1000"} {
		b := byteSize(n)
		if got := b.String(); got != want {
			t.Errorf("byteSize(%d).String() = %q, want %q", n, got, want)
		}
	}
}

// parseSyncFlags parses args and env into syncFlags the way the commands
// do: cobra flags, then applyEnv.
func parseSyncFlags(t *testing.T, args []string, env map[string]string) (*syncFlags, error) {
	t.Helper()
	var f syncFlags
	cmd := &cobra.Command{Use: "x"}
	addSyncFlags(cmd.Flags(), &f)
	if err := cmd.ParseFlags(args); err != nil {
		return nil, err
	}
	if _, _, err := applyEnv(cmd, func(k string) string { return env[k] }); err != nil {
		return nil, err
	}
	return &f, f.validate()
}

func TestSyncFlagsDefaults(t *testing.T) {
	f, err := parseSyncFlags(t, nil, nil)
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if f.workers.count() != 0 || f.maxWorkers != 256 || f.settle != time.Second || f.settleTimeout != 10*time.Minute || f.rescanInterval != 10*time.Minute ||
		f.maxDelete != 100 || int64(f.maxFileSize) != 50<<20 || f.shutdownTimeout != 30*time.Second || f.deleteOnRemove ||
		f.retention != 720*time.Hour {
		t.Fatalf("defaults: got %+v", *f)
	}
}

func TestSyncFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"TRACESYNC_WORKERS":          "8",
		"TRACESYNC_SETTLE":           "250ms",
		"TRACESYNC_DELETE_ON_REMOVE": "true",
		"TRACESYNC_MAX_FILE_SIZE":    "10MiB",
		"TRACESYNC_EXCLUDE":          "*.bak, archive/*",
		"TRACESYNC_RATE_LIMIT":       "20",
		"TRACESYNC_RETENTION":        "0",
	}
	f, err := parseSyncFlags(t, []string{"--workers", "2"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if f.workers.count() != 2 {
		t.Errorf("--workers 2 with TRACESYNC_WORKERS=8: got %s, want the flag to win", &f.workers)
	}
	if f.settle != 250*time.Millisecond || !f.deleteOnRemove || int64(f.maxFileSize) != 10<<20 || f.rateLimit != 20 || f.retention != 0 {
		t.Errorf("environment not applied: %+v", *f)
	}
	if strings.Join(f.exclude, "|") != "*.bak|archive/*" {
		t.Errorf("TRACESYNC_EXCLUDE: got %q, want [*.bak archive/*]", f.exclude)
	}
}

func TestSyncFlagsValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // part of the message that tells the fix
	}{
		{[]string{"--max-file-size", "51MiB"}, "--max-file-size 51MiB: use 1 byte to 50MiB"},
		{[]string{"--workers", "0"}, "--workers 0: use auto (the default) or 1 to 1024"},
		{[]string{"--workers", "2000"}, "--workers 2000: use auto (the default) or 1 to 1024"},
		{[]string{"--max-workers", "0"}, "--max-workers 0: use 1 to 1024"},
		{[]string{"--settle", "0s"}, "--settle 0s"},
		{[]string{"--settle", "5s", "--settle-timeout", "1s"}, "must be at least --settle"},
		{[]string{"--max-delete", "-1"}, "--max-delete -1"},
		{[]string{"--rate-limit", "-3"}, "--rate-limit -3"},
		{[]string{"--root-marker", "a/b"}, "give a file name"},
		{[]string{"--include", "[x"}, `glob "[x"`},
		{[]string{"--poll", "1ms"}, "--poll 1ms"},
		{[]string{"--retention", "30s"}, "--retention 30s: use 0 (keep every record) or at least 1h0m0s"},
		{[]string{"--retention", "-1h"}, "--retention -1h0m0s"},
	} {
		_, err := parseSyncFlags(t, tc.args, nil)
		if err == nil {
			t.Errorf("%v: validated, want a usage error", tc.args)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q does not say %q", tc.args, err, tc.want)
		}
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%v: error %v is not a usage error (exit 2)", tc.args, err)
		}
	}
}

func TestResolveDirs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	file := filepath.Join(a, "f.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	got, err := resolveDirs([]string{a, b, a}, env(nil))
	if err != nil || len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("args [a b a]: got %v, %v; want [a b]", got, err)
	}
	got, err = resolveDirs(nil, env(map[string]string{"TRACESYNC_DIRS": a + ", " + b}))
	if err != nil || len(got) != 2 {
		t.Fatalf("TRACESYNC_DIRS: got %v, %v; want both folders", got, err)
	}
	for name, args := range map[string][]string{
		"none":    nil,
		"missing": {filepath.Join(a, "nope")},
		"file":    {file},
		"nested":  {a, filepath.Join(a, "sub")},
	} {
		if name == "nested" {
			if err := os.Mkdir(filepath.Join(a, "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		_, err := resolveDirs(args, env(nil))
		var ee *exitError
		if err == nil || !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%s %v: got %v, want a usage error", name, args, err)
		}
	}
}

// TestCommandsHaveTheirFlags checks that each syncing command defines the
// flags it uses, from one definition: every command the common set, the
// commands that keep watching the daemon set, and backfill's help shows no
// daemon flag.
func TestCommandsHaveTheirFlags(t *testing.T) {
	var ref syncFlags
	common := pflag.NewFlagSet("common", pflag.ContinueOnError)
	addCommonFlags(common, &ref)
	daemon := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	addDaemonFlags(daemon, &ref)
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	root := newRootCmd(g)
	for _, c := range []struct {
		name   string
		daemon bool
	}{{"run", true}, {"demo", true}, {"check-config", true}, {"backfill", false}} {
		cmd, _, err := root.Find([]string{c.name})
		if err != nil || cmd.Name() != c.name {
			t.Fatalf("find %s: %v", c.name, err)
		}
		common.VisitAll(func(f *pflag.Flag) {
			got := cmd.Flags().Lookup(f.Name)
			if got == nil {
				t.Errorf("%s lacks --%s", c.name, f.Name)
			} else if got.DefValue != f.DefValue {
				t.Errorf("%s --%s default %q, want %q", c.name, f.Name, got.DefValue, f.DefValue)
			}
		})
		daemon.VisitAll(func(f *pflag.Flag) {
			got := cmd.Flags().Lookup(f.Name)
			switch {
			case c.daemon && got == nil:
				t.Errorf("%s lacks the daemon flag --%s", c.name, f.Name)
			case !c.daemon && got != nil && !got.Hidden:
				t.Errorf("%s --help shows the daemon flag --%s, which it does not use", c.name, f.Name)
			}
		})
	}
}

// Every flag's help names the variable it is read from, and the ranges
// validate enforces are in the help of the flags that have one.
func TestFlagHelpNamesVariableAndRange(t *testing.T) {
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	root := newRootCmd(g)
	for _, name := range []string{"run", "backfill"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || commandLineOnly[f.Name] {
				return
			}
			if !strings.Contains(f.Usage, envName(f.Name)) {
				t.Errorf("%s --%s help does not name %s: %q", name, f.Name, envName(f.Name), f.Usage)
			}
		})
	}
	run, _, _ := root.Find([]string{"run"})
	for flag, want := range map[string]string{
		"workers":          "auto",
		"max-workers":      "1 to 1024",
		"settle":           "more than 0",
		"rescan-interval":  "at least 1s",
		"poll":             "at least 10ms",
		"probe-interval":   "at least 100ms",
		"max-file-size":    "1 byte to 50MiB",
		"retention":        "at least 1h",
		"max-delete":       "0 or more",
		"shutdown-timeout": "0 or more",
	} {
		if u := run.Flags().Lookup(flag).Usage; !strings.Contains(u, want) {
			t.Errorf("run --%s help does not give its range %q: %q", flag, want, u)
		}
	}
}
