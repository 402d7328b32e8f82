// The growing-JSONL figures (issue 15, design.md rules 12-13): the lag
// from a line appended to a .jsonl to its trace on the server, tracesync's
// CPU per 1,000 appended lines, and the CPU of an append to a large file
// against one to a small file. Every line carries a unique id, so each run
// also counts the server's traces line by line: every line exactly once.

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The append figures' flags, registered here so main.go only calls appendRuns.
var (
	appendRate    = flag.Int("append-rate", 200, "append: lines per second the writer appends")
	appendSeconds = flag.Int("append-seconds", 60, "append: seconds the writer appends for")
	appendLine    = flag.Int("append-line", 1024, "append: bytes per appended line")
	appendWait    = flag.Duration("append-wait", 60*time.Second, "append: how long after its last write every line may take to reach the server before the run gives up on it")
	appendBig     = sizeFlag(1<<30, "append-big", "append: size of the large file an append is measured on, e.g. 1GiB, 64MiB")
)

const (
	appendSmall     = 1 << 20                // the small file of the append-cost pair
	appendCount     = 20                     // lines appended one by one in the append-cost figure
	appendEvery     = 100 * time.Millisecond // between those appends
	prepLine        = 4096                   // bytes per line of the prepared files
	pollEvery       = 100 * time.Millisecond // how often the server is asked what arrived
	lateGrace       = 3 * time.Second        // after the last line arrived, wait this long for late duplicates before the final count
	idleBeforeWrite = 2 * time.Second        // after the prepared file's traces arrived, before appending: tracesync's bookkeeping of that upload is not counted
	maxLagDefault   = 5 * time.Second        // --max-lag's default in issue 15: the lag target is this plus 1 s
)

// byteSizeValue is a size flag that takes 1GiB, 64MiB, 512KiB or bytes.
type byteSizeValue int64

func sizeFlag(def int64, name, usage string) *byteSizeValue {
	v := byteSizeValue(def)
	flag.Var(&v, name, usage)
	return &v
}

func (v *byteSizeValue) String() string { return humanSize(int64(*v)) }
func (v *byteSizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = byteSizeValue(n)
	return nil
}

// parseSize reads 1GiB, 64MiB, 512KiB, 1G, 64M or a plain number of bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive size such as 1GiB, 64MiB or 4096", s)
	}
	return n * mult, nil
}

// humanSize prints a size as GiB, MiB or KiB when it is a whole number of them.
func humanSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// appendRuns measures and prints the append figures, each the median of
// min(runs, 3) runs with every run shown.
func appendRuns(c config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *appendRate <= 0 || *appendSeconds <= 0 || *appendLine < 100 {
		return errors.New("-append-rate and -append-seconds must be positive and -append-line at least 100")
	}
	runs := min(c.runs, 3)
	lines := *appendRate * *appendSeconds
	big := int64(*appendBig)
	fmt.Printf("append: growing JSONL (issue 15), `tracesync run` with default flags, %d runs\n", runs)
	fmt.Printf("  lag: server's created_at (µs, same host clock) of a line's first trace minus the line's written_unix_nano;\n" +
		"       target p99 <= --max-lag + 1 s = 6 s at the default --max-lag 5s\n")
	fmt.Printf("  CPU per 1,000 lines: tracesync's user+sys (/proc/PID/stat, 10 ms ticks) from the first line written\n" +
		"       to the last line on the server (polled every 100 ms)\n")
	fmt.Printf("  append CPU: a file of each size is uploaded first; %s after its traces arrived, tracesync's on-CPU time\n"+
		"       (/proc/PID/task/*/schedstat) from just before %d lines appended %s apart to all of them on the server,\n"+
		"       idle time included; target: the same on %s as on %s within noise (rule 12)\n",
		idleBeforeWrite, appendCount, appendEvery, humanSize(big), humanSize(appendSmall))
	fmt.Printf("  lines: every line must be on the server exactly once; duplicates, missing lines and other traces\n" +
		"       (earlier lines sent again) are counted from the server's trace data\n")
	if time.Duration(*appendSeconds)*time.Second <= maxLagDefault+time.Second {
		fmt.Printf("  note: the writer appends for only %ds: even a daemon that waits for the file to go quiet meets the lag target\n", *appendSeconds)
	}
	if !hasFlag(c.tracesync, "--max-lag") {
		fmt.Printf("  note: this tracesync has no --max-lag flag (built before issue 15)\n")
	}
	fmt.Println()

	var p50s, p99s, maxs, cpuPerK []float64
	for i := range runs {
		r, err := lagRun(ctx, c, fmt.Sprintf("append-lag-%d", i), lines)
		if err != nil {
			return err
		}
		fmt.Printf("  lag run %d: %s\n", i+1, r.tally)
		if len(r.lags) > 0 {
			p50s, p99s, maxs = append(p50s, percentile(r.lags, 50)), append(p99s, percentile(r.lags, 99)), append(maxs, slices.Max(r.lags))
			fmt.Printf("      lag p50 %s, p99 %s, max %s", secs(p50s[len(p50s)-1]), secs(p99s[len(p99s)-1]), secs(maxs[len(maxs)-1]))
			if r.tally.missing > 0 {
				fmt.Printf(" (of the %d lines that arrived only)", r.tally.arrived)
			}
		} else {
			fmt.Printf("      no line arrived")
		}
		perK := ms(r.cpu) * 1000 / float64(lines)
		cpuPerK = append(cpuPerK, perK)
		fmt.Printf("; CPU %.2fs = %.1f ms per 1,000 lines%s\n", r.cpu.Seconds(), perK, r.note)
		printLogs(r.logs)
	}
	if len(p50s) > 0 {
		fmt.Printf("append lag, 1 writer, %d lines/s of %d B for %ds: median p50 %s, median p99 %s (target <= %s), median max %s\n",
			*appendRate, *appendLine, *appendSeconds, secs(median(p50s)), secs(median(p99s)), secs(float64((maxLagDefault + time.Second).Milliseconds())), secs(median(maxs)))
	} else {
		fmt.Printf("append lag: no line reached the server in any run\n")
	}
	fmt.Printf("append CPU: median %.1f ms per 1,000 lines\n\n", median(cpuPerK))

	var smallCPU, bigCPU []float64
	failed := false
	for i := range runs {
		var pair [2]costResult
		for k, size := range []int64{appendSmall, big} {
			r, err := costRun(ctx, c, fmt.Sprintf("append-cost-%d-%d", i, k), size)
			if err != nil {
				return err
			}
			pair[k] = r
			fmt.Printf("  append-cost run %d, %s file: %s\n", i+1, humanSize(size), r)
			printLogs(r.logs)
		}
		smallCPU, bigCPU = append(smallCPU, ms(pair[0].cpu)), append(bigCPU, ms(pair[1].cpu))
		fmt.Printf("  append-cost run %d: %s / %s = %s%s\n", i+1, humanSize(big), humanSize(appendSmall), ratio(ms(pair[1].cpu), ms(pair[0].cpu)), incomparable(pair))
		failed = failed || incomparable(pair) != ""
	}
	note := ""
	if failed {
		note = "; NOT COMPARABLE: in some run the appended lines did not arrive (see above)"
	}
	fmt.Printf("append of %d lines, tracesync CPU: median %.1f ms on %s, %.1f ms on %s; ratio %s (target ~1x, within noise)%s\n\n",
		appendCount, median(bigCPU), humanSize(big), median(smallCPU), humanSize(appendSmall), ratio(median(bigCPU), median(smallCPU)), note)
	return nil
}

// incomparable says why a run's two append CPU figures do not measure an
// append each: the appended lines did not all arrive, so the CPU is what
// tracesync used until the deadline. (Earlier lines sent again are part of
// what an append costs, and show in each run's line counts.)
func incomparable(pair [2]costResult) string {
	var why []string
	for _, r := range pair {
		if r.timedOut || r.why != "" || r.tally.missing > 0 {
			why = append(why, humanSize(r.size)+": appended lines did not arrive")
		}
	}
	if len(why) == 0 {
		return ""
	}
	return " (not a like-for-like ratio: " + strings.Join(why, "; ") + ")"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// secs prints milliseconds as seconds with 2 decimals.
func secs(msec float64) string { return fmt.Sprintf("%.2f s", msec/1000) }

func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", a/b)
}

// hasFlag tells whether `tracesync run --help` mentions flag.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "run", "--help").CombinedOutput()
	return bytes.Contains(out, []byte(name))
}

// lagResult is what one lag run measured.
type lagResult struct {
	tally lineTally
	lags  []float64     // ms from write to created, of each line that arrived
	cpu   time.Duration // tracesync's user+sys over the run
	note  string        // what went wrong, if anything
	logs  *logWatch
}

// lagRun starts the daemon on an empty folder, appends lines to one .jsonl
// at -append-rate for -append-seconds, and waits for every line on the server.
func lagRun(ctx context.Context, c config, name string, lines int) (lagResult, error) {
	url, _, stopFake, err := startFake(c)
	if err != nil {
		return lagResult{}, err
	}
	defer stopFake()
	dir, state := filepath.Join(c.work, name), filepath.Join(c.work, "state-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return lagResult{}, err
	}
	defer os.RemoveAll(dir)
	defer os.RemoveAll(state)
	quiesce()
	d, err := startDaemon(c, url, state, dir)
	if err != nil {
		return lagResult{}, err
	}
	defer d.stop()
	tr, err := newTracker(ctx, url)
	if err != nil {
		return lagResult{}, err
	}
	if err := sleepCtx(ctx, 500*time.Millisecond); err != nil { // the daemon's (empty) first scan
		return lagResult{}, err
	}

	cpu0 := procCPU(d.pid())
	w := startWriter(filepath.Join(dir, "agent.jsonl"), "l"+salt()+"-", lines, time.Second/time.Duration(*appendRate), *appendLine)
	res := lagResult{logs: d.log}
	deadline := time.Now().Add(time.Duration(*appendSeconds)*time.Second + *appendWait)
	cpu1, arrived, why, err := waitLines(ctx, tr, d, w, deadline, procCPU)
	if err != nil {
		return lagResult{}, err
	}
	res.cpu = cpu1 - cpu0
	switch {
	case why != "":
		res.note = fmt.Sprintf(" (gave up waiting: the file was %s; CPU up to then)", why)
	case !arrived:
		res.note = fmt.Sprintf(" (not every line arrived within %s of the last write: CPU up to then)", *appendWait)
	}
	written, werr := w.result()
	if werr != nil {
		return lagResult{}, werr
	}
	if arrived && sleepCtx(ctx, lateGrace) != nil {
		return lagResult{}, ctx.Err()
	}
	if err := tr.poll(ctx, true); err != nil {
		return lagResult{}, err
	}
	res.tally = tallyLines(ids(written), tr.count)
	res.lags = lags(written, tr.first)
	return res, nil
}

// costResult is what one append-cost run measured.
type costResult struct {
	size     int64
	prepNote string        // how the prepared file's upload went
	cpu      time.Duration // tracesync's CPU from before the appends to all on the server (or the deadline)
	tally    lineTally
	lags     []float64
	timedOut bool
	why      string // why the wait ended before the lines arrived, when it did not time out
	logs     *logWatch
}

func (r costResult) String() string {
	s := fmt.Sprintf("%s; append CPU %.1f ms; %s", r.prepNote, ms(r.cpu), r.tally)
	if len(r.lags) > 0 {
		s += fmt.Sprintf("; lag max %s", secs(slices.Max(r.lags)))
	}
	switch {
	case r.why != "":
		s += fmt.Sprintf("; DID NOT ARRIVE: the file was %s (CPU up to then)", r.why)
	case r.timedOut:
		s += fmt.Sprintf("; DID NOT ARRIVE within %s of the last append (CPU up to then)", *appendWait)
	}
	return s
}

// costRun writes a prepared .jsonl of size bytes, lets a fresh daemon
// upload it, then appends appendCount lines one at a time and measures
// tracesync's CPU until they are all on the server.
func costRun(ctx context.Context, c config, name string, size int64) (costResult, error) {
	res := costResult{size: size}
	url, _, stopFake, err := startFake(c)
	if err != nil {
		return res, err
	}
	defer stopFake()
	dir, state := filepath.Join(c.work, name), filepath.Join(c.work, "state-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	defer os.RemoveAll(state)
	path := filepath.Join(dir, "agent.jsonl")
	prepLines, err := writePrepared(path, size)
	if err != nil {
		return res, err
	}
	quiesce()
	d, err := startDaemon(c, url, state, dir)
	if err != nil {
		return res, err
	}
	defer d.stop()
	res.logs = d.log
	tr, err := newTracker(ctx, url)
	if err != nil {
		return res, err
	}

	// The prepared file first: wait for its traces (or its quarantine).
	prepWait := time.Minute + time.Duration(size/(10<<20))*time.Second // 10 MiB/s at the least
	start := time.Now()
	have, why, err := waitCount(ctx, tr, d, prepLines, "agent.jsonl", start.Add(prepWait))
	if err != nil {
		return res, err
	}
	switch {
	case have == prepLines:
		res.prepNote = fmt.Sprintf("prepared file (%d lines) uploaded in %s", prepLines, time.Since(start).Round(100*time.Millisecond))
	case why != "":
		res.prepNote = fmt.Sprintf("prepared file (%d lines) NOT uploaded: %s", prepLines, why)
	default:
		res.prepNote = fmt.Sprintf("prepared file: %d of %d lines on the server, did not arrive within %s", have, prepLines, prepWait)
	}
	if err := sleepCtx(ctx, idleBeforeWrite); err != nil {
		return res, err
	}
	if err := tr.skipExisting(ctx); err != nil {
		return res, err
	}

	cpu0 := threadsCPU(d.pid())
	w := startWriter(path, "a"+salt()+"-", appendCount, appendEvery, *appendLine)
	cpu1, arrived, why, err := waitLines(ctx, tr, d, w, time.Now().Add(appendCount*appendEvery+*appendWait), threadsCPU)
	if err != nil {
		return res, err
	}
	res.cpu, res.timedOut, res.why = cpu1-cpu0, !arrived && why == "", why
	written, err := w.result()
	if err != nil {
		return res, err
	}
	if arrived && sleepCtx(ctx, lateGrace) != nil {
		return res, ctx.Err()
	}
	if err := tr.poll(ctx, true); err != nil {
		return res, err
	}
	res.tally = tallyLines(ids(written), tr.count)
	res.lags = lags(written, tr.first)
	return res, nil
}

// waitLines polls the server every pollEvery until every line the writer
// wrote is there (true), tracesync quarantines a file once the writer is
// done (false, and why: the lines will not come), or the deadline passes
// (false), and returns tracesync's CPU as cpu reads it (procCPU or
// threadsCPU) at that moment.
func waitLines(ctx context.Context, tr *tracker, d *daemon, w *writer, deadline time.Time, cpu func(int) time.Duration) (time.Duration, bool, string, error) {
	cpuNow := func() time.Duration { return cpu(d.pid()) }
	q0, _ := d.log.lastQuarantine()
	for {
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return 0, false, "", err
		}
		if err := tr.poll(ctx, false); err != nil {
			return 0, false, "", err
		}
		done, wrote := w.written()
		if done && allArrived(wrote, tr.count) {
			return cpuNow(), true, "", nil
		}
		if n, why := d.log.lastQuarantine(); done && n > q0 {
			cpu := cpuNow()
			return cpu, false, "quarantined: " + why, tr.poll(ctx, false)
		}
		if d.exited() {
			return 0, false, "", fmt.Errorf("tracesync exited during the run:\n%s", d.log.tail())
		}
		if time.Now().After(deadline) {
			return cpuNow(), false, "", nil
		}
	}
}

// waitCount polls until the server holds want traces in all, the daemon
// logs that it quarantined a path containing name (returned as why), or the
// deadline passes; it returns the count it saw last.
func waitCount(ctx context.Context, tr *tracker, d *daemon, want int, name string, deadline time.Time) (int, string, error) {
	for {
		n, err := tr.total(ctx)
		if err != nil {
			return 0, "", err
		}
		if n >= want {
			return n, "", nil
		}
		if why, ok := d.log.quarantined(name); ok {
			return n, "quarantined: " + why, nil
		}
		if d.exited() {
			return 0, "", fmt.Errorf("tracesync exited during the run:\n%s", d.log.tail())
		}
		if time.Now().After(deadline) {
			return n, "", nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return 0, "", err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
