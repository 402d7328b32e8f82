package watcher

import (
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// testHooks returns w's hooks, giving it some on first use. Call the
// setters below before Run: Run's goroutines read the hooks without a lock.
func (w *Watcher) testHooks() *testHooks {
	if w.hooks == nil {
		w.hooks = &testHooks{injected: make(chan error, 8)}
	}
	return w.hooks
}

// FSFaults returns a switch that makes the fsnotify reader discard events
// while it is on, and a channel whose errors reach the event goroutine as
// if fsnotify had reported them. Both may be used while w runs.
func (w *Watcher) FSFaults() (drop *atomic.Bool, inject chan<- error) {
	h := w.testHooks()
	return &h.dropEvents, h.injected
}

// SetAddWatch replaces adding an inotify watch with add.
func (w *Watcher) SetAddWatch(add func(fsw *fsnotify.Watcher, dir string) error) {
	w.testHooks().addWatch = add
}

// OnTimerLate has late told how late each settle timer woke the event
// goroutine.
func (w *Watcher) OnTimerLate(late func(time.Duration)) { w.testHooks().timerLate = late }

// OnPreciseSleep has slept called each time the event loop sleeps out the
// end of a settle timer.
func (w *Watcher) OnPreciseSleep(slept func()) { w.testHooks().preciseSleep = slept }

// OnEventSeen has seen told of each fsnotify event the event goroutine
// handles.
func (w *Watcher) OnEventSeen(seen func(path string)) { w.testHooks().eventSeen = seen }
