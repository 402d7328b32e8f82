package main

// workersflag.go owns --workers (auto or a fixed number) and --max-workers,
// the ceiling of auto.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tracesync/tracesync/uploader"
)

// Limits of --workers and --max-workers.
const (
	maxWorkers        = 1024
	defaultMaxWorkers = uploader.DefaultMaxWorkers
)

// workersType is --workers' value type as the help shows it; expectedForm
// knows it.
const workersType = "auto|N"

// workersFlag is --workers: auto (the number adapts to the API's latency
// and back pressure) or a fixed number of uploads at once.
type workersFlag struct {
	fixed bool
	n     int // when fixed; validate checks its range
}

// count is the engine's Config.Workers: 0 for auto.
func (w workersFlag) count() int {
	if !w.fixed {
		return 0
	}
	return w.n
}

func (w *workersFlag) String() string {
	if !w.fixed {
		return "auto"
	}
	return strconv.Itoa(w.n)
}

func (w *workersFlag) Type() string { return workersType }

func (w *workersFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "auto") {
		*w = workersFlag{}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q: want auto or a whole number", s)
	}
	*w = workersFlag{fixed: true, n: n}
	return nil
}

// workersHelp is --workers' help: what each choice is for.
var workersHelp = fmt.Sprintf("uploads and deletes in flight at once: auto (grows while the API's latency holds, shrinks in proportion to the 429s, 503s and timeouts and halves on latency jumps, up to --max-workers) or a fixed number (1 to %d), e.g. when the API's operator gives you a quota of connections", maxWorkers)

// validateWorkers checks --workers and --max-workers.
func (f *syncFlags) validateWorkers() []error {
	var errs []error
	if f.workers.fixed && (f.workers.n < 1 || f.workers.n > maxWorkers) {
		errs = append(errs, fmt.Errorf("--workers %d: use auto (the default) or 1 to %d", f.workers.n, maxWorkers))
	}
	if f.maxWorkers < 1 || f.maxWorkers > maxWorkers {
		errs = append(errs, fmt.Errorf("--max-workers %d: use 1 to %d", f.maxWorkers, maxWorkers))
	}
	return errs
}
