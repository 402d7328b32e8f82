package main

// measure.go holds how a run is measured: peak RSS, CPU time from /proc,
// and the medians and percentiles the figures print.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// watchPeakRSS polls the VmHWM (peak resident set) of process pid every
// 5 ms until the returned function is called, and that function returns the
// last value seen, in MiB. VmHWM is the peak of the process's own address
// space since its exec. The child's rusage Maxrss is not used: Linux folds
// the RSS of the address space replaced at exec into it, and Go starts
// children with vfork (CLONE_VM), so it would report benchtool's own peak
// whenever that is higher than the child's.
func watchPeakRSS(pid int) func() float64 {
	var peakKiB int64
	stop, done := make(chan struct{}), make(chan struct{})
	read := func() {
		if v := vmHWM(pid); v > peakKiB {
			peakKiB = v
		}
	}
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(stop)
		<-done
		return float64(peakKiB) / 1024
	}
}

// vmHWM returns the VmHWM of pid in KiB, 0 once the process is gone.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// procCPU returns the user plus system CPU time pid has used so far (0
// when it cannot be read).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond
}

// quiesce flushes every dirty page to disk before a measured run, so that
// the run's fsyncs do not queue behind the writeback of what was written
// before it (400 MiB of large files, the previous run's state).
func quiesce() {
	syscall.Sync()
	time.Sleep(200 * time.Millisecond)
}

func median(v []float64) float64 { return percentile(v, 50) }

// percentile is the nearest-rank percentile of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
