package uploader

// pause.go owns the pause of the whole pool (rule 11): a rejected key, an
// unreachable API or one that answers it is unavailable stops every worker,
// and one probe at a time checks when it works again.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tracesync/tracesync/client"
)

// probe checks, once, whether the API answers with the key: a cheap list.
func (l *loop) probe() {
	ctx, cancel := context.WithTimeout(l.e.workCtx, max(l.e.cfg.ProbeInterval, 10*time.Second))
	defer cancel()
	_, err := l.e.api.List(ctx, client.ListOptions{PageSize: 1})
	select {
	case l.probeOut <- err:
	case <-l.abort:
	}
}

func (l *loop) pause(why string, err error) {
	if l.paused {
		return
	}
	l.paused, l.pauseWhy = true, why
	l.probeAt = l.now().Add(l.e.cfg.ProbeInterval)
	l.e.log.Error().Err(err).Dur("probe_every", l.e.cfg.ProbeInterval).Msg("uploads paused: " + why)
}

func (l *loop) onProbe(err error) {
	if err == nil {
		l.paused, l.pauseWhy, l.connFails = false, "", 0
		l.outage.reset()
		l.e.log.Info().Msg("the API answers again: uploads resumed")
		// Jobs waiting for the pool go back in line.
		for _, u := range l.jobs {
			if u.state == jobPaused {
				l.enqueue(u, true)
			}
		}
		return
	}
	l.e.log.Debug().Err(err).Msg("probe failed; still paused")
	l.probeAt = l.now().Add(l.e.cfg.ProbeInterval)
}

// noteCall counts one API call's answer toward pausing the pool as one
// (rule 11): connection failures in a row, or most recent calls answered
// 502, 503 or 504.
func (l *loop) noteCall(r workResult) {
	failed := r.kind == resFailed
	if failed && r.class == client.ClassCanceled {
		return
	}
	if failed && r.transport {
		l.connFails++
	} else {
		l.connFails = 0
	}
	down := l.outage.add(failed && (r.transport || unavailableAnswer(r.err)))
	switch {
	case l.connFails >= l.e.cfg.ConnFailures:
		l.pause(fmt.Sprintf("the API is unreachable (%d connection failures in a row)", l.connFails), r.err)
	case down:
		l.pause(fmt.Sprintf("the API answers that it is unavailable (502/503/504) to %d of the last %d calls", l.outage.down, l.outage.n), r.err)
	}
}

// outageWindow and outageCalls: the pool pauses as one (rule 11) when at
// least outageCalls of the last outageWindow API calls found the API down
// while it answers (502, 503, 504), instead of every file backing off on
// its own and the pool hammering an API in an outage.
const (
	outageWindow = 10
	outageCalls  = 8
)

// outage remembers whether each of the last outageWindow API calls found
// the API unavailable.
type outage struct {
	last [outageWindow]bool
	n    int // calls recorded, up to outageWindow
	next int // where the next call goes in last
	down int // of the recorded calls, those that found the API unavailable
}

// add records one call and reports whether most recent calls found the API
// unavailable.
func (o *outage) add(unavailable bool) bool {
	if o.n == outageWindow && o.last[o.next] {
		o.down--
	}
	o.last[o.next] = unavailable
	if unavailable {
		o.down++
	}
	o.next = (o.next + 1) % outageWindow
	o.n = min(o.n+1, outageWindow)
	return o.down >= outageCalls
}

func (o *outage) reset() { *o = outage{} }

// unavailableAnswer reports whether err is the API saying it is down for
// now: 502, 503 or 504.
func unavailableAnswer(err error) bool {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
