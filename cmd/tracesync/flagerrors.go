package main

// flagerrors.go owns what a mistyped flag or flag value says: the closest
// flags to an unknown one, and the form a value should have.

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError turns cobra's flag parsing error into a usage error that says
// what to do: the closest flags to an unknown one, the expected form of a
// value that does not parse.
func flagError(cmd *cobra.Command, err error) error {
	var notExist *pflag.NotExistError
	var invalid *pflag.InvalidValueError
	switch {
	case errors.As(err, &notExist) && notExist.GetSpecifiedShortnames() == "":
		msg := err.Error()
		if s := flagSuggestions(cmd.Flags(), notExist.GetSpecifiedName()); len(s) > 0 {
			msg += "; did you mean --" + strings.Join(s, " or --") + "?"
		}
		return usageErrorf("%s (see %s --help)", msg, cmd.CommandPath())
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		if form := expectedForm(f); form != "" {
			return usageErrorf("invalid value %q for --%s: want %s", invalid.GetValue(), f.Name, form)
		}
	}
	return asUsage(err)
}

// flagSuggestions are the visible flags of fs within a small edit distance
// of name, or that it is a prefix of, closest first (as cobra suggests
// commands).
func flagSuggestions(fs *pflag.FlagSet, name string) []string {
	type cand struct {
		name string
		dist int
	}
	var cands []cand
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := levenshtein(strings.ToLower(name), strings.ToLower(f.Name))
		if d <= 2 || (len(name) >= 3 && strings.HasPrefix(f.Name, name)) {
			cands = append(cands, cand{f.Name, d})
		}
	})
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].dist != cands[j].dist {
			return cands[i].dist < cands[j].dist
		}
		return cands[i].name < cands[j].name
	})
	out := make([]string, 0, 3)
	for _, c := range cands {
		if len(out) == 3 {
			break
		}
		out = append(out, c.name)
	}
	return out
}

// levenshtein is the edit distance between a and b (bytes: flag names
// are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// expectedForm says what a value of f looks like, for an error about a
// value that does not parse; "" when the flag's own error says it.
func expectedForm(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "int", "int64", "uint", "uint64":
		return "a whole number (e.g. 8)"
	case "float64":
		return "a number (e.g. 2.5)"
	case "duration":
		return "a duration with a unit (e.g. 500ms, 30s, 5m, 1h)"
	case "bool":
		return "true or false"
	case workersType:
		return "auto or a whole number (e.g. 16)"
	case shardType:
		return "K/N with K from 0 to N-1 (e.g. 0/4 on the first of four hosts)"
	}
	return ""
}

// envValueError explains a value from the environment variable name that
// does not parse for f: the variable, the form wanted, and the way out.
func envValueError(name, value string, f *pflag.Flag, err error) error {
	if form := expectedForm(f); form != "" {
		return fmt.Errorf("environment variable %s=%q is not valid for --%s: want %s; fix or unset %s", name, value, f.Name, form, name)
	}
	return fmt.Errorf("environment variable %s=%q is not valid for --%s: %w; fix or unset %s", name, value, f.Name, err, name)
}
