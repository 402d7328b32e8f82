package main

import (
	"testing"
	"time"
)

// The daemon's first wait for an unreachable API starts from its own
// initial interval (1s, randomized by half), not backoff's 500ms default.
func TestConnectBackoffStartsAtOneSecond(t *testing.T) {
	for range 20 {
		bo := newConnectBackoff()
		if d := bo.NextBackOff(); d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("first wait %s, want 0.5s to 1.5s (1s randomized by half)", d)
		}
	}
}
