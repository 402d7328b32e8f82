// Command tracesync keeps folders of trace files in sync with the Stratix
// traces API. This package only wires: flags, configuration and exit codes;
// the logic lives in client, store, watcher and uploader.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
