package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
)

const stTarget = "http://127.0.0.1:1|org-1|proj-1"

// stRun runs the CLI in-process with an empty environment (no API key)
// and returns its exit code and output.
func stRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

// stShortDir is a state directory short enough for the control socket.
func stShortDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(control.SocketPath(dir)) < 100 {
		return dir
	}
	dir, err := os.MkdirTemp("/tmp", "tsst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// stFill writes a small state for stTarget into dir: two uploaded paths
// sharing one content, a quarantined one, a retrying one, a pending one.
// It returns the store open (the caller closes it, or not, as the test needs).
func stFill(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, store.Options{Target: stTarget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := store.Hash(sha256.Sum256([]byte("shared")))
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.PutContent(store.Content{Hash: h, Filename: "a.json", TraceIDs: []string{"trace-a1", "trace-a2"}}); err != nil {
			return err
		}
		recs := []store.PathRecord{
			{Path: filepath.Join(dir, "in", "a.json"), Hash: h, State: store.StateUploaded, Attempts: 1, UpdatedAt: at},
			{Path: filepath.Join(dir, "in", "copy.json"), Hash: h, State: store.StateUploaded, UpdatedAt: at},
			{Path: filepath.Join(dir, "in", "bad.json"), Hash: store.Hash(sha256.Sum256([]byte("bad"))), State: store.StateQuarantined, Attempts: 1, LastError: "invalid JSON: fix the file", UpdatedAt: at.Add(time.Minute)},
			{Path: filepath.Join(dir, "in", "flaky.json"), Hash: store.Hash(sha256.Sum256([]byte("flaky"))), State: store.StateRetrying, Attempts: 3, NextAttempt: at.Add(time.Hour), LastError: "503 Service Unavailable: retrying", UpdatedAt: at.Add(2 * time.Minute)},
			{Path: filepath.Join(dir, "in", "new.json"), State: store.StatePending, UpdatedAt: at},
		}
		for _, r := range recs {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// stServe runs a daemon-side control socket on dir's state for the test.
func stServe(t *testing.T, dir string, db *store.DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, control.SocketPath(dir), control.NewStoreHandler(db)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control.Serve: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed assertion
	for {
		c, err := net.Dial("unix", control.SocketPath(dir))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control socket %s did not answer within 30s: %v", control.SocketPath(dir), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStatusReadsStateFileWithoutDaemonOrKey(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	code, out, errOut := stRun(t, "status", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"API:", "http://127.0.0.1:1\n", "Organization:", "org-1\n", "Project:", "proj-1\n", filepath.Join(dir, store.FileName), "no daemon running", "uploaded", "quarantined", "flaky.json", "503 Service Unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output does not show %q:\n%s", want, out)
		}
	}

	code, out, errOut = stRun(t, "status", "--json", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("status --json: exit %d, stderr %q", code, errOut)
	}
	var st struct {
		Target         string         `json:"target"`
		BaseURL        string         `json:"base_url"`
		OrganizationID string         `json:"organization_id"`
		ProjectID      string         `json:"project_id"`
		Files          map[string]int `json:"files"`
		Contents       int            `json:"contents"`
		Traces         int            `json:"traces"`
		DeletesPending int            `json:"deletes_pending"`
		Daemon         bool           `json:"daemon"`
		LastErrors     []struct {
			Path  string `json:"path"`
			Error string `json:"error"`
		} `json:"last_errors"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not one JSON object: %v\n%s", err, out)
	}
	want := map[string]int{"pending": 1, "retrying": 1, "uploaded": 2, "quarantined": 1, "skipped": 0, "removed": 0}
	for k, v := range want {
		if got, ok := st.Files[k]; !ok || got != v {
			t.Errorf("files.%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	if st.Target != stTarget || st.Contents != 1 || st.Traces != 2 || st.Daemon || len(st.LastErrors) != 2 {
		t.Errorf("status --json = %+v, want target %s, 1 content, 2 traces, no daemon, 2 errors", st, stTarget)
	}
	if st.BaseURL+"|"+st.OrganizationID+"|"+st.ProjectID != stTarget || st.ProjectID == "" {
		t.Errorf("status --json: base_url %q, organization_id %q, project_id %q; want the parts of %s", st.BaseURL, st.OrganizationID, st.ProjectID, stTarget)
	}
}

func TestStatusAsksRunningDaemon(t *testing.T) {
	dir := stShortDir(t)
	db := stFill(t, dir) // held open: the file is locked, as under a daemon
	stServe(t, dir, db)
	code, out, errOut := stRun(t, "status", "--json", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("status with a daemon holding the lock: exit %d, stderr %q", code, errOut)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Daemon || st.DaemonPID != os.Getpid() || st.Files[store.StateUploaded] != 2 {
		t.Errorf("status via daemon = %+v, want daemon true, pid %d, 2 uploaded", st, os.Getpid())
	}
	code, out, _ = stRun(t, "status", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "running daemon (pid") {
		t.Errorf("human status via daemon: exit %d, output:\n%s", code, out)
	}
}

func TestStatusLockedWithoutSocketSaysWho(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir) // held open, no control socket
	code, _, errOut := stRun(t, "status", "--state-dir", dir)
	if code != 1 {
		t.Fatalf("status on a held state without a socket: exit %d, want 1", code)
	}
	for _, want := range []string{"pid", "stop it", "or pass --state-dir"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not say %q", errOut, want)
		}
	}
}

// A daemon that holds the state file but has no control socket yet (it is
// still opening its store): status waits for its socket instead of saying
// the file is held.
func TestStatusWaitsForDaemonStarting(t *testing.T) {
	dir := stShortDir(t)
	db := stFill(t, dir) // held open: the file is locked, no socket yet
	type result struct {
		code     int
		out, err string
	}
	got := make(chan result, 1)
	var stdout, stderr syncBuffer
	go func() {
		code := Main(context.Background(), []string{"status", "--json", "--state-dir", dir, "--log-level", "debug", "--log-format", "json"},
			strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		got <- result{code, stdout.String(), stderr.String()}
	}()
	// Serve only once status has found the file held and waits for the
	// socket: serving earlier would test the plain daemon answer.
	waiting := "waiting for it to answer on its control socket"
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed assertion
	for !strings.Contains(stderr.String(), waiting) {
		select {
		case r := <-got:
			t.Fatalf("status ended (exit %d) before it waited for the daemon's socket:\nstdout %s\nstderr %s", r.code, r.out, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("status did not start waiting for the daemon's socket within 30s; stderr:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stServe(t, dir, db)
	var r result
	select {
	case r = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("status did not return within 30s of the daemon's socket coming up; stderr:\n%s", stderr.String())
	}
	if r.code != 0 {
		t.Fatalf("status while the daemon starts: exit %d, stderr %q", r.code, r.err)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Daemon || st.Files[store.StateUploaded] != 2 {
		t.Errorf("status = %+v, want the daemon's answer with 2 uploaded", st)
	}
}

func TestStatusWithNoStateCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-used")
	code, out, errOut := stRun(t, "status", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("status on an empty state dir: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "nothing has been synced") {
		t.Errorf("status does not say nothing was synced:\n%s", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status created %s (stat err %v); a read command must not", dir, err)
	}
}

func TestStatusUsesStateDirEnvironment(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	var out, errb bytes.Buffer
	env := map[string]string{"TRACESYNC_STATE_DIR": dir}
	code := Main(context.Background(), []string{"status", "--json"}, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	if code != 0 || !strings.Contains(out.String(), stTarget) {
		t.Fatalf("status with TRACESYNC_STATE_DIR: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// Without a daemon, status and files open a current state read-only: the
// file is not written (no commit, no pid file), so a large state is not
// walked page by page first.
func TestStatusAndFilesLeaveTheStateUntouched(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	file := filepath.Join(dir, store.FileName)
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"files", "--state", "quarantined"}} {
		code, out, errOut := stRun(t, append(args, "--state-dir", dir)...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		if !strings.Contains(out, "bad.json") {
			t.Errorf("%v does not show the quarantined bad.json:\n%s", args, out)
		}
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Errorf("status or files wrote the state file")
	}
	if _, err := os.Stat(filepath.Join(dir, store.PIDFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status or files left a pid file (%v)", err)
	}
}
