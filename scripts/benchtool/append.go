// The growing-JSONL figures (issue 15, design.md rules 12-13): the lag
// from a line appended to a .jsonl to its trace on the server, tracesync's
// CPU per 1,000 appended lines, and the CPU of an append to a large file
// against one to a small file. Every line carries a unique id, so each run
// also counts the server's traces line by line: every line exactly once.

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tracesync/tracesync/client"
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

func salt() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writePrepared writes a valid .jsonl of about size bytes (whole lines of
// prepLine bytes, so size rounded up to a line) and returns its line count.
// One template line is rewritten in place per line: 1 GiB takes seconds.
func writePrepared(path string, size int64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	head := `{"id":"b` + salt() + `-`
	const digits = 9
	tmpl := []byte(head + strings.Repeat("0", digits) + `","pad":"`)
	tmpl = append(tmpl, bytes.Repeat([]byte("x"), prepLine-len(tmpl)-3)...)
	tmpl = append(tmpl, `"}`+"\n"...)
	w := bufio.NewWriterSize(f, 1<<20)
	n := 0
	for written := int64(0); written < size; written += int64(len(tmpl)) {
		id := strconv.Itoa(n)
		copy(tmpl[len(head):len(head)+digits], strings.Repeat("0", digits-len(id))+id)
		if _, err := w.Write(tmpl); err != nil {
			f.Close()
			return 0, err
		}
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

// writtenLine is one appended line: its id and when it was written.
type writtenLine struct {
	id string
	at time.Time
}

// writer appends n lines to a file it keeps open (O_APPEND, one write per
// line, as an agent's logger does), one every `every`, in a goroutine.
type writer struct {
	n     int
	every time.Duration
	mu    sync.Mutex
	lines []writtenLine
	done  bool
	err   error
	fin   chan struct{}
}

func startWriter(path, prefix string, n int, every time.Duration, size int) *writer {
	w := &writer{n: n, every: every, lines: make([]writtenLine, 0, n), fin: make(chan struct{})}
	go func() {
		defer close(w.fin)
		err := w.write(path, prefix, size)
		w.mu.Lock()
		w.done, w.err = true, err
		w.mu.Unlock()
	}()
	return w
}

func (w *writer) write(path, prefix string, size int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	for i := range w.n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * w.every)))
		id := fmt.Sprintf("%s%06d", prefix, i)
		at := time.Now()
		if _, err := f.Write(makeLine(id, at, size)); err != nil {
			return err
		}
		w.mu.Lock()
		w.lines = append(w.lines, writtenLine{id, at})
		w.mu.Unlock()
	}
	return nil
}

// written returns the ids written so far and whether the writer is done.
func (w *writer) written() (bool, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		return false, nil
	}
	return true, ids(w.lines)
}

// result waits for the writer and returns every line it wrote.
func (w *writer) result() ([]writtenLine, error) {
	<-w.fin
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines, w.err
}

// makeLine is one JSON line of about size bytes: its id, its write time
// and padding.
func makeLine(id string, at time.Time, size int) []byte {
	b := fmt.Appendf(nil, `{"id":%q,"written_unix_nano":%d,"pad":"`, id, at.UnixNano())
	if pad := size - len(b) - 3; pad > 0 {
		b = append(b, bytes.Repeat([]byte("x"), pad)...)
	}
	return append(b, `"}`+"\n"...)
}

func ids(lines []writtenLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.id
	}
	return out
}

func allArrived(ids []string, count map[string]int) bool {
	for _, id := range ids {
		if count[id] == 0 {
			return false
		}
	}
	return true
}

// lineTally compares the lines written with the traces on the server.
type lineTally struct {
	written   int      // lines written
	arrived   int      // of those, lines with at least one trace
	dupLines  int      // lines with more than one trace
	dupTraces int      // traces beyond the first of each line
	missing   int      // lines with no trace
	other     int      // traces of no written line (earlier lines sent again, or no id)
	examples  []string // a few missing and duplicated ids
}

func (t lineTally) String() string {
	s := fmt.Sprintf("%d lines written, %d on the server", t.written, t.arrived)
	if t.dupLines == 0 && t.missing == 0 && t.other == 0 {
		return s + ", each exactly once"
	}
	var bad []string
	if t.missing > 0 {
		bad = append(bad, fmt.Sprintf("%d MISSING", t.missing))
	}
	if t.dupLines > 0 {
		bad = append(bad, fmt.Sprintf("%d DUPLICATED (%d extra traces)", t.dupLines, t.dupTraces))
	}
	if t.other > 0 {
		bad = append(bad, fmt.Sprintf("%d OTHER traces (earlier lines sent again)", t.other))
	}
	s += ": " + strings.Join(bad, ", ")
	if len(t.examples) > 0 {
		s += " (e.g. " + strings.Join(t.examples, ", ") + ")"
	}
	return s
}

// tallyLines counts, for the written ids, how many traces the server holds
// of each (count: id -> traces; "" for traces without an id).
func tallyLines(written []string, count map[string]int) lineTally {
	t := lineTally{written: len(written)}
	mine := make(map[string]bool, len(written))
	for _, id := range written {
		mine[id] = true
		switch n := count[id]; {
		case n == 0:
			t.missing++
			if len(t.examples) < 3 {
				t.examples = append(t.examples, id+" missing")
			}
		case n > 1:
			t.arrived++
			t.dupLines++
			t.dupTraces += n - 1
			if len(t.examples) < 3 {
				t.examples = append(t.examples, fmt.Sprintf("%s x%d", id, n))
			}
		default:
			t.arrived++
		}
	}
	for id, n := range count {
		if !mine[id] {
			t.other += n
		}
	}
	return t
}

// lags returns, in ms, each written line's first created_at minus its write
// time, for the lines that arrived.
func lags(written []writtenLine, first map[string]time.Time) []float64 {
	var out []float64
	for _, l := range written {
		if c, ok := first[l.id]; ok {
			out = append(out, float64(c.Sub(l.at).Microseconds())/1000)
		}
	}
	return out
}

// tracker follows what the server holds, source (upload name) by source:
// a source's traces are read once when it appears (stratix-fake creates
// all the traces of one create at once), and each trace's "id" is counted
// with its earliest created_at. Reading only new sources keeps a poll
// cheap while the server already holds a large file's traces.
type tracker struct {
	api   *client.Client
	read  map[string]int       // source -> traces of it read (or skipped)
	count map[string]int       // line id -> traces holding it ("" : no id)
	first map[string]time.Time // line id -> earliest created_at
}

func newTracker(ctx context.Context, url string) (*tracker, error) {
	api, err := client.New(client.Config{BaseURL: url, APIKey: "bench-key", HTTPClient: &http.Client{Transport: client.NewTransport(), Timeout: 30 * time.Second}})
	if err != nil {
		return nil, err
	}
	if _, err := api.Discover(ctx); err != nil {
		return nil, err
	}
	return &tracker{api: api, read: map[string]int{}, count: map[string]int{}, first: map[string]time.Time{}}, nil
}

// total is the number of traces the server holds.
func (t *tracker) total(ctx context.Context) (int, error) {
	res, err := t.api.List(ctx, client.ListOptions{PageSize: 1})
	return res.TotalCount, err
}

// skipExisting marks every trace the server holds now as read without
// reading it: what was there before a measurement is not counted.
func (t *tracker) skipExisting(ctx context.Context) error {
	srcs, err := t.api.Sources(ctx)
	if err != nil {
		return err
	}
	for _, src := range srcs {
		res, err := t.api.List(ctx, client.ListOptions{Source: src, PageSize: 1})
		if err != nil {
			return err
		}
		t.read[src] = res.TotalCount
	}
	return nil
}

// poll reads the traces of the sources not seen before; with recheck, also
// the new traces of sources seen before (a second create under one name).
func (t *tracker) poll(ctx context.Context, recheck bool) error {
	srcs, err := t.api.Sources(ctx)
	if err != nil {
		return err
	}
	for _, src := range srcs {
		if _, seen := t.read[src]; seen && !recheck {
			continue
		}
		if err := t.readSource(ctx, src); err != nil {
			return err
		}
	}
	return nil
}

// readSource reads the traces of src past those already read, oldest first.
func (t *tracker) readSource(ctx context.Context, src string) error {
	const size = 500
	from := t.read[src]
	page, skip := from/size+1, from%size
	for {
		res, err := t.api.List(ctx, client.ListOptions{Source: src, Page: page, PageSize: size, SortBy: "created_at", SortOrder: "asc"})
		if err != nil {
			return err
		}
		for _, tr := range res.Traces[min(skip, len(res.Traces)):] {
			id, _ := tr.Data["id"].(string)
			t.count[id]++
			if f, ok := t.first[id]; !ok || tr.CreatedAt.Before(f) {
				t.first[id] = tr.CreatedAt
			}
		}
		t.read[src] = max(t.read[src], (page-1)*size+len(res.Traces))
		if len(res.Traces) < size {
			return nil
		}
		page, skip = page+1, 0
	}
}

// daemon is a `tracesync run` under measurement.
type daemon struct {
	cmd  *exec.Cmd
	log  *logWatch
	gone chan struct{}
}

// startDaemon starts `tracesync run dir` with default flags: only the key,
// base URL, state directory and log settings, from the environment.
func startDaemon(c config, url, state, dir string) (*daemon, error) {
	cmd := exec.Command(c.tracesync, "run", dir)
	cmd.Env = env(c, url, state)
	d := &daemon{cmd: cmd, log: &logWatch{msgs: map[string]int{}}, gone: make(chan struct{})}
	cmd.Stderr = d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive benchtool
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tracesync run: %w", err)
	}
	go func() { _ = cmd.Wait(); close(d.gone) }()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.gone:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL if tracesync has not exited 40 s later
// (its --shutdown-timeout is 30 s).
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.gone:
	case <-time.After(40 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.gone
	}
}

// logWatch reads tracesync's JSON log (warnings and errors, as
// TRACESYNC_LOG_LEVEL=warn): it counts each distinct message and keeps the
// paths quarantined, and the last lines that were not JSON (a panic).
type logWatch struct {
	mu          sync.Mutex
	partial     []byte
	msgs        map[string]int // message -> times logged (at most maxMsgs distinct)
	order       []string
	quarantines map[string]string // path -> error
	nq          int               // quarantines logged
	lastQ       string            // the last one's error
	raw         []string
}

const maxMsgs = 20

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *logWatch) line(b []byte) {
	var e struct {
		Level   string `json:"level"`
		Message string `json:"message"`
		Path    string `json:"path"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		l.raw = append(l.raw, string(b))
		if len(l.raw) > 20 {
			l.raw = l.raw[1:]
		}
		return
	}
	if strings.HasPrefix(e.Message, "quarantined") && e.Path != "" {
		if l.quarantines == nil {
			l.quarantines = map[string]string{}
		}
		l.quarantines[e.Path] = e.Error
		l.nq, l.lastQ = l.nq+1, e.Error
	}
	key := e.Level + ": " + e.Message
	if _, ok := l.msgs[key]; !ok {
		if len(l.msgs) >= maxMsgs {
			return
		}
		l.order = append(l.order, key)
	}
	l.msgs[key]++
}

// quarantined returns the error of a quarantined path whose name contains name.
func (l *logWatch) quarantined(name string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, e := range l.quarantines {
		if strings.Contains(filepath.Base(p), name) {
			return e, true
		}
	}
	return "", false
}

// lastQuarantine returns how many quarantines tracesync logged and the last one's error.
func (l *logWatch) lastQuarantine() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nq, l.lastQ
}

// tail is the log's distinct messages and its last non-JSON lines.
func (l *logWatch) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, k := range l.order {
		fmt.Fprintf(&b, "      tracesync logged %dx %s\n", l.msgs[k], shorten(k, 200))
	}
	for _, r := range l.raw {
		fmt.Fprintf(&b, "      tracesync: %s\n", shorten(r, 200))
	}
	return b.String()
}

func printLogs(l *logWatch) {
	if l != nil {
		fmt.Print(l.tail())
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// threadsCPU is the on-CPU time of pid's live threads, from
// /proc/PID/task/*/schedstat (ns): finer than procCPU's 10 ms ticks, for an
// append figure of a few ticks. Threads that exited are not counted (Go's
// rarely exit). Falls back to procCPU when schedstat cannot be read.
func threadsCPU(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return procCPU(pid)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		sum += ns
	}
	if sum == 0 {
		return procCPU(pid)
	}
	return time.Duration(sum)
}
