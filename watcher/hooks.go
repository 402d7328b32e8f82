// The points where tests observe or perturb a running Watcher (set by export_test.go).

package watcher

import (
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// testHooks are set only by tests, before Run. Every method is safe on a
// nil *testHooks and then does nothing, which is the production case.
type testHooks struct {
	// dropEvents makes the fsnotify reader discard events, as an
	// overflowing kernel queue would.
	dropEvents atomic.Bool
	// injected errors reach the event goroutine as if fsnotify had
	// reported them.
	injected chan error
	// addWatch, when set, replaces adding an inotify watch (to run out of
	// watches).
	addWatch func(fsw *fsnotify.Watcher, dir string) error
	// timerLate, when set, is told how late the settle timer woke the event
	// goroutine (the Go runtime's lateness), so a benchmark can tell it
	// from the watcher's own work.
	timerLate func(time.Duration)
	// preciseSleep, when set, is called each time the event loop sleeps out
	// the end of a settle timer (onTime).
	preciseSleep func()
	// eventSeen, when set, is told when the event goroutine handles an
	// fsnotify event.
	eventSeen func(path string)
}

func (h *testHooks) droppingEvents() bool { return h != nil && h.dropEvents.Load() }

// injectedErrors returns the channel of injected errors; nil (never ready
// in a select) without hooks.
func (h *testHooks) injectedErrors() <-chan error {
	if h == nil {
		return nil
	}
	return h.injected
}

func (h *testHooks) addWatchFunc() func(fsw *fsnotify.Watcher, dir string) error {
	if h == nil {
		return nil
	}
	return h.addWatch
}

func (h *testHooks) timerWokeLate(d time.Duration) {
	if h != nil && h.timerLate != nil {
		h.timerLate(d)
	}
}

func (h *testHooks) sleptPrecisely() {
	if h != nil && h.preciseSleep != nil {
		h.preciseSleep()
	}
}

func (h *testHooks) sawEvent(path string) {
	if h != nil && h.eventSeen != nil {
		h.eventSeen(path)
	}
}
