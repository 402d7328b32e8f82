// Command soaktool is the engine of scripts/soak: it runs the real
// `tracesync run --delete-on-remove` for a set time against stratix-fake
// with faults injected (503s, 429s with Retry-After and latency from the
// fake's flags; dropped and reset connections from a proxy of its own in
// front of the fake), while a seeded producer writes, slowly writes,
// renames, moves, rewrites, duplicates and deletes trace files at a steady
// rate. It samples the daemon's RSS and open file descriptors, waits for the
// daemon to go quiet, then checks the server against what the producer left
// in the folder:
//
//   - every content present in the folder has its traces, created once;
//   - no content was ever created twice (the fake's data log has every create);
//   - every content whose last path is gone has no live trace left;
//   - no trace the producer did not write (a partial file, say).
//
// It prints the figures and exits 1 when a check fails, 2 on bad flags.
// The producer's choices depend only on -seed (they are made per tick, not
// per wall-clock moment), so a failing run can be repeated with its seed;
// what the daemon sees in between depends on timing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// config is soaktool's command line.
type config struct {
	tracesync, fake string
	work            string

	duration     time.Duration
	seed         uint64
	rate         float64
	target       int
	slowWriters  int
	sample       time.Duration
	quietTimeout time.Duration
	quietFor     time.Duration

	workers        int
	settle         time.Duration
	rescanInterval time.Duration

	failRate      float64
	rateLimitRate float64
	retryAfter    string
	latency       time.Duration
	dropRate      float64

	maxRSSSlope float64
	maxFDSlope  float64
	profiles    bool

	args    []string // the command line, for the repeat hint
	seedSet bool     // -seed was given
}

const apiKey = "soak-key" // the key stratix-fake is started with; never printed

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("soaktool", flag.ContinueOnError)
	defDuration := 10 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("SOAK_DURATION=%q: %w (use e.g. 10m)", v, err)
		}
		defDuration = d
	}
	fs.StringVar(&c.tracesync, "tracesync", "", "tracesync binary")
	fs.StringVar(&c.fake, "fake", "", "stratix-fake binary")
	fs.StringVar(&c.work, "work", "", "scratch directory (folder, state, logs)")
	fs.DurationVar(&c.duration, "duration", defDuration, "how long the producer runs (default $SOAK_DURATION, else 10m)")
	fs.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()%1_000_000), "seed of the producer's choices (printed; repeat a run with it)")
	fs.Float64Var(&c.rate, "rate", 30, "producer operations per second")
	fs.IntVar(&c.target, "files", 800, "number of files the producer keeps the folder around")
	fs.IntVar(&c.slowWriters, "slow-writers", 3, "slow writers at once at most")
	fs.DurationVar(&c.sample, "sample", 5*time.Second, "RSS and fd sampling interval")
	fs.DurationVar(&c.quietTimeout, "quiet-timeout", 5*time.Minute, "how long to wait for the daemon to go quiet after the producer stops")
	fs.DurationVar(&c.quietFor, "quiet-for", 10*time.Second, "how long the daemon must stay quiet (must exceed its removal grace, 2*settle+1s)")
	fs.IntVar(&c.workers, "workers", 4, "tracesync --workers")
	fs.DurationVar(&c.settle, "settle", time.Second, "tracesync --settle")
	fs.DurationVar(&c.rescanInterval, "rescan-interval", time.Minute, "tracesync --rescan-interval (full rescans during the run)")
	fs.Float64Var(&c.failRate, "fail-rate", 0.03, "stratix-fake --fail-rate: fraction of API calls answered 503")
	fs.Float64Var(&c.rateLimitRate, "rate-limit-rate", 0.02, "stratix-fake --rate-limit-rate: fraction of API calls answered 429")
	fs.StringVar(&c.retryAfter, "retry-after", "1", "stratix-fake --retry-after of the 429s")
	fs.DurationVar(&c.latency, "latency", 2*time.Millisecond, "stratix-fake --latency: delay of every call")
	fs.Float64Var(&c.dropRate, "drop-rate", 0.01, "the proxy's chance, per chunk it forwards, of cutting the connection there (half of them with a TCP reset)")
	fs.Float64Var(&c.maxRSSSlope, "max-rss-slope", 1.0, "fail when RSS grows faster than this many MiB/min over the steady part of the run: from when the folder holds its working set, at least the second half, 2m or more (0: no check)")
	fs.Float64Var(&c.maxFDSlope, "max-fd-slope", 1.0, "fail when open fds grow faster than this many per minute over the steady part of the run (0: no check)")
	fs.BoolVar(&c.profiles, "profiles", false, "have the daemon write Go CPU and heap profiles (tracesync.cpu.prof, tracesync.mem.prof, the heap at its exit) into the work dir")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "seed":
			c.seedSet = true
		case "tracesync", "fake", "work":
			return
		}
		c.args = append(c.args, "-"+f.Name+"="+f.Value.String())
	})
	if !c.seedSet {
		c.args = append(c.args, fmt.Sprintf("-seed=%d", c.seed))
	}
	if !slices.ContainsFunc(c.args, func(a string) bool { return strings.HasPrefix(a, "-duration=") }) {
		c.args = append(c.args, "-duration="+c.duration.String())
	}
	switch {
	case c.tracesync == "" || c.fake == "" || c.work == "":
		return c, errors.New("need -tracesync, -fake and -work")
	case c.duration <= 0 || c.rate <= 0 || c.target < 1 || c.slowWriters < 0 || c.sample <= 0:
		return c, errors.New("-duration, -rate, -files and -sample must be positive, -slow-writers not negative")
	case c.dropRate < 0 || c.dropRate >= 1:
		return c, errors.New("-drop-rate: want a fraction in [0, 1)")
	case c.quietFor <= 2*c.settle+time.Second:
		return c, fmt.Errorf("-quiet-for %s: must exceed the daemon's removal grace (2*settle+1s = %s)", c.quietFor, 2*c.settle+time.Second)
	}
	return c, nil
}

func run(ctx context.Context, args []string) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soaktool:", err)
		return 2
	}
	ok, err := soak(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soaktool:", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}
