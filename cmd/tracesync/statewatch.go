package main

// The state watch: a running sync ends when its state file is deleted,
// replaced or moved, or its directory removed (design.md rule 15), since
// what it records from then on goes to a file no later start reads.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// statePollInterval is how often the state file is checked when its
// directory cannot be watched (no inotify).
const statePollInterval = time.Minute

// stateWatch checks the state file whenever an event in its directory may
// concern it, so an idle daemon spends nothing on it; without fsnotify it
// checks on a timer instead.
type stateWatch struct {
	dir   string       // the state directory, watched
	file  string       // the state file in it
	check func() error // non-nil when the open state file is no longer at file (store.DB.CheckFile)
	poll  time.Duration
	log   zerolog.Logger
}

// run returns check's error once there is one, and nil when ctx ends.
func (w *stateWatch) run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fw.Add(w.dir); err != nil {
			_ = fw.Close()
		}
	}
	if err != nil {
		w.log.Warn().Err(err).Str("state_dir", w.dir).Dur("every", w.poll).
			Msg("cannot watch the state directory: checking the state file on a timer instead")
		return w.pollLoop(ctx)
	}
	defer fw.Close()
	// It may have gone between the store's open and the watch.
	if err := w.check(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return w.pollLoop(ctx)
			}
			if !w.concerns(ev) {
				continue
			}
			if err := w.check(); err != nil {
				return err
			}
			if ev.Name == w.dir {
				// The directory moved or went and came back: inotify dropped
				// its watch, so set it again, or fall back to the timer.
				if err := w.rewatch(ctx, fw); err != nil {
					w.log.Warn().Err(err).Str("state_dir", w.dir).Dur("every", w.poll).
						Msg("cannot watch the state directory again: checking the state file on a timer instead")
					return w.pollLoop(ctx)
				}
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return w.pollLoop(ctx)
			}
			// An overflow may have dropped the event that mattered.
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Debug().Err(err).Str("state_dir", w.dir).Msg("state directory watch")
			}
			if err := w.check(); err != nil {
				return err
			}
		}
	}
}

// rewatch sets the directory's watch again. The check just found the
// state file in place, so the directory is back; if it moves again while
// the watch is set, setting it fails, so it tries for a moment.
func (w *stateWatch) rewatch(ctx context.Context, fw *fsnotify.Watcher) error {
	var err error
	for range 50 {
		if err = fw.Add(w.dir); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return err
}

// concerns reports whether ev may mean the state file is no longer the one
// open: its name removed, renamed or created (renamed over), or the
// directory itself removed or moved. bbolt's own writes to the file, and
// the pid file and control socket beside it, do not.
func (w *stateWatch) concerns(ev fsnotify.Event) bool {
	switch filepath.Clean(ev.Name) {
	case w.file:
		return ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Create)
	case w.dir:
		return ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	}
	return false
}

// pollLoop checks every w.poll until check fails or ctx ends.
func (w *stateWatch) pollLoop(ctx context.Context) error {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		if err := w.check(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// stateGoneError says what a sync does about a state file that is gone:
// the daemon exits for its service manager to start it on a fresh state, a
// backfill for its user to run it again.
func stateGoneError(err error, once bool) error {
	if once {
		return fmt.Errorf("%w; stopping the backfill: run it again to go on with a fresh state (what was uploaded is found on the server by name, not uploaded again)", err)
	}
	return fmt.Errorf("%w; exiting so that the service manager restarts tracesync on a fresh state (what was uploaded is found on the server by name, not uploaded again)", err)
}
