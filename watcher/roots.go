package watcher

// roots.go owns the health of each watched root: set up, gone (missing,
// replaced, on another device, without its marker) and back again.

import (
	"time"
)

// rootState is what the event goroutine knows of one root.
type rootState struct {
	path    string
	dev     uint64
	haveDev bool
	gone    bool
	reason  string
	poll    bool          // polled instead of watched
	every   time.Duration // polling period when poll
	done    bool          // Once mode: scanned or gone
}

func (l *loop) setupRoot(r *rootState, h rootHealth) {
	if !r.haveDev {
		r.dev, r.haveDev = h.dev, true
	}
	if !r.poll && !l.cfg.Once {
		if fsType := fsWithoutInotify(r.path); fsType != "" {
			r.poll = true
			r.every = l.w.fallbackPoll
			l.cfg.Log.Warn().Str("root", r.path).Str("fs", fsType).Dur("every", r.every).
				Msg("root is on a filesystem inotify cannot watch: polling it instead")
		}
	}
}

// rootOKDuringFire is the settler's rootOK: it checks the root once per
// fire, and leaves reporting it gone to after the timers have run.
func (l *loop) rootOKDuringFire(root string) bool {
	r := l.rootOf(root)
	if r == nil || r.gone {
		return false
	}
	for _, g := range l.goneDuringFire {
		if g == r {
			return false
		}
	}
	for _, g := range l.okDuringFire {
		if g == r {
			return true
		}
	}
	if checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev).ok {
		l.okDuringFire = append(l.okDuringFire, r)
		return true
	}
	l.goneDuringFire = append(l.goneDuringFire, r)
	return false
}

func (l *loop) checkRootNow(r *rootState) {
	if r.gone {
		return
	}
	h := checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev)
	if !h.ok {
		l.markGone(r, h.reason)
	}
}

func (l *loop) markGone(r *rootState, reason string) {
	if r.gone {
		return
	}
	r.gone, r.reason = true, reason
	if l.cfg.Once {
		r.done = true
	}
	l.cfg.Log.Error().Str("root", r.path).Str("reason", reason).
		Msg("root is unusable: nothing under it is treated as removed until it is back")
	l.emit(Event{Kind: RootGone, Root: r.path, Reason: reason})
	l.s.dropRoot(r.path)
	if l.fsw != nil {
		for _, d := range l.dirs.removeTree(r.path, true) {
			_ = l.fsw.Remove(d)
		}
	}
	if !l.cfg.Once && l.rootTicker == nil {
		l.rootTicker = time.NewTicker(rootRecheckInterval(l.cfg.Settle))
	}
}

// rootRecheckInterval is how often a gone root is looked for: the settle
// time, between 10 ms and 1 s.
func rootRecheckInterval(settle time.Duration) time.Duration {
	return min(max(settle, 10*time.Millisecond), time.Second)
}

func (l *loop) recheckGoneRoots() {
	anyGone := false
	for _, r := range l.roots {
		if !r.gone {
			continue
		}
		h := checkRoot(r.path, l.cfg.RootMarker, r.dev, r.haveDev)
		if !h.ok {
			anyGone = true
			continue
		}
		r.gone, r.reason = false, ""
		l.setupRoot(r, h)
		l.cfg.Log.Info().Str("root", r.path).Msg("root is back: rescanning it")
		l.emit(Event{Kind: RootBack, Root: r.path})
		l.fullScan(r)
	}
	if !anyGone && l.rootTicker != nil {
		l.rootTicker.Stop()
		l.rootTicker = nil
	}
}
