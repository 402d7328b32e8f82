package uploader

import (
	"math"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
)

// ccClock is the controller's fake clock: it moves only when a test moves it.
type ccClock struct{ t time.Time }

func (c *ccClock) now() time.Time { return c.t }

func newTestConcurrency(t *testing.T, workers, maxWorkers int) (*concurrency, *ccClock) {
	t.Helper()
	cfg := Config{Workers: workers, MaxWorkers: maxWorkers}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	clk := &ccClock{t: time.Unix(1_700_000_000, 0)}
	return newConcurrency(cfg, clk.now), clk
}

var (
	err429 = &client.APIError{Op: "presign", StatusCode: 429}
	err503 = &client.APIError{Op: "create", StatusCode: 503}
	err504 = &client.APIError{Op: "create", StatusCode: 504}
	err500 = &client.APIError{Op: "create", StatusCode: 500}
)

// window runs one adjustment window and returns the limit after: the
// limit is reached in it or not; calls that began in it answer in rtt, one
// more answers with err (when not nil), and then, the window being over, a
// last call answering in rtt ends it (unless err did).
func window(cc *concurrency, clk *ccClock, rtt time.Duration, reached bool, err error) int {
	if cc.next.IsZero() {
		cc.observe(rtt, nil) // the first sample only sets the baseline
	}
	if reached {
		cc.started(cc.Limit())
	}
	clk.t = clk.t.Add(rtt)
	for range minWindowSamples - 1 {
		cc.observe(rtt, nil)
	}
	if err != nil {
		cc.observe(0, err)
	}
	clk.t = clk.t.Add(time.Second)
	cc.observe(rtt, nil)
	return cc.Limit()
}

// mixedWindow runs one adjustment window in which ok calls answer in rtt
// and one more call per error in errs answers with it, spread over the
// window; the last success ends it. It returns the limit after.
func mixedWindow(cc *concurrency, clk *ccClock, rtt time.Duration, reached bool, ok int, errs ...error) int {
	if cc.next.IsZero() {
		cc.observe(rtt, nil) // the first sample only sets the baseline
	}
	if reached {
		cc.started(cc.Limit())
	}
	step := rtt / time.Duration(ok+len(errs)+1)
	for i := range ok - 1 + len(errs) {
		clk.t = clk.t.Add(step)
		if i < len(errs) {
			cc.observe(0, errs[i])
		} else {
			cc.observe(rtt, nil)
		}
	}
	clk.t = clk.t.Add(time.Second)
	cc.observe(rtt, nil)
	return cc.Limit()
}

// refusedWindow runs one adjustment window in which every call answers err
// (the last of them ends it), and returns the limit after.
func refusedWindow(cc *concurrency, clk *ccClock, err error) int {
	if cc.next.IsZero() {
		cc.observe(30*time.Millisecond, nil) // the first sample only sets the baseline
	}
	cc.started(cc.Limit())
	clk.t = clk.t.Add(10 * time.Millisecond)
	for range minWindowSamples - 1 {
		cc.observe(0, err)
	}
	clk.t = clk.t.Add(time.Second)
	cc.observe(0, err)
	return cc.Limit()
}

func TestConcurrencyGrowsWhileLatencyHolds(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 100)
	if got := cc.Limit(); got != adaptiveStart {
		t.Fatalf("start: limit %d, want %d", got, adaptiveStart)
	}
	// Slow start: it doubles each window while latency is flat, up to the
	// ceiling and never past it.
	want := []int{8, 16, 32, 64, 100, 100, 100}
	for i, w := range want {
		if got := window(cc, clk, 30*time.Millisecond, true, nil); got != w {
			t.Fatalf("flat latency, window %d: limit %d, want %d", i+1, got, w)
		}
	}
}

func TestConcurrencyGrowsOnlyWhenReached(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 0)
	for i := range 5 {
		if got := window(cc, clk, 30*time.Millisecond, false, nil); got != adaptiveStart {
			t.Fatalf("window %d without the limit reached: limit %d, want it to stay %d", i+1, got, adaptiveStart)
		}
	}
}

func TestConcurrencyHalvesOn429And503(t *testing.T) {
	for _, err := range []error{err429, err503, err504} {
		cc, clk := newTestConcurrency(t, 0, 0)
		for range 4 {
			window(cc, clk, 30*time.Millisecond, true, nil)
		}
		before := cc.Limit() // 64 after slow start
		if got := refusedWindow(cc, clk, err); got != before/2 {
			t.Fatalf("%v: limit %d after a window of back pressure at %d, want %d", err, got, before, before/2)
		}
		// Slow start is over: latency holding adds one per window.
		if got := window(cc, clk, 30*time.Millisecond, true, nil); got != before/2+1 {
			t.Fatalf("%v: limit %d one window after halving to %d, want %d", err, got, before/2, before/2+1)
		}
	}
}

func TestConcurrencyCutsInProportionToBackPressure(t *testing.T) {
	for _, reached := range []bool{false, true} {
		cc, clk := newTestConcurrency(t, 0, 0)
		for range 4 {
			window(cc, clk, 30*time.Millisecond, true, nil)
		}
		before := cc.Limit() // 64 after slow start
		// One 429 among twenty answers: α = 1/20, a cut of 2.5%, not a
		// halving; a window that reached the limit also adds its one.
		mixedWindow(cc, clk, 30*time.Millisecond, reached, 19, err429)
		want := float64(before) * (1 - 1.0/40)
		if reached {
			want++
		}
		if got := cc.limit; math.Abs(got-want) > 1e-9 {
			t.Fatalf("one 429 in 20 answers at %d (limit reached: %v): limit %.2f, want %.2f", before, reached, got, want)
		}
		if cc.slowStart {
			t.Fatalf("one 429 in 20 answers: still in slow start, want it over after a cut")
		}
	}
	// Random refusals of a fixed share (one in twenty answers, twenty
	// answers a window) hold the pool where the cut and the growth of
	// one balance, 2/α = 40, not near the floor.
	cc, clk := newTestConcurrency(t, 0, 0)
	for range 200 {
		mixedWindow(cc, clk, 30*time.Millisecond, true, 19, err429)
	}
	if got := cc.Limit(); got < 30 || got > 45 {
		t.Fatalf("200 windows of one 429 in twenty answers: limit %d, want it near 40", got)
	}
}

func TestConcurrencyIgnoresOtherFailures(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 0)
	window(cc, clk, 30*time.Millisecond, true, nil)
	before := cc.Limit()
	if got := window(cc, clk, 30*time.Millisecond, false, err500); got != before {
		t.Fatalf("a 500 (not back pressure): limit %d, want it to stay %d", got, before)
	}
}

func TestConcurrencyHalvesOnLatencyJump(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 0)
	for range 4 {
		window(cc, clk, 30*time.Millisecond, true, nil)
	}
	before := cc.Limit()
	// A little noise is not a jump.
	if got := window(cc, clk, 33*time.Millisecond, true, nil); got <= before {
		t.Fatalf("latency 30 -> 33 ms: limit %d, want it to grow from %d", got, before)
	}
	before = cc.Limit()
	// One slow window may be a stall: the limit holds; a second halves it.
	if got := window(cc, clk, 90*time.Millisecond, true, nil); got != before {
		t.Fatalf("latency 33 -> 90 ms for one window: limit %d, want it held at %d", got, before)
	}
	if got := window(cc, clk, 90*time.Millisecond, true, nil); got != before/2 {
		t.Fatalf("latency 33 -> 90 ms for two windows: limit %d, want %d (half of %d)", got, before/2, before)
	}
	// Calls that began before the decrease do not count against the new
	// limit; the new latency becomes the baseline, and the limit grows again.
	after := cc.Limit()
	for range 3 {
		window(cc, clk, 90*time.Millisecond, true, nil)
	}
	if got := cc.Limit(); got <= after {
		t.Fatalf("latency steady at 90 ms after the halving: limit %d, want it to grow from %d", got, after)
	}
}

func TestConcurrencyStallIsNotAJump(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 0)
	for range 4 {
		window(cc, clk, 30*time.Millisecond, true, nil)
	}
	before := cc.Limit()
	// A stall of this process slows every call under way: one slow window,
	window(cc, clk, 90*time.Millisecond, true, nil)
	// then the calls that were stalled answer late in the next one, while
	// the calls begun since answer as fast as before.
	clk.t = clk.t.Add(10 * time.Millisecond)
	for range minWindowSamples {
		cc.observe(90*time.Millisecond, nil)
	}
	clk.t = clk.t.Add(30 * time.Millisecond)
	for range minWindowSamples - 1 {
		cc.observe(30*time.Millisecond, nil)
	}
	clk.t = clk.t.Add(time.Second)
	cc.observe(30*time.Millisecond, nil)
	if got := cc.Limit(); got < before {
		t.Fatalf("one stall seen by the calls of two windows: limit %d, want it held at %d at least", got, before)
	}
}

func TestConcurrencyNeverBelowFloor(t *testing.T) {
	cc, clk := newTestConcurrency(t, 0, 0)
	for i := range 10 {
		if got := refusedWindow(cc, clk, err429); got < adaptiveFloor {
			t.Fatalf("429s, window %d: limit %d, below the floor %d", i+1, got, adaptiveFloor)
		}
	}
	if got := cc.Limit(); got != adaptiveFloor {
		t.Fatalf("after ten windows of 429s: limit %d, want the floor %d", got, adaptiveFloor)
	}
	// From the floor it grows again, by one.
	if got := window(cc, clk, 30*time.Millisecond, true, nil); got != adaptiveFloor+1 {
		t.Fatalf("latency holding at the floor: limit %d, want %d", got, adaptiveFloor+1)
	}
}

func TestConcurrencyFixed(t *testing.T) {
	cc, clk := newTestConcurrency(t, 16, 0)
	for _, err := range []error{nil, err429, nil} {
		if got := window(cc, clk, 30*time.Millisecond, true, err); got != 16 {
			t.Fatalf("fixed --workers 16, call error %v: limit %d, want 16", err, got)
		}
	}
	cc, clk = newTestConcurrency(t, 0, 3)
	for range 5 {
		if got := window(cc, clk, 30*time.Millisecond, true, nil); got > 3 {
			t.Fatalf("ceiling 3 below the start: limit %d", got)
		}
	}
}
