// Command tracesync keeps folders of trace files in sync with the Stratix
// traces API. This package only wires: flags, configuration and exit codes;
// the logic lives in client, store, watcher and uploader.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGCPercent is the Go GC target used unless GOGC is set. A 50 MiB
// JSONL upload becomes ~200,000 trace ids, held a few times over for a
// moment (the create answer, the decoded list, the encoded record, bbolt's
// pages); with Go's default of 100 the heap may grow to twice what is live
// before a collection, and four such uploads at once reached 76-87 MiB
// peak RSS. At 50 the peak stayed under 64 MiB for about 5% more CPU on a
// backfill of small files (README, Performance).
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
