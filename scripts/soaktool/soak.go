package main

// soak.go owns one soak run: the fake API and the daemon it starts, the
// load it drives, and the samples it writes.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// soak runs one soak and prints its figures. ok is false when a check
// failed; err is for a soak that could not run at all.
func soak(ctx context.Context, cfg config) (ok bool, err error) {
	root := filepath.Join(cfg.work, "folder")
	state := filepath.Join(cfg.work, "state")
	fakeData := filepath.Join(cfg.work, "fake-data")
	for _, d := range []string{root, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, err
		}
	}
	fmt.Printf("soak: seed %d, %s at %.0f ops/s, ~%d files, %d slow writers at most; work dir %s\n",
		cfg.seed, cfg.duration, cfg.rate, cfg.target, cfg.slowWriters, cfg.work)
	fmt.Printf("faults: fake --fail-rate %g (503) --rate-limit-rate %g (429, Retry-After %q) --latency %s; proxy cuts %g of forwarded chunks\n",
		cfg.failRate, cfg.rateLimitRate, cfg.retryAfter, cfg.latency, cfg.dropRate)

	// stratix-fake, with its faults.
	fakeLog, err := os.Create(filepath.Join(cfg.work, "fake.log"))
	if err != nil {
		return false, err
	}
	defer fakeLog.Close()
	fake, fakeURL, err := startFake(cfg, fakeData, fakeLog)
	if err != nil {
		return false, err
	}
	fakeStopped := false
	stopFake := func() error {
		if fakeStopped {
			return nil
		}
		fakeStopped = true
		_ = fake.Process.Signal(syscall.SIGTERM)
		return fake.Wait()
	}
	defer func() { _ = stopFake() }()

	// The proxy that drops connections, in front of the fake.
	u, err := url.Parse(fakeURL)
	if err != nil {
		return false, fmt.Errorf("stratix-fake's URL %q: %w", fakeURL, err)
	}
	proxy, err := startProxy(u.Host, cfg.dropRate, cfg.seed)
	if err != nil {
		return false, err
	}
	u.Host = proxy.Addr()
	proxyURL := u.String()
	proxyClosed := false
	defer func() {
		if !proxyClosed {
			_ = proxy.ln.Close() // connections end with the processes
		}
	}()

	// The daemon.
	metricsAddr, err := freeAddr()
	if err != nil {
		return false, err
	}
	daemonLog, err := os.Create(filepath.Join(cfg.work, "tracesync.log"))
	if err != nil {
		return false, err
	}
	defer daemonLog.Close()
	daemon := exec.Command(cfg.tracesync, "run", "--delete-on-remove",
		"--state-dir", state, "--base-url", proxyURL, "--metrics-addr", metricsAddr,
		"--workers", strconv.Itoa(cfg.workers), "--settle", cfg.settle.String(),
		"--rescan-interval", cfg.rescanInterval.String(), "--log-format", "json", "--log-level", "info", root)
	if cfg.profiles {
		daemon.Args = append(daemon.Args[:len(daemon.Args)-1], "--cpuprofile", filepath.Join(cfg.work, "tracesync.cpu.prof"),
			"--memprofile", filepath.Join(cfg.work, "tracesync.mem.prof"), root)
	}
	daemon.Env = daemonEnv()
	daemon.Stdout = daemonLog
	daemon.Stderr = daemonLog
	if err := daemon.Start(); err != nil {
		return false, fmt.Errorf("start tracesync: %w", err)
	}
	started := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	daemonDone := false
	defer func() {
		if !daemonDone {
			_ = daemon.Process.Kill()
			<-exited
		}
	}()
	metrics := &metricsReader{url: "http://" + metricsAddr, hc: &http.Client{Timeout: 5 * time.Second}}
	if err := metrics.waitReady(ctx, exited, 30*time.Second); err != nil {
		return false, err
	}
	fmt.Printf("stratix-fake at %s; tracesync pid %d uses it through the proxy, %s; metrics %s\n\n", fakeURL, daemon.Process.Pid, proxyURL, metricsAddr)

	samp := &sampler{pid: daemon.Process.Pid, start: started}
	sampCtx, stopSampling := context.WithCancel(ctx)
	sampDone := make(chan struct{})
	go func() { defer close(sampDone); samp.run(sampCtx, cfg.sample) }()
	defer func() { stopSampling(); <-sampDone }()

	// The producer, for cfg.duration.
	prod := newProducer(root, cfg.seed, cfg.rate, cfg.target, cfg.slowWriters)
	opsFile, err := os.Create(filepath.Join(cfg.work, "ops.log"))
	if err != nil {
		return false, err
	}
	defer opsFile.Close()
	ops := bufio.NewWriterSize(opsFile, 64<<10)
	defer ops.Flush()
	prod.opLog = ops
	if err := prod.setup(); err != nil {
		return false, err
	}
	runCtx, stopRun := context.WithTimeout(ctx, cfg.duration)
	defer stopRun()
	prodStart := time.Now()
	nextReport := prodStart.Add(30 * time.Second)
	progress := func(p *producer) {
		if time.Now().Before(nextReport) {
			return
		}
		nextReport = nextReport.Add(30 * time.Second)
		ss := samp.snapshot()
		line := fmt.Sprintf("  %4.1f min: %d ops, %d files, %d contents", time.Since(prodStart).Minutes(), p.tick, len(p.files), len(p.all))
		if len(ss) > 0 {
			last := ss[len(ss)-1]
			line += fmt.Sprintf("; daemon RSS %.1f MiB, %d fds", float64(last.rssKiB)/1024, last.fds)
		}
		if m, err := metrics.read(ctx); err == nil {
			line += fmt.Sprintf("; uploads %.0f, links %.0f, deletes %.0f, retries %.0f, queue %.0f",
				m["tracesync_uploads_total"], m["tracesync_links_total"], m.sum("tracesync_deletes_total"), m["tracesync_retries_total"], m["tracesync_queue_depth"])
		}
		fmt.Println(line)
	}
	prodErr := make(chan error, 1)
	go func() { prodErr <- prod.Run(runCtx, progress) }()
	select {
	case err := <-prodErr:
		if err != nil {
			return false, fmt.Errorf("producer: %w", err)
		}
	case err := <-exited:
		daemonDone = true
		stopRun()
		<-prodErr
		return false, fmt.Errorf("tracesync exited during the run (%v); see %s", err, daemonLog.Name())
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	prodTime := time.Since(prodStart)
	fmt.Printf("\nproducer stopped after %s and %d ops; waiting for the daemon to go quiet (at most %s) ...\n", prodTime.Round(time.Second), prod.tick, cfg.quietTimeout)

	quietStart := time.Now()
	quietErr := metrics.waitQuiet(ctx, exited, cfg.quietFor, cfg.quietTimeout)
	quietTook := time.Since(quietStart)
	samp.take()
	stopSampling()
	<-sampDone
	final, _ := metrics.read(ctx)
	if quietErr != nil {
		fmt.Printf("NOT QUIET: %v\n", quietErr)
	} else {
		fmt.Printf("quiet after %s (quiet for %s: nothing queued, in flight, pending, retrying or to delete; counters still)\n", (quietTook - cfg.quietFor).Round(100*time.Millisecond), cfg.quietFor)
	}

	// Stop the daemon (it must drain and exit 0), then look at the server.
	var daemonExit error
	if !daemonDone {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case daemonExit = <-exited:
		case <-time.After(90 * time.Second):
			_ = daemon.Process.Kill()
			daemonExit = fmt.Errorf("no exit within 90s of SIGTERM: killed (%v)", <-exited)
		}
		daemonDone = true
	}
	proxyClosed = true
	proxy.Close()

	var sv serverView
	if err := listLive(ctx, fakeURL, &sv); err != nil {
		return false, fmt.Errorf("list the server's traces: %w", err)
	}
	if err := stopFake(); err != nil {
		fmt.Printf("stratix-fake exit: %v\n", err)
	}
	if err := readDataLog(filepath.Join(fakeData, "traces.jsonl"), &sv); err != nil {
		return false, fmt.Errorf("read stratix-fake's data log: %w", err)
	}
	calls, callsErr := readFakeLog(fakeLog.Name())
	v := judge(prod.all, sv)
	states, statesErr := fileStates(ctx, cfg.tracesync, state)
	var mismatches []string
	folderFiles := 0
	if statesErr == nil {
		if mismatches, folderFiles, err = compareFolder(root, prod, states); err != nil {
			return false, fmt.Errorf("read the folder back: %w", err)
		}
	}

	// Figures.
	d := prod.did
	fmt.Printf("\n== producer (seed %d) ==\n", cfg.seed)
	fmt.Printf("operations %d in %s (%.1f/s); folders %d (%d made during the run)\n", prod.tick, prodTime.Round(time.Second), float64(prod.tick)/prodTime.Seconds(), len(prod.dirs), d.dirsMade)
	fmt.Printf("files written (temp + rename) %d, written slowly %d, renamed %d, moved %d, rewritten %d (%d in place), duplicated %d, deleted %d\n",
		d.written, d.slowWritten, d.renamed, d.moved, d.rewritten, d.inPlace, d.duplicated, d.deleted)
	fmt.Printf("distinct contents %d: %d present at the end (in %d files), %d gone\n", v.contents, v.present, len(prod.files), v.retired)

	fmt.Printf("\n== server ==\n")
	fmt.Printf("contents created %d, creates %d, traces created %d, traces deleted %d, live traces %d\n", v.uploaded, v.creates, sv.createdTotal, sv.deletedTotal, sv.liveTotal)
	fmt.Printf("retired contents deleted remotely %d (the rest were never uploaded: gone before they settled)\n", v.remoteDeleted)
	fmt.Printf("duplicates %d (contents created more than once; %d of them with traces live twice at the end), lost %d, undeleted %d, unexpected %d\n",
		v.duplicates, v.liveTwice, v.lost, v.undeleted, v.unexpected)
	fmt.Printf("deletes: %d of the %d traces ever created of gone contents deleted (%d contents)\n", v.deletedOK, v.toDelete, v.remoteDeleted+v.undeleted)

	fmt.Printf("\n== faults injected ==\n")
	if callsErr != nil {
		fmt.Printf("stratix-fake's calls unavailable: %v\n", callsErr)
	} else {
		fmt.Printf("stratix-fake answered %d calls (by endpoint, status×calls):\n%s", calls.total, calls)
		fmt.Printf("503 injected %d (%s); 429 injected %d (%s)\n", calls.status(503), calls.byStatus(503), calls.status(429), calls.byStatus(429))
	}

	fmt.Printf("\n== daemon ==\n")
	if final != nil {
		fmt.Printf("uploads %.0f, links %.0f, retries %.0f, failures %s, deletes %s, quarantined %s\n",
			final["tracesync_uploads_total"], final["tracesync_links_total"], final["tracesync_retries_total"],
			final.labelled("tracesync_upload_failures_total"), final.labelled("tracesync_deletes_total"), final.labelled("tracesync_quarantined_total"))
		fmt.Printf("files by state: %s\n", final.labelled("tracesync_files"))
	}
	fmt.Printf("proxy: %d connections, %d cut (%d by reset)\n", proxy.conns.Load(), proxy.drops.Load(), proxy.resets.Load())
	logs := scanLog(daemonLog.Name())
	fmt.Printf("log lines: %s; most frequent warnings/errors:\n", logs.levels)
	for _, t := range logs.top {
		fmt.Printf("  %6d  %s\n", t.n, t.msg)
	}
	fmt.Printf("exit after SIGTERM: %s\n", exitString(daemonExit))
	fmt.Printf("retried failures by cause: 503 %d, 429 %d, cut (no answer) %d, file changed %d, other %d; lost create answers recovered %d; uploads stopped before create (file changed) %d; pool paused %d times\n",
		logs.causes["503"], logs.causes["429"], logs.causes["cut"], logs.causes["changed"], logs.causes["other"], logs.recovered, logs.changed, logs.pauses)

	ss := samp.snapshot()
	rssOK, fdOK := true, true
	var res resources
	if len(ss) >= 2 {
		res = judgeResources(ss, steadyFrom(ss, prod.steadyAt, started))
		first, last := res.first, res.last
		mib := func(k int64) float64 { return float64(k) / 1024 }
		maxRSS := slices.MaxFunc(ss, func(a, b sample) int { return int(a.rssKiB - b.rssKiB) })
		maxFD := slices.MaxFunc(ss, func(a, b sample) int { return a.fds - b.fds })
		steady := "not judged: " + res.why
		if res.judged {
			steady = fmt.Sprintf("steady part, from %s", res.steadyFrom.Round(time.Second))
		}
		fmt.Printf("\n== RSS and fds (%d samples every %s over %s; %s) ==\n", len(ss), cfg.sample, last.at.Round(time.Second), steady)
		fmt.Printf("RSS   start %.1f MiB, end %.1f MiB, max %.1f MiB; slope %+.0f KiB/min (steady part %+.0f)\n",
			mib(first.rssKiB), mib(last.rssKiB), mib(maxRSS.rssKiB), res.rssKiBPerMin, res.rssKiBPerMinSteady)
		fmt.Printf("  of which anon (heap, stacks) start %.1f, end %.1f MiB; slope %+.0f KiB/min (steady part %+.0f); file-backed (binary, bbolt mmap) end %.1f MiB, steady part %+.0f KiB/min\n",
			mib(first.anonKiB), mib(last.anonKiB), res.anonKiBPerMin, res.anonKiBPerMinSteady, mib(last.fileKiB), res.fileKiBPerMinSteady)
		fmt.Printf("fds   start %d, end %d, max %d; slope %+.2f /min (steady part %+.2f)\n", first.fds, last.fds, maxFD.fds, res.fdPerMin, res.fdPerMinSteady)
		if res.judged {
			rssOK = cfg.maxRSSSlope == 0 || res.rssKiBPerMinSteady <= cfg.maxRSSSlope*1024
			fdOK = cfg.maxFDSlope == 0 || res.fdPerMinSteady <= cfg.maxFDSlope
		}
		if err := writeSamples(filepath.Join(cfg.work, "samples.csv"), ss); err != nil {
			fmt.Printf("samples.csv: %v\n", err)
		}
	}

	if len(v.problems) > 0 {
		fmt.Printf("\n== problems (first 25 of %d) ==\n", len(v.problems))
		for _, p := range v.problems[:min(25, len(v.problems))] {
			if p.content == nil {
				fmt.Printf("%-10s %s: %s\n", p.kind, p.id, p.detail)
				continue
			}
			fmt.Printf("%-10s %s (%s, %d traces, %d bytes): %s\n", p.kind, p.content.id, p.content.ext, p.content.traces, p.content.size, p.detail)
			for _, path := range p.content.paths {
				now := "gone"
				if c, held := prod.holds[path]; held && c == p.content {
					now = "holds it now"
				}
				st := "not tracked"
				if f, ok := states[filepath.Join(root, path)]; ok {
					st = f.String()
				}
				fmt.Printf("             path %q (%s), daemon state: %s\n", path, now, st)
			}
		}
		if statesErr != nil {
			fmt.Printf("(daemon states unavailable: %v)\n", statesErr)
		}
	}

	if len(mismatches) > 0 {
		fmt.Printf("\n== folder vs producer record and daemon store (first 25 of %d) ==\n", len(mismatches))
		for _, m := range mismatches[:min(25, len(mismatches))] {
			fmt.Println(m)
		}
	}

	fmt.Printf("\n== summary (seed %d, %s producer, %s) ==\n", cfg.seed, prodTime.Round(time.Second), cfg.duration)
	fmt.Print(summaryTable(cfg, prod.did, v, sv, calls, callsErr == nil, proxy, logs, final, res, len(prod.files)))

	fmt.Printf("\n== checks ==\n")
	slopeCheck := "steady part"
	if !res.judged {
		slopeCheck = "not judged (" + res.why + ")"
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"daemon went quiet", quietErr == nil},
		{"daemon exited 0 on SIGTERM", daemonExit == nil},
		{fmt.Sprintf("no duplicates (%d)", v.duplicates), v.duplicates == 0},
		{fmt.Sprintf("nothing lost (%d)", v.lost), v.lost == 0},
		{fmt.Sprintf("every removed content deleted (%d undeleted)", v.undeleted), v.undeleted == 0},
		{fmt.Sprintf("nothing unexpected (%d)", v.unexpected), v.unexpected == 0},
		{fmt.Sprintf("folder (%d files) matches the producer's record and the daemon's store (%d mismatches)", folderFiles, len(mismatches)), statesErr == nil && len(mismatches) == 0},
		{fmt.Sprintf("RSS slope, %s, <= %g MiB/min", slopeCheck, cfg.maxRSSSlope), rssOK},
		{fmt.Sprintf("fd slope, %s, <= %g /min", slopeCheck, cfg.maxFDSlope), fdOK},
	}
	ok = true
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark, ok = "FAIL", false
		}
		fmt.Printf("%s %s\n", mark, c.name)
	}
	if !ok {
		fmt.Printf("\nrepeat with: scripts/soak %s\n", strings.Join(cfg.args, " "))
	}
	return ok, nil
}

func slopeOf(ss []sample, from time.Duration, value func(sample) float64) float64 {
	return slopePerMinute(series(ss, from, value))
}

func exitString(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

// daemonEnv is the environment of tracesync: the fake's key, nothing that
// would point it elsewhere.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TRACESYNC_") || strings.HasPrefix(kv, "LAYERLENS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LAYERLENS_STRATIX_API_KEY="+apiKey)
}

// startFake starts stratix-fake with the faults of cfg and returns its base URL.
func startFake(cfg config, dataDir string, logTo io.Writer) (*exec.Cmd, string, error) {
	cmd := exec.Command(cfg.fake, "--addr", "127.0.0.1:0", "--api-key", apiKey, "--data-dir", dataDir,
		"--fail-rate", fmt.Sprint(cfg.failRate), "--rate-limit-rate", fmt.Sprint(cfg.rateLimitRate),
		"--retry-after", cfg.retryAfter, "--latency", cfg.latency.String(),
		"--log-level", "debug", "--log-format", "json") // debug: one line per call, for the fault counts
	cmd.Stderr = logTo
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start stratix-fake: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("read stratix-fake's URL: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, strings.TrimSpace(line), nil
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// writeSamples keeps the samples as CSV in the work dir (for a plot).
func writeSamples(name string, ss []sample) error {
	var b strings.Builder
	b.WriteString("seconds,rss_kib,anon_kib,file_kib,fds\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "%.1f,%d,%d,%d,%d\n", s.at.Seconds(), s.rssKiB, s.anonKiB, s.fileKiB, s.fds)
	}
	return os.WriteFile(name, []byte(b.String()), 0o644)
}
