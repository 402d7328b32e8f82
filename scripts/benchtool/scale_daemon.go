package main

// scale_daemon.go owns the scale figure's daemon step (a first scan, idle,
// status and files through the control socket) and the helpers that run
// tracesync and read its output.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// scaleDaemon starts `tracesync run` over the tracked tree, waits for its
// first scan, lets it go quiet, measures it idle, times status and files
// through its control socket, and stops it.
func scaleDaemon(c config, t scaleTree, fake *scaleFake, state string, global []string) (daemonResult, error) {
	var d daemonResult
	args := append(append(append(global, "run"), c.scale.workerArgs()...), t.root)
	cmd := exec.Command(c.tracesync, args...)
	cmd.Env = append(env(c, fake.url, state), "TRACESYNC_LOG_LEVEL=info")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	lw := &logWatch{msgs: map[string]int{}}
	scanned := make(chan string, 1)
	cmd.Stdout = io.Discard
	cmd.Stderr = &lineTap{next: lw, match: func(line []byte) {
		if msg, ok := firstScanMessage(line); ok {
			select {
			case scanned <- msg:
			default:
			}
		}
	}}
	d.log = lw
	quiesce()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return d, fmt.Errorf("start tracesync run: %w", err)
	}
	gone := make(chan error, 1)
	go func() { gone <- cmd.Wait() }()
	pid := cmd.Process.Pid
	mw := watchMem(pid, 50*time.Millisecond)
	stop := func() {
		t0 := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-gone:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-gone
		}
		d.stopWall = time.Since(t0)
		d.peak, _ = mw.end()
	}
	timeout := max(10*time.Minute, time.Duration(t.files)*time.Millisecond)
	select {
	case d.scanLine = <-scanned:
		d.firstScan = time.Since(start)
	case err := <-gone:
		mw.end()
		return d, fmt.Errorf("tracesync run exited before its first scan was done: %v\n%s", err, lw.tail())
	case <-time.After(timeout):
		stop()
		return d, fmt.Errorf("tracesync run: no first scan within %s\n%s", timeout, lw.tail())
	}
	now := mw.sample()
	d.anonAfter = now.rssAnon
	d.scanPeak, _ = mw.peaks()
	d.scanLoad = loadAvg()

	// Quiet: the work queued behind the first scan (a prune, the
	// quarantined files) is done once a second passes with under 2% of a
	// CPU; at most a minute.
	q0 := time.Now()
	for time.Since(q0) < time.Minute {
		c0 := procCPU(pid)
		time.Sleep(time.Second)
		if procCPU(pid)-c0 < 20*time.Millisecond {
			break
		}
	}
	d.quietAfter = time.Since(q0)
	d.quietPeak, _ = mw.peaks()
	d.idle = c.scale.idle
	s0, c0 := ctxSwitches(pid), procCPU(pid)
	time.Sleep(d.idle)
	s1, c1 := ctxSwitches(pid), procCPU(pid)
	d.switchesPS = float64(s1-s0) / d.idle.Seconds()
	d.cpuPct = 100 * (c1 - c0).Seconds() / d.idle.Seconds()
	d.idleLoad = loadAvg()
	d.idlePeak, _ = mw.peaks()

	for range max(c.runs, 1) {
		el, out, err := timedTracesync(c, fake.url, state, "status")
		if err != nil {
			stop()
			return d, err
		}
		d.statusUp = append(d.statusUp, el)
		d.statusSrcUp = statusSource(out)
		el, out, err = timedTracesync(c, fake.url, state, "files", "--state", "quarantined")
		if err != nil {
			stop()
			return d, err
		}
		d.filesUp = append(d.filesUp, el)
		d.listedUp = tableRows(out)
	}
	stop()
	return d, nil
}

// lineTap passes every complete line written to it to match, and
// everything to next.
type lineTap struct {
	next    io.Writer
	match   func(line []byte)
	partial []byte
}

func (l *lineTap) Write(p []byte) (int, error) {
	l.partial = eachLine(l.partial, p, l.match)
	return l.next.Write(p)
}

// firstScanMessage reports whether a JSON log line is the daemon's "every
// folder scanned" line ("watching 1 folder, N files (M unchanged since the
// last run)"), and returns its message.
func firstScanMessage(line []byte) (string, bool) {
	var e struct {
		Message   string `json:"message"`
		Files     *int   `json:"files"`
		Unchanged *int   `json:"unchanged"`
	}
	if json.Unmarshal(line, &e) != nil || e.Files == nil || e.Unchanged == nil {
		return "", false
	}
	return e.Message, strings.HasPrefix(e.Message, "watching ") || strings.HasPrefix(e.Message, "scanned ")
}

// runTracesync runs a tracesync subcommand to its end and returns its stdout.
func runTracesync(c config, url, state string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.tracesync, args...)
	cmd.Env = env(c, url, state)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("tracesync %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// timedTracesync is runTracesync with its wall time.
func timedTracesync(c config, url, state string, args ...string) (time.Duration, string, error) {
	start := time.Now()
	out, err := runTracesync(c, url, state, 10*time.Minute, args...)
	return time.Since(start), out, err
}

// parseCounts reads the "  name  N" lines of a backfill summary or of
// status: uploaded, unchanged, quarantined...
func parseCounts(out string) map[string]int {
	m := map[string]int{}
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if n, err := strconv.Atoi(strings.ReplaceAll(f[1], ",", "")); err == nil {
			m[f[0]] = n
		}
	}
	return m
}

// tableRows counts the rows of a `tracesync files` table, less its header.
func tableRows(out string) int {
	n := 0
	for line := range strings.Lines(out) {
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "STATE ") {
			n++
		}
	}
	return n
}

// statusSource is status's "Source:" line: whether a daemon answered.
func statusSource(out string) string {
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, "Source:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "no Source line"
}

// checkFirstCounts says what is off in a first backfill's summary.
func checkFirstCounts(t scaleTree, counts map[string]int) string {
	var bad []string
	if got, want := counts["uploaded"], t.files-t.invalid(); got != want {
		bad = append(bad, fmt.Sprintf("%d uploaded, want %d", got, want))
	}
	if got, want := counts["quarantined"], t.invalid(); got != want {
		bad = append(bad, fmt.Sprintf("%d quarantined, want %d", got, want))
	}
	return strings.Join(bad, "; ")
}

// countsLine is a summary's non-zero counts.
func countsLine(counts map[string]int) string {
	var parts []string
	for _, k := range []string{"uploaded", "linked", "unchanged", "skipped", "quarantined", "incomplete"} {
		if counts[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %s", thousands(counts[k]), k))
		}
	}
	if len(parts) == 0 {
		return "no counts in the summary"
	}
	return strings.Join(parts, ", ")
}

// printOtherLogs prints what tracesync logged besides the expected
// quarantines: retries, timeouts, errors.
func printOtherLogs(label string, l *logWatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.order {
		if strings.Contains(k, ": quarantined: ") || strings.HasPrefix(k, "info: ") {
			continue
		}
		fmt.Printf("[%s]   tracesync logged %dx %s\n", label, l.msgs[k], shorten(k, 240))
	}
	for _, r := range l.raw {
		if !strings.HasPrefix(r, "progress: ") { // backfill's line every 10 s
			fmt.Printf("[%s]   tracesync: %s\n", label, shorten(r, 240))
		}
	}
}

// iec formats bytes for people: 1.5 MiB.
func iec(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// fileSizes returns a file's apparent size and the space it takes on disk.
func fileSizes(file string) (apparent, disk int64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", file, err)
	}
	return st.Size, st.Blocks * 512, nil
}

func perFile(bytes int64, t scaleTree) float64 { return float64(bytes) / float64(t.files) }

func usPerFile(d time.Duration, t scaleTree) float64 {
	return float64(d.Nanoseconds()) / 1000 / float64(t.files)
}

// durations lists run times in the order they ran, separated by slashes.
func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(parts, " / ")
}

// eachLine appends p to partial, hands fn every complete line (without
// its newline), and returns what is left of the last, unfinished one.
func eachLine(partial, p []byte, fn func(line []byte)) []byte {
	partial = append(partial, p...)
	for {
		i := bytes.IndexByte(partial, '\n')
		if i < 0 {
			return partial
		}
		fn(partial[:i])
		partial = partial[i+1:]
	}
}
