package main

// metricsread.go owns reading the daemon's Prometheus metrics during a
// soak: sums, labelled values, readiness and a quiet queue.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metricsReader reads the daemon's Prometheus metrics.
type metricsReader struct {
	url string
	hc  *http.Client
}

// promValues are samples by name with labels, e.g. `tracesync_files{state="pending"}`.
type promValues map[string]float64

// sum adds every labelled sample of name.
func (m promValues) sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// labelled formats the labelled samples of name as `label=value ...`.
func (m promValues) labelled(name string) string {
	var parts []string
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, name+"{"); ok && v != 0 {
			lab := strings.TrimSuffix(rest, "}")
			if _, val, ok := strings.Cut(lab, "="); ok {
				lab = strings.Trim(val, `"`)
			}
			parts = append(parts, fmt.Sprintf("%s=%.0f", lab, v))
		}
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (r *metricsReader) read(ctx context.Context) (promValues, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	out := promValues{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// waitReady waits for /readyz to answer 200 (the first scan is queued).
func (r *metricsReader) waitReady(ctx context.Context, exited <-chan error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/readyz", nil)
		if resp, err := r.hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("tracesync exited at start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tracesync not ready within %s", limit)
		}
	}
}

// waitQuiet waits until the daemon has had nothing to do for quietFor:
// nothing queued, in flight, pending, retrying or to delete, and its
// upload, link, delete and failure counters unchanged.
func (r *metricsReader) waitQuiet(ctx context.Context, exited <-chan error, quietFor, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var since time.Time
	var lastKey string
	var last promValues
	for {
		m, err := r.read(ctx)
		if err == nil {
			last = m
			busy := m["tracesync_queue_depth"] + m["tracesync_uploads_in_flight"] + m["tracesync_deletes_pending"] +
				m[`tracesync_files{state="pending"}`] + m[`tracesync_files{state="retrying"}`]
			key := fmt.Sprint(m["tracesync_uploads_total"], m["tracesync_links_total"], m.sum("tracesync_deletes_total"),
				m.sum("tracesync_upload_failures_total"), m.sum("tracesync_quarantined_total"), m.labelled("tracesync_files"))
			switch {
			case busy > 0 || key != lastKey:
				since = time.Time{}
			case since.IsZero():
				since = time.Now()
			case time.Since(since) >= quietFor:
				return nil
			}
			lastKey = key
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still busy after %s: queue %.0f, in flight %.0f, deletes pending %.0f, files %s",
				limit, last["tracesync_queue_depth"], last["tracesync_uploads_in_flight"], last["tracesync_deletes_pending"], last.labelled("tracesync_files"))
		}
		select {
		case err := <-exited:
			return fmt.Errorf("tracesync exited while draining: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
