package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tracesync/tracesync/watcher"
)

// The --exclude help and the README name exactly the patterns the watcher
// always ignores, and the watcher does ignore a name of each.
func TestExcludeHelpListsTheAlwaysIgnoredNames(t *testing.T) {
	want := []string{".*", "*.tmp", "*.part", "*.swp", "*~", "#*#"}
	var f syncFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	addSyncFlags(fs, &f)
	usage := fs.Lookup("exclude").Usage
	m := regexp.MustCompile(`always skipped \(([^)]*)\)`).FindStringSubmatch(usage)
	if m == nil || m[1] != strings.Join(want, ", ") {
		t.Fatalf("--exclude help %q: want the list (%s)", usage, strings.Join(want, ", "))
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var quoted []string
	for _, p := range want {
		quoted = append(quoted, "`"+p+"`")
	}
	row, rows := "| `--exclude GLOB` |", 0
	for _, l := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(l, row) {
			continue
		}
		rows++
		if !strings.Contains(l, "("+strings.Join(quoted, ", ")+")") {
			t.Errorf("README's --exclude row does not list (%s):\n%s", strings.Join(quoted, ", "), l)
		}
	}
	if rows != 1 {
		t.Errorf("README has %d rows starting %q, want 1", rows, row)
	}

	// The watcher ignores a name of each pattern, even with --include '*'.
	root := t.TempDir()
	names := map[string]bool{"kept.json": true}
	for _, p := range want {
		names[strings.Replace(p, "*", "x.json", 1)] = false
	}
	for name := range names {
		if err := os.WriteFile(filepath.Join(root, name), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := watcher.New(watcher.Config{Roots: []string{root}, Include: []string{"*"}, Settle: 10 * time.Millisecond,
		SettleTimeout: time.Second, Once: true, Known: func(string, []watcher.File, []bool) {}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	seen := map[string]bool{}
	for ev := range w.Events() {
		if ev.Kind == watcher.Ready {
			seen[filepath.Base(ev.Path)] = true
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for name, reported := range names {
		if seen[name] != reported {
			t.Errorf("watcher reported %s: %v, want %v", name, seen[name], reported)
		}
	}
}
