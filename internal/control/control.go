// Package control is tracesync's local control socket: a unix socket
// ("control.sock", mode 0600) in the state directory over which the CLI's
// read and change commands (status, files, retry, forget) talk to a running
// daemon, which holds the state file's lock. It speaks JSON over HTTP.
//
// It knows the store's types and nothing of uploads, HTTP APIs or files on
// disk; the daemon decides what its Handler does beyond the store.
package control

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tracesync/tracesync/store"
)

// SocketName is the control socket's name inside the state directory.
const SocketName = "control.sock"

// SocketPath is the control socket of a state directory.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// RecentErrorCount is how many recent errors Status carries.
const RecentErrorCount = 10

// Status is what `tracesync status` shows.
type Status struct {
	Target         string              `json:"target"`     // the namespace shown: "baseURL|org|project"; "" if the state was never used
	StateFile      string              `json:"state_file"` // the bbolt file
	Files          map[store.State]int `json:"files"`      // paths per state, every state present
	Contents       int                 `json:"contents"`   // distinct uploaded contents
	Traces         int                 `json:"traces"`
	DeletesPending int                 `json:"deletes_pending"`
	Intents        int                 `json:"intents"`
	Chained        int                 `json:"growing_files"` // files uploaded in more than one segment (appended .jsonl)
	Segments       int                 `json:"segments"`      // the segments of those files
	LastErrors     []FileError         `json:"last_errors"`   // newest first
	HeldBack       int                 `json:"held_back"`     // removals the running daemon's mass-delete guard holds back (0 without a daemon)
	Daemon         bool                `json:"daemon"`        // true when a running daemon answered over the socket
	DaemonPID      int                 `json:"daemon_pid,omitempty"`
	Concurrency    *Concurrency        `json:"concurrency,omitempty"` // the running daemon's upload pool; nil without a daemon
}

// Concurrency is how many uploads and deletes a running daemon runs at once.
type Concurrency struct {
	Mode     string `json:"mode"`      // "auto" (adaptive) or "fixed" (--workers N)
	Limit    int    `json:"limit"`     // allowed in flight now
	Max      int    `json:"max"`       // the ceiling: --max-workers, or N when fixed
	InFlight int    `json:"in_flight"` // running now
}

// FileError is one path's last error.
type FileError struct {
	Path  string      `json:"path"`
	State store.State `json:"state"`
	Error string      `json:"error"`
	At    time.Time   `json:"at,omitzero"`
}

// File is one row of `tracesync files`.
type File struct {
	Path        string      `json:"path"`
	State       store.State `json:"state"`
	Hash        string      `json:"hash,omitempty"` // hex SHA-256; empty until hashed
	Size        int64       `json:"size"`
	TraceIDs    []string    `json:"trace_ids,omitempty"`
	Attempts    int         `json:"attempts"`
	NextAttempt time.Time   `json:"next_attempt,omitzero"`
	LastError   string      `json:"last_error,omitempty"`
	UpdatedAt   time.Time   `json:"updated_at,omitzero"`
	// Segments and Sent, for a .jsonl: how many segments it went up in,
	// and up to which byte its lines are recorded as sent.
	Segments int   `json:"segments,omitempty"`
	Sent     int64 `json:"sent,omitempty"`
}

// Handler answers the control commands. NewStoreHandler answers straight
// from the store; the daemon may wrap it to also requeue what it changes.
type Handler interface {
	// Status returns the counts and recent errors of the store.
	Status(ctx context.Context) (Status, error)
	// Files lists the tracked paths in path order, only those in state
	// unless it is "".
	Files(ctx context.Context, state store.State) ([]File, error)
	// Retry moves the given paths (or, with all, every path) that are
	// quarantined or retrying back to pending now, and returns how many it
	// moved. A path with no record fails the whole call (*NotTrackedError).
	Retry(ctx context.Context, paths []string, all bool) (RetryResult, error)
	// Forget drops the records of the given paths (and of contents no
	// other path references) and returns how many. A path with no record
	// fails the whole call (*NotTrackedError).
	Forget(ctx context.Context, paths []string) (int, error)
	// Reconcile lists, under each root, the tracked files gone from disk
	// and, with confirm, marks them removed (with delete-on-remove, the
	// traces of contents left without a file are deleted). Only a running
	// daemon answers it: without one it returns ErrNeedsDaemon.
	Reconcile(ctx context.Context, roots []string, confirm bool) (ReconcileReport, error)
}

// ReconcileRoot is what Reconcile found under one root.
type ReconcileRoot struct {
	Root    string   `json:"root"`
	Tracked int      `json:"tracked"` // tracked paths (not removed) under the root
	Gone    []string `json:"gone"`    // of those, the ones whose file is gone
	Errors  []string `json:"errors,omitempty"`
}

// ReconcileReport is the answer of Reconcile.
type ReconcileReport struct {
	Roots          []ReconcileRoot `json:"roots"`
	Confirmed      bool            `json:"confirmed"`
	Removed        int             `json:"removed"`          // paths marked removed
	Orphaned       int             `json:"orphaned"`         // contents left without any path
	DeletesQueued  int             `json:"deletes_queued"`   // remote trace deletes queued
	DeletesDone    int             `json:"deletes_done"`     // of those, done before the answer
	DeletesFailed  int             `json:"deletes_failed"`   // failed for now; retried
	DeleteOnRemove bool            `json:"delete_on_remove"` // the daemon deletes traces of removed contents
}

// ErrNeedsDaemon is returned by the store handler's Reconcile: reconciling
// needs the API, which only the daemon (or the reconcile command itself)
// has.
var ErrNeedsDaemon = errors.New("reconcile through the control socket needs a running daemon")

// ErrNoDaemon is returned by Dial when no daemon listens on the socket
// (there is none, or a stale one left by a daemon that died).
var ErrNoDaemon = errors.New("no tracesync daemon is running on this state directory")

// ErrAlreadyServing is returned by Serve when another process already
// answers on the socket.
var ErrAlreadyServing = errors.New("another tracesync daemon already serves this state directory")

// ErrUnknownState is returned for a state name that is not one of store.States.
var ErrUnknownState = errors.New("unknown state")

// RetryResult is what a Retry did: how many paths it moved back to
// pending, and, of the paths it was given by name, those it left alone
// with the state that kept them (an uploaded file has nothing to retry).
type RetryResult struct {
	Requeued int                    `json:"changed"`
	Left     map[string]store.State `json:"left,omitempty"`
}

// NotTrackedError names the paths a Retry or Forget was given that have no
// record. errors.Is(err, store.ErrNotFound) is true.
type NotTrackedError struct {
	Paths []string
}

// Error says what happened and what to do.
func (e *NotTrackedError) Error() string {
	return fmt.Sprintf("not tracked: %s (see `tracesync files` for the tracked paths; give them as absolute paths or relative to the current directory)", strings.Join(e.Paths, ", "))
}

// Is makes errors.Is(err, store.ErrNotFound) true.
func (e *NotTrackedError) Is(target error) bool { return target == store.ErrNotFound }

// RemoteError is an error the daemon answered with that has no type of its own here.
type RemoteError struct {
	StatusCode int
	Message    string
}

// Error is the daemon's message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("daemon answered %d: %s", e.StatusCode, e.Message)
}

func unknownState(s store.State) error {
	names := make([]string, len(store.States))
	for i, st := range store.States {
		names[i] = string(st)
	}
	return fmt.Errorf("%w %q: use one of %s", ErrUnknownState, s, strings.Join(names, ", "))
}

// NewStoreHandler answers the control commands straight from db: what the
// CLI uses when no daemon runs, and what a daemon can wrap.
func NewStoreHandler(db *store.DB) Handler { return &storeHandler{db: db} }

type storeHandler struct{ db *store.DB }

func (h *storeHandler) Status(ctx context.Context) (Status, error) {
	counts, err := h.db.Counts()
	if err != nil {
		return Status{}, fmt.Errorf("read counts: %w", err)
	}
	recent, err := h.db.RecentErrors(RecentErrorCount)
	if err != nil {
		return Status{}, fmt.Errorf("read recent errors: %w", err)
	}
	st := Status{
		Target:         h.db.Target(),
		StateFile:      h.db.File(),
		Files:          counts.Files,
		Contents:       counts.Contents,
		Traces:         counts.Traces,
		DeletesPending: counts.DeletesPending,
		Intents:        counts.Intents,
		Chained:        counts.Chained,
		Segments:       counts.Segments,
		LastErrors:     []FileError{},
	}
	for _, r := range recent {
		st.LastErrors = append(st.LastErrors, FileError{Path: r.Path, State: r.State, Error: r.LastError, At: r.UpdatedAt})
	}
	return st, nil
}

func (h *storeHandler) Files(ctx context.Context, state store.State) ([]File, error) {
	if state != "" && !state.Valid() {
		return nil, unknownState(state)
	}
	traces := map[store.Hash][]string{}
	out := []File{}
	// Every state but uploaded is read from the store's index of it.
	err := h.db.ForEachPathIn(state, func(r store.PathRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := File{Path: r.Path, State: r.State, Size: r.Size, Attempts: r.Attempts, NextAttempt: r.NextAttempt, LastError: r.LastError, UpdatedAt: r.UpdatedAt}
		if r.Start != 0 || r.End != 0 || r.Prior > 0 {
			f.Segments, f.Sent = r.Segments(), r.Start
			if r.State == store.StateUploaded {
				f.Sent = r.SegEnd()
			}
		}
		var earlier []string
		if r.Prior > 0 && r.State != store.StateRemoved {
			segs, err := h.db.Chain(r.Path)
			if err != nil {
				return err
			}
			for _, s := range segs {
				if c, err := h.db.GetContent(s.Hash); err == nil {
					earlier = append(earlier, c.TraceIDs...)
				}
			}
		}
		if !r.Hash.IsZero() {
			f.Hash = r.Hash.String()
			ids, ok := traces[r.Hash]
			if !ok {
				c, err := h.db.GetContent(r.Hash)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				ids = c.TraceIDs
				traces[r.Hash] = ids
			}
			f.TraceIDs = ids
		}
		if len(earlier) > 0 {
			f.TraceIDs = append(earlier, f.TraceIDs...)
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list files: %w", err)
	}
	return out, nil
}

// retryable reports whether retry moves a path in state s.
func retryable(s store.State) bool { return s == store.StateQuarantined || s == store.StateRetrying }

// RetryablePaths lists the paths `retry --all` moves, in path order, from
// the store's indexes of those states.
func RetryablePaths(ctx context.Context, db *store.DB) ([]string, error) {
	var paths []string
	for _, s := range []store.State{store.StateQuarantined, store.StateRetrying} {
		err := db.ForEachPathIn(s, func(r store.PathRecord) error {
			paths = append(paths, r.Path)
			return ctx.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(paths)
	return paths, nil
}

func (h *storeHandler) Retry(ctx context.Context, paths []string, all bool) (RetryResult, error) {
	if all {
		var err error
		if paths, err = RetryablePaths(ctx, h.db); err != nil {
			return RetryResult{}, fmt.Errorf("retry: %w", err)
		}
	}
	if h.db.Target() == "" || len(paths) == 0 { // nothing was ever tracked here
		if len(paths) > 0 {
			return RetryResult{}, &NotTrackedError{Paths: paths}
		}
		return RetryResult{}, nil
	}
	var res RetryResult
	err := h.db.Update(ctx, func(tx *store.Tx) error {
		res = RetryResult{} // fn may run more than once
		var missing []string
		for _, p := range paths {
			r, err := tx.GetPath(p)
			if errors.Is(err, store.ErrNotFound) {
				missing = append(missing, p)
				continue
			}
			if err != nil {
				return err
			}
			if !retryable(r.State) {
				if !all { // changed meanwhile, or never failed: nothing to retry
					if res.Left == nil {
						res.Left = map[string]store.State{}
					}
					res.Left[p] = r.State
				}
				continue
			}
			r.State = store.StatePending
			r.Attempts = 0
			r.NextAttempt = time.Time{}
			r.LastError = ""
			if err := tx.PutPath(r); err != nil {
				return err
			}
			res.Requeued++
		}
		if len(missing) > 0 && !all {
			return &NotTrackedError{Paths: missing}
		}
		return nil
	})
	if err != nil {
		return RetryResult{}, err
	}
	return res, nil
}

func (h *storeHandler) Reconcile(context.Context, []string, bool) (ReconcileReport, error) {
	return ReconcileReport{}, ErrNeedsDaemon
}

func (h *storeHandler) Forget(ctx context.Context, paths []string) (int, error) {
	if h.db.Target() == "" || len(paths) == 0 { // nothing was ever tracked here
		if len(paths) > 0 {
			return 0, &NotTrackedError{Paths: paths}
		}
		return 0, nil
	}
	var forgotten int
	err := h.db.Update(ctx, func(tx *store.Tx) error {
		forgotten = 0 // fn may run more than once
		var missing []string
		for _, p := range slices.Compact(slices.Sorted(slices.Values(paths))) {
			err := tx.ForgetPath(p)
			if errors.Is(err, store.ErrNotFound) {
				missing = append(missing, p)
				continue
			}
			if err != nil {
				return err
			}
			forgotten++
		}
		if len(missing) > 0 {
			return &NotTrackedError{Paths: missing}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return forgotten, nil
}
