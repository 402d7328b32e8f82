package main

// folder.go owns comparing the soak's folder with what the state and the
// server hold at the end.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// storedFile is one row of `tracesync files --json`.
type storedFile struct {
	Path      string   `json:"path"`
	State     string   `json:"state"`
	Hash      string   `json:"hash"`
	TraceIDs  []string `json:"trace_ids"`
	LastError string   `json:"last_error"`
}

func (f storedFile) String() string {
	s := f.State
	if len(f.Hash) >= 12 {
		s += " hash " + f.Hash[:12]
	}
	if len(f.TraceIDs) > 0 {
		s += " traces " + strings.Join(f.TraceIDs, ",")
	}
	if f.LastError != "" {
		s += " (" + f.LastError + ")"
	}
	return s
}

// fileStates asks `tracesync files --json` (the daemon stopped: it reads
// the state file) for every tracked path, by absolute path.
func fileStates(ctx context.Context, bin, state string) (map[string]storedFile, error) {
	cmd := exec.CommandContext(ctx, bin, "files", "--json", "--state-dir", state)
	cmd.Env = daemonEnv()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tracesync files: %w", err)
	}
	var files []storedFile
	if err := json.Unmarshal(out, &files); err != nil {
		return nil, fmt.Errorf("tracesync files --json: %w", err)
	}
	m := make(map[string]storedFile, len(files))
	for _, f := range files {
		m[f.Path] = f
	}
	return m, nil
}

// compareFolder reads the folder back and compares it with the producer's
// record (a check of the soak itself) and with the daemon's store: every
// file is tracked as uploaded with its bytes' hash, and every path the
// store holds as live is on disk. It returns one line per mismatch.
func compareFolder(root string, p *producer, stored map[string]storedFile) (mismatches []string, files int, err error) {
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files++
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c := p.holds[rel]
		keys, perr := parseTraces(rel, data)
		switch {
		case c == nil:
			mismatches = append(mismatches, fmt.Sprintf("producer: %q is on disk but not in the producer's record", rel))
		case perr != nil:
			mismatches = append(mismatches, fmt.Sprintf("producer: %q: %v", rel, perr))
		case len(keys) != c.traces || keys[0].content != c.id:
			mismatches = append(mismatches, fmt.Sprintf("producer: %q holds %d traces of %s, the record says %d of %s", rel, len(keys), keys[0].content, c.traces, c.id))
		}
		sum := sha256.Sum256(data)
		f, ok := stored[path]
		switch {
		case !ok:
			mismatches = append(mismatches, fmt.Sprintf("store: %q is on disk but not tracked", rel))
		case f.State != "uploaded" || f.Hash != hex.EncodeToString(sum[:]):
			mismatches = append(mismatches, fmt.Sprintf("store: %q (sha256 %.12x) is tracked as %s", rel, sum, f))
		}
		return nil
	})
	if err != nil {
		return nil, files, err
	}
	if len(p.holds) != files {
		mismatches = append(mismatches, fmt.Sprintf("producer: %d files on disk, %d in the record", files, len(p.holds)))
	}
	var extra []string
	for path, f := range stored {
		if f.State != "removed" && !seen[path] {
			extra = append(extra, fmt.Sprintf("store: %q is gone from disk but tracked as %s", path, f))
		}
	}
	slices.Sort(extra)
	return append(mismatches, extra...), files, nil
}
