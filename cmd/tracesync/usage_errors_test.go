package main

import (
	"context"
	"strings"
	"testing"
)

// Every mistake on the command line exits 2 with what was wrong; a group
// of commands run alone shows its help and exits 0. cobra returns these
// errors untyped: they are typed where cobra makes them, never read from
// their text.
func TestCommandLineMistakesExit2(t *testing.T) {
	env := map[string]string{"HOME": t.TempDir()}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "tracesync"`},
		{[]string{"stat"}, "did you mean state or state-dir or status?"},
		{[]string{"run", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"run", "--workers", "x"}, `invalid value "x" for --workers: want auto or a whole number (e.g. 16)`},
		{[]string{"backfill", "--worker", "3"}, "unknown flag: --worker; did you mean --workers?"},
		{[]string{"run", "--settle-timout", "1m"}, "did you mean --settle-timeout?"},
		{[]string{"traces", "get"}, "accepts 1 arg(s), received 0"},
		{[]string{"forget"}, "requires at least 1 arg(s)"},
		{[]string{"status", "extra"}, `unknown command "extra" for "tracesync status"`},
		{[]string{"status", "--json=maybe"}, `invalid value "maybe" for --json: want true or false`},
	} {
		code, _, stderr := mainIn(t, context.Background(), env, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("tracesync %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(c.args, " "), code, stderr, exitUsage, c.want)
		}
	}
	for _, args := range [][]string{nil, {"traces"}} {
		code, stdout, stderr := mainIn(t, context.Background(), env, args...)
		if code != exitOK || !strings.Contains(stdout, "Usage:") || stderr != "" {
			t.Errorf("tracesync %s: exit %d, stderr %q; want its help and exit 0", strings.Join(args, " "), code, stderr)
		}
	}
}

// A value from the environment that does not parse names the variable and
// the form wanted, not only the parser's words.
func TestEnvValueErrorNamesVariableAndForm(t *testing.T) {
	for name, want := range map[string]string{
		"TRACESYNC_WORKERS": "TRACESYNC_WORKERS=\"abc\" is not valid for --workers: want auto or a whole number (e.g. 16); fix or unset TRACESYNC_WORKERS",
		"TRACESYNC_SETTLE":  "TRACESYNC_SETTLE=\"abc\" is not valid for --settle: want a duration with a unit",
	} {
		env := map[string]string{"HOME": t.TempDir(), name: "abc"}
		code, _, stderr := mainIn(t, context.Background(), env, "backfill", t.TempDir())
		if code != exitUsage || !strings.Contains(stderr, want) {
			t.Errorf("%s=abc: exit %d, stderr %q; want exit %d saying %q", name, code, stderr, exitUsage, want)
		}
	}
}
