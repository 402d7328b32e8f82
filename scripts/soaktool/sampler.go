package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// sample is one reading of the daemon's memory and descriptors.
type sample struct {
	at      time.Duration // since the daemon started
	rssKiB  int64         // VmRSS
	anonKiB int64         // RssAnon: heap and stacks
	fileKiB int64         // RssFile: mapped files (the bbolt mmap, the binary)
	fds     int
}

// sampler reads /proc/PID/status and /proc/PID/fd every interval.
type sampler struct {
	pid   int
	start time.Time

	mu      sync.Mutex // guards samples
	samples []sample
}

// readSample reads one sample of pid now.
func readSample(pid int, since time.Time) (sample, error) {
	s := sample{at: time.Since(since)}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "VmRSS":
			dst = &s.rssKiB
		case "RssAnon":
			dst = &s.anonKiB
		case "RssFile":
			dst = &s.fileKiB
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) == 0 {
			continue
		}
		if *dst, err = strconv.ParseInt(string(f[0]), 10, 64); err != nil {
			return s, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	return s, nil
}

// run samples until ctx ends.
func (sp *sampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	sp.take()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sp.take()
		}
	}
}

// take records one sample (a process that is gone is not an error here:
// the caller notices the exit).
func (sp *sampler) take() {
	s, err := readSample(sp.pid, sp.start)
	if err != nil {
		return
	}
	sp.mu.Lock()
	sp.samples = append(sp.samples, s)
	sp.mu.Unlock()
}

// snapshot returns a copy of the samples so far.
func (sp *sampler) snapshot() []sample {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]sample(nil), sp.samples...)
}

// slopePerMinute is the least-squares slope of ys over xs (minutes).
// Fewer than two distinct x give 0.
func slopePerMinute(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

// series extracts (minutes, value) from the samples at or after from.
func series(ss []sample, from time.Duration, value func(sample) float64) (xs, ys []float64) {
	for _, s := range ss {
		if s.at < from {
			continue
		}
		xs = append(xs, s.at.Minutes())
		ys = append(ys, value(s))
	}
	return xs, ys
}
