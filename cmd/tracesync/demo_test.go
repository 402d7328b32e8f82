package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/store"
)

// demo --real without a key is a usage error that says what to set.
func TestDemoRealNeedsAKey(t *testing.T) {
	home := t.TempDir()
	code, out, errOut := mainIn(t, context.Background(), map[string]string{"HOME": home}, "demo", "--real", "--dir", filepath.Join(home, "demo"))
	if code != exitUsage || !strings.Contains(errOut, "--real") || !strings.Contains(errOut, "LAYERLENS_STRATIX_API_KEY") || out != "" {
		t.Fatalf("demo --real without a key: exit %d, stdout %q, stderr %q; want exit 2 naming --real and LAYERLENS_STRATIX_API_KEY, nothing on stdout", code, out, errOut)
	}
}

// A second demo in the same folder says the state is held, and suggests
// --dir, before it prints its banner or starts anything.
func TestDemoSecondInSameFolderFailsFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	db, err := store.Open(filepath.Join(dir, "state"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	code, out, errOut := mainIn(t, context.Background(), map[string]string{"HOME": t.TempDir()}, "demo", "--dir", dir, "--api-addr", "127.0.0.1:0")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "--dir") || !strings.Contains(errOut, "already running") {
		t.Fatalf("demo on a held state: exit %d, stdout %q, stderr %q; want exit 1, no banner, a hint at --dir", code, out, errOut)
	}
}

// The demo's printed commands work from where the user is: go run's
// binary is named by go run, a binary on PATH by its name, any other by
// its path.
func TestSelfCommand(t *testing.T) {
	notFound := func(string) (string, error) { return "", errors.New("not found") }
	for _, c := range []struct {
		exe    string
		onPath func(string) (string, error)
		want   string
	}{
		{"/tmp/go-build1234/b001/exe/tracesync", notFound, "go run ./cmd/tracesync"},
		{"/home/u/.cache/go-build/x/exe/tracesync", notFound, "go run ./cmd/tracesync"},
		{"/home/u/src/tracesync/tracesync", notFound, "/home/u/src/tracesync/tracesync"},
		{"/usr/bin/tracesync", func(string) (string, error) { return "/usr/bin/tracesync", nil }, "tracesync"},
	} {
		exe := c.exe
		got := selfCommand(func() (string, error) { return exe, nil }, c.onPath)
		if got != c.want {
			t.Errorf("selfCommand(%s) = %q, want %q", c.exe, got, c.want)
		}
	}
}
