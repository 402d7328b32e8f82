package main

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// sdNotifier is what the daemon needs of systemd.Notifier.
type sdNotifier interface {
	Ready() error
	Status(s string) error
	Stopping() error
	Watchdog() error
	WatchdogInterval() time.Duration
}

// statusInterval is how often STATUS= is refreshed under systemd.
const statusInterval = 5 * time.Second

// notifyLoop speaks sd_notify for the daemon until ctx is done: READY=1 once
// ready is closed, STATUS= with status() every statusInterval, and
// WATCHDOG=1 every half WatchdogInterval, but only while healthy() is true,
// so systemd restarts a daemon that is wedged. Errors are logged once per
// kind; the daemon keeps working without systemd.
func notifyLoop(ctx context.Context, n sdNotifier, ready <-chan struct{}, status func() string, healthy func() bool, log zerolog.Logger) {
	warned := map[string]bool{}
	report := func(what string, err error) {
		if err != nil && !warned[what] {
			warned[what] = true
			log.Warn().Err(err).Str("message", what).Msg("systemd notification failed; continuing")
		}
	}

	statusTick := time.NewTicker(statusInterval)
	defer statusTick.Stop()
	var watchdogC <-chan time.Time
	if wd := n.WatchdogInterval(); wd > 0 {
		t := time.NewTicker(wd / 2)
		defer t.Stop()
		watchdogC = t.C
	}
	readyC := ready
	for {
		select {
		case <-ctx.Done():
			return
		case <-readyC:
			readyC = nil
			report("READY", n.Ready())
			report("STATUS", n.Status(status()))
		case <-statusTick.C:
			report("STATUS", n.Status(status()))
		case <-watchdogC:
			if healthy() {
				report("WATCHDOG", n.Watchdog())
			}
		}
	}
}
