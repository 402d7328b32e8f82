// Command stratix-fake serves a local Stratix-compatible traces API
// (client/stratixtest) on a real port, for trials, tests and benchmarks.
//
// It prints its base URL (http://127.0.0.1:PORT/api/v1) as the first line on
// stdout, then logs to stderr, and serves until SIGINT or SIGTERM. When it
// stops it prints one more stdout line that counts the calls it served and
// the injected failures it answered (scripts/bench counts 429s with it):
//
//	served 12000 calls; 600 answered with an injected status, 600 of them 429
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/internal/logging"
	"github.com/tracesync/tracesync/internal/profiling"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// config is stratix-fake's command line.
type config struct {
	addr          string
	apiKey        string
	envelope      bool
	idsAs         string
	failRate      float64
	rateLimitRate float64
	retryAfter    string
	seed          uint64
	latency       time.Duration
	urlTTL        time.Duration
	dataDir       string
	logLevel      string
	logFormat     string
	cpuProfile    string
	memProfile    string
}

// usageError is a bad command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (config, error) {
	var cfg config
	fs := pflag.NewFlagSet("stratix-fake", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stratix-fake [flags]\n\nServes a local Stratix-compatible traces API and prints its base URL as the first line on stdout.\n\nFlags:\n%s", fs.FlagUsages())
	}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "address to listen on (port 0: a free port)")
	fs.StringVar(&cfg.apiKey, "api-key", "", `API key clients must send (default: $LAYERLENS_STRATIX_API_KEY if set, else "`+stratixtest.DefaultAPIKey+`")`)
	fs.BoolVar(&cfg.envelope, "envelope", true, `wrap answers in {"status": ..., "data": ...}`)
	fs.StringVar(&cfg.idsAs, "ids-as", "object", `create answer: object ({"trace_ids": [...]}) or list (the ids as the envelope's data; needs --envelope)`)
	fs.Float64Var(&cfg.failRate, "fail-rate", 0, "fraction (0..1) of calls answered 503, on every endpoint but /organizations")
	fs.Float64Var(&cfg.rateLimitRate, "rate-limit-rate", 0, "fraction (0..1) of calls answered 429 with Retry-After, on every endpoint but /organizations")
	fs.StringVar(&cfg.retryAfter, "retry-after", "1", "Retry-After sent with the 429s of --rate-limit-rate (seconds or an HTTP date; empty: none)")
	fs.Uint64Var(&cfg.seed, "seed", 0, "seed of the --fail-rate and --rate-limit-rate draws, to repeat a run's faults (0: from the clock; the seed used is logged at start)")
	fs.DurationVar(&cfg.latency, "latency", 0, "delay added to every call (e.g. 20ms)")
	fs.DurationVar(&cfg.urlTTL, "url-ttl", stratixtest.DefaultURLTTL, "how long a presigned URL is good for")
	fs.StringVar(&cfg.dataDir, "data-dir", "", "keep traces in this directory so they survive a restart (default: in memory only)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug (one line per request), info, warn, error")
	fs.StringVar(&cfg.logFormat, "log-format", "auto", "log format: auto, json, console")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a Go CPU profile to this file (for developers)")
	fs.StringVar(&cfg.memProfile, "memprofile", "", "write a Go heap profile to this file when asked to stop (SIGTERM, Ctrl-C), else at exit (for developers)")
	_ = fs.MarkHidden("cpuprofile")
	_ = fs.MarkHidden("memprofile")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	if cfg.apiKey == "" {
		cfg.apiKey = getenv("LAYERLENS_STRATIX_API_KEY")
	}
	switch cfg.idsAs {
	case "object":
	case "list":
		if !cfg.envelope {
			return cfg, usageError{errors.New("--ids-as list needs --envelope=true: the SDK accepts the bare list only inside the envelope")}
		}
	default:
		return cfg, usageError{fmt.Errorf("--ids-as %q: use object or list", cfg.idsAs)}
	}
	for name, v := range map[string]float64{"--fail-rate": cfg.failRate, "--rate-limit-rate": cfg.rateLimitRate} {
		if v < 0 || v > 1 {
			return cfg, usageError{fmt.Errorf("%s %v: want a fraction between 0 and 1", name, v)}
		}
	}
	if cfg.latency < 0 || cfg.urlTTL <= 0 {
		return cfg, usageError{errors.New("--latency must not be negative and --url-ttl must be positive")}
	}
	return cfg, nil
}

// Main runs stratix-fake and returns its exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, err := parseFlags(args, stderr, getenv)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "stratix-fake: %v\n", err)
		return exitUsage
	}
	stopProfile, err := profiling.Start(ctx, cfg.cpuProfile, cfg.memProfile)
	if err != nil {
		fmt.Fprintf(stderr, "stratix-fake: %v\n", err)
		return exitUsage
	}
	err = run(ctx, cfg, stdout, stderr)
	if perr := stopProfile(); perr != nil {
		fmt.Fprintf(stderr, "stratix-fake: %v\n", perr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "stratix-fake: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// run serves until ctx ends.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	log, err := logging.New(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return usageError{err}
	}
	srv, err := stratixtest.Listen(cfg.addr, stratixtest.Options{
		APIKey:    cfg.apiKey,
		Envelope:  cfg.envelope,
		IDsAsList: cfg.idsAs == "list",
		URLTTL:    cfg.urlTTL,
		DataDir:   cfg.dataDir,
		Logger:    &log,
		Seed:      cfg.seed,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	for _, ep := range stratixtest.Endpoints() {
		if cfg.latency > 0 {
			srv.SetLatency(ep, cfg.latency)
		}
		if ep == stratixtest.EndpointOrganizations {
			continue // discovery stays reliable; faults hit the traces calls
		}
		if cfg.failRate > 0 {
			srv.FailRate(ep, cfg.failRate, 503)
		}
		if cfg.rateLimitRate > 0 {
			srv.RateLimitRate(ep, cfg.rateLimitRate, cfg.retryAfter)
		}
	}
	// The first stdout line is the contract with scripts: the base URL.
	if _, err := fmt.Fprintln(stdout, srv.URL()); err != nil {
		return fmt.Errorf("write base URL: %w", err)
	}
	keyFrom := "--api-key or $LAYERLENS_STRATIX_API_KEY"
	if cfg.apiKey == "" {
		keyFrom = "the default test key " + stratixtest.DefaultAPIKey
	}
	log.Info().Str("url", srv.URL()).Str("api_key_from", keyFrom).Bool("envelope", cfg.envelope).Str("ids_as", cfg.idsAs).
		Float64("fail_rate", cfg.failRate).Float64("rate_limit_rate", cfg.rateLimitRate).Uint64("seed", srv.Seed()).Dur("latency", cfg.latency).
		Str("data_dir", cfg.dataDir).Msg("serving; stop with Ctrl-C or SIGTERM")
	<-ctx.Done()
	log.Info().Msg("shutting down")
	var calls, injected, limited int
	for _, ep := range stratixtest.Endpoints() {
		i, l := srv.Injected(ep)
		calls, injected, limited = calls+srv.Calls(ep), injected+i, limited+l
	}
	if _, err := fmt.Fprintf(stdout, "served %d calls; %d answered with an injected status, %d of them 429\n", calls, injected, limited); err != nil {
		return fmt.Errorf("write call counts: %w", err)
	}
	return nil
}
