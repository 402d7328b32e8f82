package main

// scale.go owns the scale figure (issue 19): an archive of many tiny files,
// first a baseline of 10,000, then the large one, each through a first
// backfill (files/s, anonymous RSS), the state's size before and after
// compaction, re-runs over the unchanged tree, a daemon's first scan and
// idle, and the status and quarantine listing on that state.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// scaleConfig is the scale figure's part of the flags.
type scaleConfig struct {
	files, dirs int    // the large tree
	baseFiles   int    // the baseline tree, with as many files a folder
	workers     string // backfill's and run's --workers; "default": none given
	idle        time.Duration
	keep        bool   // keep the generated trees and states
	profileDir  string // write tracesync's CPU and heap profiles of the large tree's runs here
	fakeGOGC    int    // stratix-fake's GOGC; 0 leaves the Go default
}

// workerArgs are tracesync's --workers flag, none for "default".
func (s scaleConfig) workerArgs() []string {
	if s.workers == "" || s.workers == "default" {
		return nil
	}
	return []string{"--workers", s.workers}
}

func (s scaleConfig) workersLabel() string {
	if args := s.workerArgs(); args != nil {
		return "--workers " + s.workers
	}
	return "tracesync's default --workers"
}

// scaleRun is one `tracesync backfill` of a scale tree.
type scaleRun struct {
	wall         time.Duration
	cpu, fakeCPU time.Duration
	mem          memStatus // peaks
	anonPeakAt   time.Duration
	samples      int
	counts       map[string]int // the summary's counts: uploaded, unchanged, quarantined...
	load         string
	log          *logWatch
}

// daemonResult is what `tracesync run` over a tracked tree measured.
type daemonResult struct {
	firstScan   time.Duration // start to the "watching ... files" line
	scanLine    string
	anonAfter   int64     // RssAnon right after the first scan, KiB
	scanPeak    memStatus // peaks until the first scan was done
	quietPeak   memStatus // peaks until it went quiet after the first scan
	idlePeak    memStatus // peaks until the end of the idle time
	peak        memStatus // peaks over its whole life, status and files calls included
	quietAfter  time.Duration
	idle        time.Duration
	switchesPS  float64
	cpuPct      float64
	scanLoad    string
	idleLoad    string
	statusUp    []time.Duration
	filesUp     []time.Duration
	statusSrcUp string
	listedUp    int
	stopWall    time.Duration
	log         *logWatch
}

// treeResult is every figure of one tree.
type treeResult struct {
	tree                     scaleTree
	gen                      time.Duration
	reused                   bool
	genLoad                  string
	backfills                []scaleRun
	after                    []scaleRun // the baseline's backfills again, after the large tree's runs
	apparent, disk           int64      // state file after the first backfill
	compApparent, compDisk   int64      // and after `tracesync state compact`
	compactWall              time.Duration
	compactOut, stateLoad    string
	reruns                   []scaleRun
	daemon                   daemonResult
	statusDown, filesDown    []time.Duration
	statusLoad               string
	listedDown, quarantinedN int
	fakePeak                 memStatus
}

// scaleRuns measures the baseline tree, then the large one, then the
// baseline's backfills again, and prints a summary.
func scaleRuns(c config) error {
	s := c.scale
	big := newScaleTree(c.work, s.files, s.dirs)
	baseDirs := max(1, min(s.baseFiles/big.perDir(), s.baseFiles))
	base := newScaleTree(c.work, s.baseFiles, baseDirs)
	fmt.Printf("scale: %s first as a baseline, then %s; %s; tracesync log level warn (info for run)\n", base.describe(), big.describe(), s.workersLabel())
	fmt.Printf("scale: the baseline's backfill is run %d times (RUNS) before the large tree and %d times after it, and its medians reported; the %s-file backfill, state compaction and daemon are run once per invocation; re-runs and status/files timings %d times each\n",
		c.runs, c.runs, thousands(big.files), c.runs)
	if c.scale.fakeGOGC > 0 {
		fmt.Printf("scale: stratix-fake runs with GOGC=%d\n", c.scale.fakeGOGC)
	}
	fmt.Printf("scale: RSS is sampled every 50 ms from /proc/PID/status: RssAnon (heap, stacks: what the issue counts), RssFile (bbolt's mmap of the state, the binary) and VmHWM (peak of both)\n")
	if err := checkRoom(c.work, base, big); err != nil {
		return err
	}
	if s.profileDir != "" {
		if err := os.MkdirAll(s.profileDir, 0o755); err != nil {
			return err
		}
		fmt.Printf("scale: profiles of the %s-file runs go to %s\n", thousands(big.files), s.profileDir)
	}
	fmt.Println()

	var results []treeResult
	for _, t := range []scaleTree{base, big} {
		profile := ""
		if t == big {
			profile = s.profileDir
		}
		runs := c.runs
		if t == big {
			runs = 1
		}
		r, err := measureTree(c, t, runs, profile)
		results = append(results, r)
		// The baseline tree stays for its runs after the large one, unless
		// this run ends here.
		if !s.keep && (t == big || err != nil) {
			if rmErr := t.remove(); rmErr != nil && err == nil {
				err = rmErr
			}
		}
		if err != nil {
			if !s.keep && t == big {
				_ = base.remove()
			}
			return fmt.Errorf("scale, %s files: %w", thousands(t.files), err)
		}
		fmt.Println()
	}
	// The machine's speed drifts over the large tree's minutes: the
	// baseline runs again after it, and the ratio is also taken against
	// the median of all its runs, before and after.
	state := scaleStateDir(c.work, base)
	after, fake, err := firstBackfills(c, base, state, c.runs, "", "baseline again")
	if fake != nil {
		fake.stop()
	}
	results[0].after = after
	if !s.keep {
		_ = os.RemoveAll(state)
		if rmErr := base.remove(); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	if err != nil {
		return fmt.Errorf("scale, %s files, the baseline again: %w", thousands(base.files), err)
	}
	fmt.Println()
	printScaleSummary(results)
	if s.keep {
		fmt.Printf("\nthe trees are kept for the next run (-keep or BENCH_DIR): %s, %s\n", base.root, big.root)
	}
	return nil
}

// checkRoom refuses to start generating trees that would not fit: a tiny
// file takes a whole block.
func checkRoom(work string, trees ...scaleTree) error {
	var st unix.Statfs_t
	if err := unix.Statfs(work, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", work, err)
	}
	free := int64(st.Bavail) * st.Bsize
	var need, inodes int64
	for _, t := range trees {
		if b, err := os.ReadFile(t.marker()); err == nil && string(b) == t.markerText() {
			continue // reused
		}
		need += int64(t.files)*int64(st.Bsize) + int64(t.dirs)*int64(st.Bsize)
		inodes += int64(t.files + t.dirs)
	}
	need += 2 << 30 // the states and their compacted copies
	fmt.Printf("scale: %s free in %s, %d inodes; the trees to generate need about %s and %d inodes, plus the states\n",
		iec(free), work, st.Ffree, iec(need), inodes)
	if free < need || st.Ffree < uint64(inodes) {
		return fmt.Errorf("not enough room in %s for the scale trees: set BENCH_DIR to a bigger file system or lower -scale-files", work)
	}
	return nil
}

// measureTree runs every step on one tree. backfillRuns fresh backfills
// are timed; the last one's state and stratix-fake serve the later steps,
// since the state belongs to the API it was built against.
func measureTree(c config, t scaleTree, backfillRuns int, profileDir string) (treeResult, error) {
	r := treeResult{tree: t}
	label := thousands(t.files)
	start := time.Now()
	reused, err := t.ensure()
	if err != nil {
		return r, fmt.Errorf("generate %s: %w", t.root, err)
	}
	r.gen, r.reused, r.genLoad = time.Since(start), reused, loadAvg()
	how := "generated"
	if reused {
		how = "reused (complete, same shape, from an earlier run)"
	}
	fmt.Printf("[%s] tree %s: %s in %s (load %s)\n", label, t.root, how, r.gen.Round(time.Millisecond), r.genLoad)

	state := scaleStateDir(c.work, t)
	var fake *scaleFake
	defer func() {
		if fake != nil {
			fake.stop()
		}
		if !c.scale.keep {
			_ = os.RemoveAll(state)
		}
	}()

	// 1. First backfills, each on a fresh state and a fresh stratix-fake.
	if r.backfills, fake, err = firstBackfills(c, t, state, backfillRuns, profileDir, "backfill"); err != nil {
		return r, err
	}

	// 2. The state: bytes per tracked file, then compacted.
	file := filepath.Join(state, "state.db")
	if r.apparent, r.disk, err = fileSizes(file); err != nil {
		return r, err
	}
	start = time.Now()
	out, err := runTracesync(c, fake.url, state, 30*time.Minute, "state", "compact")
	r.compactWall = time.Since(start)
	if err != nil {
		return r, err
	}
	r.compactOut = strings.TrimSpace(out)
	if r.compApparent, r.compDisk, err = fileSizes(file); err != nil {
		return r, err
	}
	r.stateLoad = loadAvg()
	fmt.Printf("[%s] state after the backfill: %s apparent (%.0f B a file), %s on disk (%.0f B a file); `state compact` in %s: %s apparent (%.0f B a file), %s on disk (%.0f B a file) (load %s)\n",
		label, iec(r.apparent), perFile(r.apparent, t), iec(r.disk), perFile(r.disk, t), r.compactWall.Round(time.Millisecond),
		iec(r.compApparent), perFile(r.compApparent, t), iec(r.compDisk), perFile(r.compDisk, t), r.stateLoad)
	fmt.Printf("[%s]   tracesync: %s\n", label, r.compactOut)

	// 3. Re-runs over the unchanged tree.
	reruns := max(c.runs, 1)
	for i := range reruns {
		var prof []string
		if profileDir != "" && i == reruns-1 {
			prof = []string{"--cpuprofile", filepath.Join(profileDir, "rerun.cpu.pprof")}
		}
		b, err := scaleBackfill(c, t, fake, state, prof)
		if err != nil {
			return r, err
		}
		r.reruns = append(r.reruns, b)
		note := ""
		if i == 0 {
			note = " (the first re-run warms the page cache)"
		}
		fmt.Printf("[%s] re-run %d/%d%s: %s, %.2f µs a file; peak RssAnon %s (at %s), RssFile %s, VmHWM %s; CPU %.2fs; %s (load %s)\n",
			label, i+1, reruns, note, b.wall.Round(time.Millisecond), usPerFile(b.wall, t), mib(b.mem.rssAnon), b.anonPeakAt.Round(100*time.Millisecond), mib(b.mem.rssFile), mib(b.mem.vmHWM), b.cpu.Seconds(), countsLine(b.counts), b.load)
		if b.counts["unchanged"] != t.files-t.invalid() {
			fmt.Printf("[%s]   UNEXPECTED: %d unchanged, want %d\n", label, b.counts["unchanged"], t.files-t.invalid())
		}
		printOtherLogs(label, b.log)
	}

	// 4. The daemon over the tracked tree: first scan, then idle.
	var prof []string
	if profileDir != "" {
		prof = []string{"--cpuprofile", filepath.Join(profileDir, "run.cpu.pprof"), "--memprofile", filepath.Join(profileDir, "run.heap.pprof")}
	}
	if r.daemon, err = scaleDaemon(c, t, fake, state, prof); err != nil {
		return r, err
	}
	d := r.daemon
	fmt.Printf("[%s] run: first scan done in %s (%.2f µs a file): %s; RssAnon right after %s, peak until then %s (RssFile %s, VmHWM %s) (load %s)\n",
		label, d.firstScan.Round(time.Millisecond), usPerFile(d.firstScan, t), d.scanLine, mib(d.anonAfter), mib(d.scanPeak.rssAnon), mib(d.scanPeak.rssFile), mib(d.scanPeak.vmHWM), d.scanLoad)
	fmt.Printf("[%s] run: quiet %s after the first scan (peak RssAnon until then %s); then over %s idle: %.1f context switches/s (all threads), %.3f%% of a CPU; peak RssAnon by the end of idle %s; over its life, status and files included, %s, VmHWM %s (load %s)\n",
		label, d.quietAfter.Round(100*time.Millisecond), mib(d.quietPeak.rssAnon), d.idle, d.switchesPS, d.cpuPct, mib(d.idlePeak.rssAnon), mib(d.peak.rssAnon), mib(d.peak.vmHWM), d.idleLoad)
	fmt.Printf("[%s] run up (through its control socket, %s): status median %s, files --state quarantined median %s (%d rows); stopped (SIGTERM) in %s\n",
		label, d.statusSrcUp, medianDuration(d.statusUp).Round(time.Millisecond), medianDuration(d.filesUp).Round(time.Millisecond), d.listedUp, d.stopWall.Round(time.Millisecond))
	printOtherLogs(label, d.log)

	// 5. status and files with no daemon.
	for range max(c.runs, 1) {
		el, out, err := timedTracesync(c, fake.url, state, "status")
		if err != nil {
			return r, err
		}
		r.statusDown = append(r.statusDown, el)
		r.quarantinedN = parseCounts(out)["quarantined"]
		el, out, err = timedTracesync(c, fake.url, state, "files", "--state", "quarantined")
		if err != nil {
			return r, err
		}
		r.filesDown = append(r.filesDown, el)
		r.listedDown = tableRows(out)
	}
	r.statusLoad = loadAvg()
	fmt.Printf("[%s] daemon stopped: status %s (median %s; says %d quarantined), files --state quarantined %s (median %s; %d rows, want %d) (load %s)\n",
		label, durations(r.statusDown), medianDuration(r.statusDown).Round(time.Millisecond), r.quarantinedN,
		durations(r.filesDown), medianDuration(r.filesDown).Round(time.Millisecond), r.listedDown, t.invalid(), r.statusLoad)
	r.fakePeak, _ = readMemStatus(fake.pid)
	fmt.Printf("[%s] stratix-fake at the end: VmHWM %s\n", label, mib(r.fakePeak.vmHWM))
	return r, nil
}

// scaleStateDir is where a tree's runs keep their state.
func scaleStateDir(work string, t scaleTree) string {
	return filepath.Join(work, fmt.Sprintf("scale-state-%d", t.files))
}

// firstBackfills runs n first backfills of t, each on a fresh state and a
// fresh stratix-fake, and prints each under the name what. The last run's
// fake is left running for the caller to stop (nil after an error).
func firstBackfills(c config, t scaleTree, state string, n int, profileDir, what string) ([]scaleRun, *scaleFake, error) {
	label := thousands(t.files)
	var runs []scaleRun
	var fake *scaleFake
	fail := func(err error) ([]scaleRun, *scaleFake, error) {
		if fake != nil {
			fake.stop()
		}
		return runs, nil, err
	}
	for i := range n {
		if fake != nil {
			fake.stop()
			fake = nil
		}
		if err := os.RemoveAll(state); err != nil {
			return fail(err)
		}
		var err error
		if fake, err = startScaleFake(c); err != nil {
			return fail(err)
		}
		var prof []string
		if profileDir != "" {
			prof = []string{"--cpuprofile", filepath.Join(profileDir, "backfill.cpu.pprof"), "--memprofile", filepath.Join(profileDir, "backfill.heap.pprof")}
		}
		b, err := scaleBackfill(c, t, fake, state, prof)
		if err != nil {
			return fail(err)
		}
		runs = append(runs, b)
		fmt.Printf("[%s] %s %d/%d: %s = %.0f files/s; peak RssAnon %s (at %s), peak RssFile %s, VmHWM %s (%d samples); CPU tracesync %.1fs (%.0f µs a file), stratix-fake %.1fs; %s (load %s)\n",
			label, what, i+1, n, b.wall.Round(time.Millisecond), float64(t.files)/b.wall.Seconds(), mib(b.mem.rssAnon), b.anonPeakAt.Round(time.Second), mib(b.mem.rssFile), mib(b.mem.vmHWM), b.samples,
			b.cpu.Seconds(), float64(b.cpu.Microseconds())/float64(t.files), b.fakeCPU.Seconds(), countsLine(b.counts), b.load)
		if msg := checkFirstCounts(t, b.counts); msg != "" {
			fmt.Printf("[%s]   UNEXPECTED: %s\n", label, msg)
		}
		printOtherLogs(label, b.log)
	}
	return runs, fake, nil
}

// scaleFake is the stratix-fake a tree's runs talk to.
type scaleFake struct {
	url  string
	pid  int
	cpu  func() time.Duration
	stop func()
}

func startScaleFake(c config) (*scaleFake, error) {
	var env []string
	if c.scale.fakeGOGC > 0 {
		env = append(env, "GOGC="+strconv.Itoa(c.scale.fakeGOGC))
	}
	cmd, url, last, err := launchFake(c.fake, c.latency, c.rateLimitRate, env...)
	if err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	stopped := false
	return &scaleFake{url: url, pid: pid, cpu: func() time.Duration { return procCPU(pid) }, stop: func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		<-last
	}}, nil
}

// scaleBackfill runs `tracesync [global...] backfill [--workers N] tree`
// against fake with state, sampling its memory.
func scaleBackfill(c config, t scaleTree, fake *scaleFake, state string, global []string) (scaleRun, error) {
	args := append(append(append(global, "backfill"), c.scale.workerArgs()...), t.root)
	ctx, cancel := context.WithTimeout(context.Background(), max(10*time.Minute, time.Duration(t.files)*10*time.Millisecond))
	defer cancel()
	cmd := exec.CommandContext(ctx, c.tracesync, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 45 * time.Second
	cmd.Env = env(c, fake.url, state)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive benchtool
	var stdout strings.Builder
	lw := &logWatch{msgs: map[string]int{}}
	cmd.Stdout, cmd.Stderr = &stdout, lw
	quiesce()
	fake0 := fake.cpu()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return scaleRun{}, fmt.Errorf("backfill %s: %w", t.root, err)
	}
	mw := watchMem(cmd.Process.Pid, 50*time.Millisecond)
	err := cmd.Wait()
	wall := time.Since(start)
	mem, n := mw.end()
	b := scaleRun{wall: wall, fakeCPU: fake.cpu() - fake0, mem: mem, anonPeakAt: mw.anonPeakAt(), samples: n, counts: parseCounts(stdout.String()), load: loadAvg(), log: lw}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		b.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Exit 1 with a summary: files were quarantined, as the tree means.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1 && strings.Contains(stdout.String(), "backfill done")) {
		return b, fmt.Errorf("backfill %s after %s: %w\n%s%s", t.root, wall.Round(time.Millisecond), err, stdout.String(), lw.tail())
	}
	return b, nil
}
