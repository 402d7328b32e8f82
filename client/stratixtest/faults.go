// Fault injection: queued faults, fault rates and latency per endpoint, applied before a call is handled.

package stratixtest

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

type faultKind uint8

const (
	faultStatus faultKind = iota + 1
	faultRateLimit
	faultDrop
	faultHang
	faultLoseResponse // create only: create, then drop the connection
)

// fault is one queued fault, applied to the next `left` calls.
type fault struct {
	kind       faultKind
	status     int
	retryAfter string
	left       int
}

// endpointFaults are the faults set on one endpoint.
type endpointFaults struct {
	queue         []fault
	latency       time.Duration
	failRate      float64
	failStatus    int
	rateLimitRate float64
	retryAfter    string
}

// faultSource returns the seed of the fault draws (seed, or one from the
// clock when it is 0) and the source drawn from.
func faultSource(seed uint64) (uint64, *rand.Rand) {
	for seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return seed, rand.New(rand.NewPCG(seed, 0))
}

func (s *Server) addFault(ep Endpoint, f fault) {
	if f.left <= 0 {
		return
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	q := &s.faults[ep.index()].queue
	*q = append(*q, f)
}

// FailNext makes the next n calls of ep fail with status (JSON error body;
// S3 XML on EndpointPut) before doing anything.
func (s *Server) FailNext(ep Endpoint, n int, status int) {
	s.addFault(ep, fault{kind: faultStatus, status: status, left: n})
}

// RateLimitNext makes the next n calls of ep answer 429 with the header
// Retry-After: retryAfter ("2", an HTTP date, or "" for none).
func (s *Server) RateLimitNext(ep Endpoint, n int, retryAfter string) {
	s.addFault(ep, fault{kind: faultRateLimit, status: http.StatusTooManyRequests, retryAfter: retryAfter, left: n})
}

// DropNext makes the next n calls of ep lose their connection mid-request:
// the server closes it without answering (a PUT after reading half of its
// body). Nothing is done. Note that net/http transparently retries a GET
// dropped on a reused keep-alive connection once.
func (s *Server) DropNext(ep Endpoint, n int) {
	s.addFault(ep, fault{kind: faultDrop, left: n})
}

// HangNext makes the next n calls of ep never answer, until the client gives
// up or the server is closed.
func (s *Server) HangNext(ep Endpoint, n int) {
	s.addFault(ep, fault{kind: faultHang, left: n})
}

// LoseCreateResponseNext makes the next n creates create their traces and
// then drop the connection before answering: the crash window of rule 9.
func (s *Server) LoseCreateResponseNext(n int) {
	s.addFault(EndpointCreate, fault{kind: faultLoseResponse, left: n})
}

// SetLatency delays every call of ep by d before it is handled (0: none).
func (s *Server) SetLatency(ep Endpoint, d time.Duration) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults[ep.index()].latency = d
}

// FailRate makes each call of ep fail with status with probability p
// (0 turns it off). Queued faults (FailNext...) come first. The draws come
// from the server's seed (Options.Seed, Seed).
func (s *Server) FailRate(ep Endpoint, p float64, status int) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults[ep.index()].failRate = p
	s.faults[ep.index()].failStatus = status
}

// RateLimitRate makes each call of ep answer 429 with Retry-After:
// retryAfter with probability p (0 turns it off). The draws come from the
// server's seed (Options.Seed, Seed).
func (s *Server) RateLimitRate(ep Endpoint, p float64, retryAfter string) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults[ep.index()].rateLimitRate = p
	s.faults[ep.index()].retryAfter = retryAfter
}

// takeFault returns the fault to apply to this call of ep (zero kind: none)
// and the latency to add.
func (s *Server) takeFault(ep Endpoint) (fault, time.Duration) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	ef := &s.faults[ep.index()]
	if len(ef.queue) > 0 {
		f := ef.queue[0]
		ef.queue[0].left--
		if ef.queue[0].left <= 0 {
			ef.queue = ef.queue[1:]
		}
		return f, ef.latency
	}
	if ef.failRate > 0 && s.faultRand.Float64() < ef.failRate {
		return fault{kind: faultStatus, status: ef.failStatus}, ef.latency
	}
	if ef.rateLimitRate > 0 && s.faultRand.Float64() < ef.rateLimitRate {
		return fault{kind: faultRateLimit, status: http.StatusTooManyRequests, retryAfter: ef.retryAfter}, ef.latency
	}
	return fault{}, ef.latency
}

// begin counts the call, applies latency and takes the call's fault. It
// returns the fault still to be applied by the handler (drop and lose
// response happen at a point only the handler knows), or handled=true when
// the answer was already given.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, ep Endpoint) (f fault, handled bool) {
	s.calls[ep.index()].Add(1)
	f, latency := s.takeFault(ep)
	s.sleep(r.Context(), latency)
	switch f.kind {
	case faultStatus, faultRateLimit:
		s.answered[ep.index()].Add(1)
		if f.status == http.StatusTooManyRequests {
			s.limited[ep.index()].Add(1)
		}
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		msg := "injected failure: " + strconv.Itoa(f.status) + " " + http.StatusText(f.status)
		if f.kind == faultRateLimit {
			msg = "rate limit exceeded"
		}
		if ep == EndpointPut {
			s3Error(w, f.status, s3CodeFor(f.status), msg)
		} else {
			s.errorJSON(w, f.status, msg)
		}
		return f, true
	case faultHang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		hijackClose(w)
		return f, true
	}
	return f, false
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	conn, _, err := rc.Hijack()
	if err != nil {
		// HTTP/2 or a recorder: abort the handler the way net/http allows.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
