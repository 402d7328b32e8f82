package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// fakeNotifier records the sd_notify messages it is asked to send.
type fakeNotifier struct {
	watchdog time.Duration
	fail     error

	mu   sync.Mutex // guards msgs
	msgs []string
}

func (f *fakeNotifier) add(m string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, m)
	return f.fail
}
func (f *fakeNotifier) Ready() error                    { return f.add("READY=1") }
func (f *fakeNotifier) Status(s string) error           { return f.add("STATUS=" + s) }
func (f *fakeNotifier) Stopping() error                 { return f.add("STOPPING=1") }
func (f *fakeNotifier) Watchdog() error                 { return f.add("WATCHDOG=1") }
func (f *fakeNotifier) WatchdogInterval() time.Duration { return f.watchdog }
func (f *fakeNotifier) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func TestNotifyLoopReadyStatusAndWatchdogOnlyWhileHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNotifier{watchdog: 20 * time.Second}
		ready := make(chan struct{})
		var healthy atomic.Bool
		healthy.Store(true)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			notifyLoop(ctx, n, ready, func() string { return "uploaded 3, pending 1" }, healthy.Load, zerolog.Nop())
		}()

		synctest.Wait()
		if got := n.count("READY"); got != 0 {
			t.Fatalf("READY sent %d times before the first scan was queued, want 0", got)
		}
		close(ready)
		synctest.Wait()
		if got := n.count("READY"); got != 1 {
			t.Fatalf("READY sent %d times after ready, want 1", got)
		}

		time.Sleep(30 * time.Second) // fake time: watchdog at 10s, 20s, 30s
		synctest.Wait()
		if got := n.count("WATCHDOG"); got != 3 {
			t.Fatalf("healthy for 30s with a 20s watchdog: %d pings, want 3 (every 10s)", got)
		}
		if got := n.count("STATUS=uploaded 3, pending 1"); got < 6 {
			t.Fatalf("STATUS sent %d times in 30s, want one at READY and one every %s", got, statusInterval)
		}

		healthy.Store(false)
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if got := n.count("WATCHDOG"); got != 3 {
			t.Fatalf("unhealthy engine: watchdog pinged (%d pings, want still 3); systemd could not restart a wedged daemon", got)
		}
		cancel()
		<-done
	})
}

func TestNotifyLoopWithoutWatchdogAndFailingSocket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNotifier{fail: errors.New("socket gone")}
		ready := make(chan struct{})
		close(ready)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		notifyLoop(ctx, n, ready, func() string { return "x" }, func() bool { return true }, zerolog.Nop())
		if got := n.count("WATCHDOG"); got != 0 {
			t.Fatalf("no WATCHDOG_USEC: %d pings, want 0", got)
		}
		if got := n.count("READY"); got != 1 {
			t.Fatalf("READY sent %d times, want 1 even when sending fails", got)
		}
	})
}
