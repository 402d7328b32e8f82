package main

import (
	"context"
	"errors"
	"sync"
)

// probes answers /healthz and /readyz from the moment --metrics-addr is
// bound, before the API is reached: a liveness probe must not restart a
// daemon that is only waiting for an API outage to end (Kubernetes), so
// /healthz says ok while the sync is being built, and /readyz says what it
// waits for. Once the engine runs, the sync's own checks answer.
type probes struct {
	mu      sync.Mutex
	waiting string       // what readiness waits for until the sync runs
	healthy func() error // the running sync's checks; nil until then
	ready   func() error
}

func newProbes() *probes {
	return &probes{waiting: "starting"}
}

// wait records what readiness waits for while the sync is not running.
func (p *probes) wait(what string) {
	p.mu.Lock()
	p.waiting = what
	p.mu.Unlock()
}

// running hands the answers to the running sync's checks.
func (p *probes) running(healthy, ready func() error) {
	p.mu.Lock()
	p.healthy, p.ready = healthy, ready
	p.mu.Unlock()
}

// checks are the handlers' view of p.
func (p *probes) checks() healthChecks {
	return healthChecks{
		healthy: func() error {
			p.mu.Lock()
			check := p.healthy
			p.mu.Unlock()
			if check == nil {
				return nil // alive: building the sync, or waiting for the API
			}
			return check()
		},
		ready: func() error {
			p.mu.Lock()
			check, waiting := p.ready, p.waiting
			p.mu.Unlock()
			if check == nil {
				return errors.New(waiting)
			}
			return check()
		},
	}
}

// startMetrics serves /metrics, /healthz and /readyz on the bound
// --metrics-addr listener until close.
func (s *syncer) startMetrics() {
	ln := s.metricsLn
	s.metricsLn = nil // owned by serveMetrics now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.metricsStop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		if err := serveMetrics(ctx, ln, newMetricsMux(s.reg, s.probes.checks())); err != nil {
			s.g.log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	s.g.log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics, /healthz and /readyz")
}
