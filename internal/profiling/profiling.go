// Package profiling writes Go CPU and heap profiles for the hidden
// --cpuprofile and --memprofile flags of tracesync and stratix-fake (as
// rclone has them), so the real processes can be profiled under the
// benchmark and the soak.
package profiling

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
)

// StopHeapSampling turns off the runtime's sampling of allocations, what
// a heap profile is made of, for a process that will write none: its
// tables grow with every allocation site seen (1.5 MB in a backfill).
func StopHeapSampling() { runtime.MemProfileRate = 0 }

// Start begins a CPU profile into cpuFile (when not empty) and returns a
// function that stops it. When memFile is not empty, a heap profile is
// written there the moment ctx is done (a daemon's SIGTERM: the heap while
// everything is still live, before the shutdown releases it), or else by
// the returned function. That function is safe to call more than once.
func Start(ctx context.Context, cpuFile, memFile string) (stop func() error, err error) {
	var cpu *os.File
	if cpuFile != "" {
		cpu, err = os.Create(cpuFile)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("--cpuprofile %s: %w", cpuFile, err)
		}
	}
	var heapOnce sync.Once
	var heapErr error
	heap := func() error {
		if memFile != "" {
			heapOnce.Do(func() { heapErr = writeHeap(memFile) })
		}
		return heapErr
	}
	stopped := make(chan struct{})
	if memFile != "" {
		go func() {
			select {
			case <-ctx.Done():
				_ = heap()
			case <-stopped:
			}
		}()
	}
	var stopOnce sync.Once
	var stopErr error
	return func() error {
		stopOnce.Do(func() {
			close(stopped)
			var errs []error
			if cpu != nil {
				pprof.StopCPUProfile()
				errs = append(errs, cpu.Close())
			}
			errs = append(errs, heap())
			stopErr = errors.Join(errs...)
		})
		return stopErr
	}, nil
}

func writeHeap(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile %s: %w", name, err)
	}
	return f.Close()
}
