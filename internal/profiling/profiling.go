// Package profiling writes Go CPU and heap profiles for the hidden
// --cpuprofile and --memprofile flags of tracesync and stratix-fake (as
// rclone has them), so the real processes can be profiled under the
// benchmark and the soak.
package profiling

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// Start begins a CPU profile into cpuFile (when not empty) and returns a
// function that stops it and, when memFile is not empty, writes a heap
// profile there. The returned function is safe to call more than once.
func Start(cpuFile, memFile string) (stop func() error, err error) {
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
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close())
		}
		if memFile != "" {
			errs = append(errs, writeHeap(memFile))
		}
		return errors.Join(errs...)
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
