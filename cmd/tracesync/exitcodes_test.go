package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/tracesync/tracesync/store"
)

// One table of exit codes for every command (root.go): a wrong key, a
// base URL without the API behind it and a state directory that holds no
// tracesync state are configuration errors (2) whichever command meets
// them; a state held by another process is a runtime failure (1).
func TestExitCodesAreTheSameForEveryCommand(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "a.json", traceJSON("exit-codes"))
	wrongKey := filepath.Join(t.TempDir(), "wrong-key")
	if err := os.WriteFile(wrongKey, []byte("not-the-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notState := t.TempDir() // a bbolt file tracesync did not write
	foreign, err := bolt.Open(filepath.Join(notState, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = foreign.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("someone-else")); return err })
	if cerr := foreign.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	held := t.TempDir()
	db, err := store.Open(held, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	apiCommands := [][]string{
		{"backfill", "--settle", "50ms", w.folder},
		{"traces", "list"},
		{"traces", "get", "tr-1"},
		{"traces", "upload", filepath.Join(w.folder, "a.json")},
		{"reconcile", w.folder},
	}
	stateCommands := [][]string{
		{"backfill", "--settle", "50ms", w.folder},
		{"files"},
		{"retry", "--all"},
		{"forget", filepath.Join(w.folder, "a.json")},
		{"state", "compact"},
	}
	type row struct {
		name string
		env  map[string]string
		cmds [][]string
		want int
		say  string // what stderr must say, when it matters
	}
	rows := []row{
		{"wrong key", withEnv(w.env, map[string]string{"TRACESYNC_API_KEY_FILE": wrongKey}), apiCommands, exitUsage, "rejected"},
		{"base URL without /api/v1", withEnv(w.env, map[string]string{"TRACESYNC_BASE_URL": strings.TrimSuffix(w.srv.URL(), "/api/v1")}), apiCommands, exitUsage, "the base URL usually ends in /api/v1"},
		{"not a state file", withEnv(w.env, map[string]string{"TRACESYNC_STATE_DIR": notState}), stateCommands, exitUsage, "not a tracesync state file"},
		{"state held by another process", withEnv(w.env, map[string]string{"TRACESYNC_STATE_DIR": held}), stateCommands, exitFailure, "--state-dir"},
		{"unknown flag", w.env, append(apiCommands, stateCommands...), exitUsage, "unknown flag: --no-such-flag"},
	}
	for _, r := range rows {
		for _, args := range r.cmds {
			if r.name == "unknown flag" {
				args = append(append([]string{}, args...), "--no-such-flag")
			}
			code, _, stderr := mainIn(t, context.Background(), r.env, args...)
			if code != r.want || !strings.Contains(stderr, r.say) {
				t.Errorf("%s: tracesync %s: exit %d, want %d saying %q\nstderr: %s", r.name, strings.Join(args, " "), code, r.want, r.say, stderr)
			}
		}
	}
}
