package uploader

// concurrency.go owns how many uploads and deletes may run at once: a fixed
// number (Config.Workers), or a limit that adapts to how the API answers
// (additive increase, multiplicative decrease, after Vector's adaptive
// request concurrency), between a floor and Config.MaxWorkers.

import (
	"context"
	"errors"
	"io"
	"iter"
	"math"
	"sync"
	"time"

	"github.com/tracesync/tracesync/client"
)

// DefaultMaxWorkers is the adaptive limit's ceiling when Config.MaxWorkers
// is 0.
const DefaultMaxWorkers = 256

// Tuning of the adaptive limit.
const (
	// adaptiveFloor is the least the limit shrinks to.
	adaptiveFloor = 1
	// adaptiveStart is the limit an engine starts with.
	adaptiveStart = 4
	// rttAlpha is the weight of the newest window in the RTT baseline.
	rttAlpha = 0.4
	// rttDeviationScale is how many standard deviations above the baseline
	// a window's mean RTT must be to count as a jump.
	rttDeviationScale = 2.5
	// rttJumpMin is the least relative rise that counts as a jump, so the
	// near-constant RTT of a quiet link does not make noise a jump.
	rttJumpMin = 0.5
	// minWindowSamples is how many RTTs a window needs before its mean is
	// judged: a window of one or two calls is mostly noise.
	minWindowSamples = 5
)

// concurrency is the limit on uploads and deletes in flight. The loop reads
// it before it hands out work and tells it when it did (started); the
// workers' API calls report their round trips and outcomes (observe).
//
// Adaptive, it works in windows of about one baseline RTT (and at least a
// few calls). At the end of each it compares the window's mean RTT with an
// exponentially weighted baseline of the earlier windows. Back pressure
// (429, 503, 504, a timeout) cuts the limit in proportion to its share α of
// the window's answers, to limit × (1 − α/2), as DCTCP does with ECN marks:
// a window of nothing but back pressure halves it, one refusal in twenty
// trims 2.5%, so random refusals do not pin the pool near the floor. A jump
// above the baseline that lasts two windows halves the limit. Otherwise, if
// the limit was reached in the window (there was work for more) and the
// latency held, it grows, doubling until the first decrease (slow start),
// by one from then on.
type concurrency struct {
	adaptive       bool
	floor, ceiling int
	now            func() time.Time

	mu        sync.Mutex // guards the fields below
	limit     float64    // its whole part is the limit; the rest keeps small cuts from rounding away
	slowStart bool
	next      time.Time // when the current window ends; zero until the first sample
	sum       float64   // the current window's RTT samples, in seconds
	n         int
	answers   int     // calls answered in the current window, whatever the outcome
	pressured int     // those that said back pressure
	base      ewmaVar // the baseline of earlier windows
	reached   bool    // the current window had the limit in flight
	// sampleFrom drops the RTT samples of calls that began before it: set
	// at a large decrease, and at a first slow window, so that one stall
	// which slowed every call then is not read as two slow windows.
	sampleFrom time.Time
	suspect    bool // the last window's RTT jumped: one more, of calls begun since, confirms it
}

// sampleResetCut is the least cut after which calls already under way no
// longer speak for the limit (their RTT samples are dropped): a trim of a
// few percent leaves them representative, a halving does not.
const sampleResetCut = 0.25

// newConcurrency returns the limit cfg asks for: fixed at cfg.Workers, or
// adaptive up to cfg.MaxWorkers (cfg has its defaults set). now is the
// clock RTTs are measured with.
func newConcurrency(cfg Config, now func() time.Time) *concurrency {
	if cfg.Workers > 0 {
		return &concurrency{floor: cfg.Workers, ceiling: cfg.Workers, limit: float64(cfg.Workers), now: now}
	}
	floor := min(adaptiveFloor, cfg.MaxWorkers)
	return &concurrency{adaptive: true, floor: floor, ceiling: cfg.MaxWorkers, now: now,
		limit: float64(min(adaptiveStart, cfg.MaxWorkers)), slowStart: true}
}

// Limit is how many uploads and deletes may be in flight now.
func (c *concurrency) Limit() int {
	if !c.adaptive {
		return int(c.limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.limit)
}

// started notes that inflight items are running after one more started.
func (c *concurrency) started(inflight int) {
	if !c.adaptive {
		return
	}
	c.mu.Lock()
	if inflight >= int(c.limit) {
		c.reached = true
	}
	c.mu.Unlock()
}

// observe takes the outcome of one API call that took rtt: every answer
// counts towards the window's share of back pressure, and a success timed
// (rtt > 0) is an RTT sample. A canceled call says nothing. It ends the
// window when it is due.
func (c *concurrency) observe(rtt time.Duration, err error) {
	if !c.adaptive || errors.Is(err, context.Canceled) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.answers++
	switch {
	case err == nil && rtt > 0 && !now.Add(-rtt).Before(c.sampleFrom):
		c.sum += rtt.Seconds()
		c.n++
	case client.IsBackPressure(err):
		c.pressured++
	}
	c.adjust(now)
}

// adjust ends the window when it is due and changes the limit. c.mu is held.
func (c *concurrency) adjust(now time.Time) {
	if c.next.IsZero() {
		// The first samples set the baseline; nothing to compare yet.
		if c.n == 0 {
			if c.pressured > 0 {
				c.cut(c.share()/2, now)
				c.answers, c.pressured = 0, 0
			}
			return
		}
		c.base.update(c.sum / float64(c.n))
		c.startWindow(now)
		return
	}
	if now.Before(c.next) || (c.n < minWindowSamples && c.pressured == 0) {
		return
	}
	mean, dev := c.base.mean, math.Sqrt(c.base.variance)
	threshold := max(rttDeviationScale*dev, rttJumpMin*mean)
	cur, have := 0.0, c.n > 0
	if have {
		cur = c.sum / float64(c.n)
	}
	jump := have && cur > mean+threshold
	cut := c.share() / 2
	if jump && c.suspect {
		cut = max(cut, 0.5)
	}
	if cut > 0 {
		c.cut(cut, now)
	}
	switch {
	case jump && !c.suspect:
		// One slow window may be a stall of this process or the network;
		// a second in a row, of calls begun after it, is a jump. Until
		// then the baseline waits.
		c.suspect = true
		c.sampleFrom = now
		c.startWindow(now)
		return
	case !jump && c.reached && have && c.limit < float64(c.ceiling):
		// Growth goes on beside a small cut, as in DCTCP: the two
		// balance where refusals are about 2 per window.
		if c.slowStart {
			c.limit = min(2*c.limit, float64(c.ceiling))
		} else {
			c.limit = min(c.limit+1, float64(c.ceiling))
		}
	}
	c.suspect = false
	if have {
		c.base.update(cur)
	}
	c.startWindow(now)
}

// share is the current window's share of back-pressure answers.
func (c *concurrency) share() float64 {
	if c.answers == 0 {
		return 0
	}
	return float64(c.pressured) / float64(c.answers)
}

// cut shrinks the limit by the fraction cut, not below the floor, and ends
// slow start.
func (c *concurrency) cut(cut float64, now time.Time) {
	c.limit = max(c.limit*(1-cut), float64(c.floor))
	c.slowStart = false
	if cut >= sampleResetCut {
		c.sampleFrom = now
	}
}

func (c *concurrency) startWindow(now time.Time) {
	c.next = now.Add(time.Duration(c.base.mean * float64(time.Second)))
	c.sum, c.n = 0, 0
	c.answers, c.pressured, c.reached = 0, 0, false
}

// ewmaVar is an exponentially weighted mean and variance.
type ewmaVar struct {
	mean, variance float64
	set            bool
}

func (e *ewmaVar) update(v float64) {
	if !e.set {
		e.mean, e.variance, e.set = v, 0, true
		return
	}
	d := v - e.mean
	e.mean += rttAlpha * d
	e.variance = (1 - rttAlpha) * (e.variance + rttAlpha*d*d)
}

// measuredAPI reports the round trip and outcome of every call to the
// concurrency limit. A PUT's time grows with the file's size, so it counts
// as an answer but not as an RTT sample; a listing's pages are not timed,
// and a whole listing counts as one answer.
type measuredAPI struct {
	API
	cc *concurrency
}

func (m measuredAPI) Presign(ctx context.Context, filename, contentType string, size int64) (client.Presigned, error) {
	start := m.cc.now()
	p, err := m.API.Presign(ctx, filename, contentType, size)
	m.cc.observe(m.cc.now().Sub(start), err)
	return p, err
}

func (m measuredAPI) Put(ctx context.Context, url, contentType string, body io.Reader, size int64) ([32]byte, error) {
	sum, err := m.API.Put(ctx, url, contentType, body, size)
	if !errors.Is(err, client.ErrBodySize) { // that one is the file's doing
		m.cc.observe(0, err)
	}
	return sum, err
}

func (m measuredAPI) Create(ctx context.Context, filename string) ([]string, error) {
	start := m.cc.now()
	ids, err := m.API.Create(ctx, filename)
	m.cc.observe(m.cc.now().Sub(start), err)
	return ids, err
}

func (m measuredAPI) List(ctx context.Context, opts client.ListOptions) (client.ListResult, error) {
	start := m.cc.now()
	r, err := m.API.List(ctx, opts)
	m.cc.observe(m.cc.now().Sub(start), err)
	return r, err
}

func (m measuredAPI) All(ctx context.Context, opts client.ListOptions) iter.Seq2[client.TraceWithEvaluations, error] {
	return func(yield func(client.TraceWithEvaluations, error) bool) {
		for t, err := range m.API.All(ctx, opts) {
			if err != nil {
				m.cc.observe(0, err)
				yield(t, err)
				return
			}
			if !yield(t, nil) {
				break
			}
		}
		m.cc.observe(0, nil)
	}
}

func (m measuredAPI) Delete(ctx context.Context, id string) error {
	start := m.cc.now()
	err := m.API.Delete(ctx, id)
	m.cc.observe(m.cc.now().Sub(start), err)
	return err
}

// limit is how many uploads and deletes the loop may have in flight now.
func (l *loop) limit() int { return l.e.cc.Limit() }

// startWorkers starts worker goroutines until there are as many as the
// limit: an adaptive pool starts small and grows its goroutines with it.
// Workers beyond a shrunk limit stay idle: the loop hands out no more work
// than the limit.
func (l *loop) startWorkers() {
	for n := l.limit(); l.workers < n; l.workers++ {
		l.wg.Go(func() { l.e.worker(l.workIn, l.workOut, l.abort) })
	}
}
