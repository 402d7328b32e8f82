package uploader

import (
	"errors"
	"net/http"

	"github.com/tracesync/tracesync/client"
)

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
