package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/internal/control"
	"github.com/tracesync/tracesync/store"
)

// statewatchHang bounds the waits of these tests: a hang guard.
const statewatchHang = time.Minute

func TestStateWatchConcerns(t *testing.T) {
	dir := "/var/lib/tracesync"
	w := &stateWatch{dir: dir, file: filepath.Join(dir, store.FileName)}
	cases := []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{store.FileName, fsnotify.Remove, true},
		{store.FileName, fsnotify.Rename, true},
		{store.FileName, fsnotify.Create, true},
		{store.FileName, fsnotify.Write, false}, // bbolt's own commits
		{store.FileName, fsnotify.Chmod, false},
		{"", fsnotify.Remove, true}, // the directory itself
		{"", fsnotify.Rename, true},
		{store.PIDFileName, fsnotify.Remove, false},
		{store.PIDFileName, fsnotify.Create, false},
		{control.SocketName, fsnotify.Create, false},
		{control.SocketName, fsnotify.Remove, false},
		{store.FileName + ".compact", fsnotify.Create, false},
		{store.FileName + ".corrupt-20260101T000000.000000000Z", fsnotify.Rename, false},
	}
	for _, tc := range cases {
		ev := fsnotify.Event{Name: filepath.Join(dir, tc.name), Op: tc.op}
		if got := w.concerns(ev); got != tc.want {
			t.Errorf("concerns(%v): %v, want %v", ev, got, tc.want)
		}
	}
}

// countingWatch watches a real store in a temporary directory, counting
// the checks; watching is closed at the first check, which run makes once
// its watch is set.
type countingWatch struct {
	stateWatch
	db       *store.DB
	checks   atomic.Int64
	watching chan struct{}
	result   chan error
}

func startCountingWatch(t *testing.T, poll time.Duration, check func(db *store.DB) error) *countingWatch {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	db, err := store.Open(dir, store.Options{Target: "target"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cw := &countingWatch{db: db, watching: make(chan struct{}), result: make(chan error, 1)}
	cw.stateWatch = stateWatch{dir: dir, file: db.File(), poll: poll, log: zerolog.Nop(), check: func() error {
		if cw.checks.Add(1) == 1 {
			close(cw.watching)
		}
		return check(db)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { cw.result <- cw.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-cw.result:
		case <-time.After(statewatchHang):
			t.Errorf("the state watch did not return after its context ended")
		}
	})
	select {
	case <-cw.watching:
	case <-time.After(statewatchHang):
		t.Fatal("the state watch made no first check")
	}
	return cw
}

// wait returns what run returned; it fails the test after the hang guard.
func (cw *countingWatch) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-cw.result:
		cw.result <- err // for the cleanup
		return err
	case <-time.After(statewatchHang):
		t.Fatalf("the state watch did not return (%d checks)", cw.checks.Load())
		return nil
	}
}

// TestStateWatchEvents: commits and the files beside the state file wake
// no check; deleting the state file ends the watch with the store's error
// after exactly one more check.
func TestStateWatchEvents(t *testing.T) {
	cw := startCountingWatch(t, statePollInterval, (*store.DB).CheckFile)
	dir := cw.dir
	for i := range 3 {
		must(t, cw.db.Update(context.Background(), func(tx *store.Tx) error {
			return tx.PutPath(store.PathRecord{Path: fmt.Sprintf("/drop/%d.json", i), Root: "/drop", State: store.StatePending})
		}))
	}
	must(t, os.WriteFile(filepath.Join(dir, store.PIDFileName), []byte("1\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, control.SocketName), nil, 0o600))
	must(t, os.Remove(filepath.Join(dir, control.SocketName)))
	must(t, os.Remove(cw.file))

	err := cw.wait(t)
	if !errors.Is(err, store.ErrFileGone) {
		t.Fatalf("run: %v, want store.ErrFileGone", err)
	}
	// inotify keeps the order: the events before the delete were read
	// first, and none of them made a check.
	if n := cw.checks.Load(); n != 2 {
		t.Fatalf("%d checks, want 2 (the first, and the delete's)", n)
	}
}

// TestStateWatchDirMovedBack: a state directory moved away and back drops
// inotify's watch; the watch sets it again and still sees the file go.
func TestStateWatchDirMovedBack(t *testing.T) {
	var fail atomic.Bool
	cw := startCountingWatch(t, statePollInterval, func(*store.DB) error {
		if fail.Load() {
			return store.ErrFileGone
		}
		return nil
	})
	dir := cw.dir
	must(t, os.Rename(dir, dir+".away"))
	must(t, os.Rename(dir+".away", dir))
	// Wait for the check of the directory's move, then until a check of
	// the state file's name is seen: the watch is set again.
	deadline := time.Now().Add(statewatchHang)
	for cw.checks.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no check after the state directory moved")
		}
		time.Sleep(10 * time.Millisecond)
	}
	probe := filepath.Join(dir, "probe")
	for seen := cw.checks.Load(); cw.checks.Load() == seen; {
		if time.Now().After(deadline) {
			t.Fatal("the state directory's watch was not set again after it moved back")
		}
		must(t, os.WriteFile(probe, nil, 0o600))
		must(t, os.Rename(probe, cw.file)) // a Create of the state file's name
		time.Sleep(10 * time.Millisecond)
	}
	fail.Store(true)
	must(t, os.Remove(cw.file))
	if err := cw.wait(t); !errors.Is(err, store.ErrFileGone) {
		t.Fatalf("run: %v, want store.ErrFileGone", err)
	}
}

// TestStateWatchPoll: without fsnotify the check runs on the timer until it
// fails.
func TestStateWatchPoll(t *testing.T) {
	var checks atomic.Int64
	w := &stateWatch{poll: time.Millisecond, log: zerolog.Nop(), check: func() error {
		if checks.Add(1) == 3 {
			return store.ErrFileGone
		}
		return nil
	}}
	result := make(chan error, 1)
	go func() { result <- w.pollLoop(context.Background()) }()
	select {
	case err := <-result:
		if !errors.Is(err, store.ErrFileGone) || checks.Load() != 3 {
			t.Fatalf("pollLoop: %v after %d checks, want store.ErrFileGone after 3", err, checks.Load())
		}
	case <-time.After(statewatchHang):
		t.Fatal("pollLoop did not return")
	}
}

// TestStateWatchStops: run returns nil when its context ends.
func TestStateWatchStops(t *testing.T) {
	dir := t.TempDir()
	w := &stateWatch{dir: dir, file: filepath.Join(dir, store.FileName), poll: statePollInterval, log: zerolog.Nop(), check: func() error { return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- w.run(ctx) }()
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("run after cancel: %v, want nil", err)
		}
	case <-time.After(statewatchHang):
		t.Fatal("run did not return after its context ended")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
