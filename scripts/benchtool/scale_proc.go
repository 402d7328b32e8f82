package main

// scale_proc.go reads what the scale figure samples of a live process from
// /proc: its anonymous and file-backed resident memory, its context
// switches over all threads, and the machine's load average.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memStatus is the memory lines of /proc/PID/status, in KiB.
type memStatus struct {
	rssAnon, rssFile, vmHWM int64
}

// readMemStatus reads pid's memory lines; ok is false once it is gone.
func readMemStatus(pid int) (memStatus, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, false
	}
	return parseMemStatus(string(b))
}

// parseMemStatus reads RssAnon, RssFile and VmHWM from the text of
// /proc/PID/status; ok is false when RssAnon is missing (a zombie has none).
func parseMemStatus(s string) (m memStatus, ok bool) {
	for line := range strings.Lines(s) {
		key, val, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		var dst *int64
		switch key {
		case "RssAnon":
			dst, ok = &m.rssAnon, true
		case "RssFile":
			dst = &m.rssFile
		case "VmHWM":
			dst = &m.vmHWM
		default:
			continue
		}
		*dst, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
	}
	return m, ok
}

// memWatch samples a process's memory every interval until stopped and
// keeps the peaks. VmHWM counts bbolt's file-backed mmap of the state
// file; RssAnon is the heap, stacks and the runtime's own memory.
type memWatch struct {
	pid   int
	start time.Time
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex // guards the fields below, written by the sampler
	peak     memStatus  // the largest of each field seen (VmHWM: the last seen)
	anonPeak time.Duration
	last     memStatus
	n        int // samples taken
}

func watchMem(pid int, interval time.Duration) *memWatch {
	w := &memWatch{pid: pid, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// sample reads the process's memory once and folds it into the peaks.
func (w *memWatch) sample() memStatus {
	m, ok := readMemStatus(w.pid)
	if !ok {
		return memStatus{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = m
	w.n++
	if m.rssAnon > w.peak.rssAnon {
		w.peak.rssAnon, w.anonPeak = m.rssAnon, time.Since(w.start)
	}
	w.peak.rssFile = max(w.peak.rssFile, m.rssFile)
	w.peak.vmHWM = max(w.peak.vmHWM, m.vmHWM)
	return m
}

// peaks returns the peaks so far and the number of samples.
func (w *memWatch) peaks() (memStatus, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak, w.n
}

// anonPeakAt is when, since the watch started, RssAnon peaked.
func (w *memWatch) anonPeakAt() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.anonPeak
}

// end stops sampling and returns the peaks.
func (w *memWatch) end() (memStatus, int) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.peaks()
}

// mib formats KiB as MiB.
func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// ctxSwitches is the voluntary and involuntary context switches of pid's
// live threads, as scripts/fleet-figures counts them (threads that exited
// are not counted; Go's rarely exit).
func ctxSwitches(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		sum += parseCtxSwitches(string(b))
	}
	return sum
}

// parseCtxSwitches adds the two ctxt_switches lines of a task's status.
func parseCtxSwitches(s string) int64 {
	var sum int64
	for line := range strings.Lines(s) {
		key, val, found := strings.Cut(line, ":")
		if found && (key == "voluntary_ctxt_switches" || key == "nonvoluntary_ctxt_switches") {
			n, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			sum += n
		}
	}
	return sum
}

// loadAvg is the machine's 1, 5 and 15 minute load averages, as uptime
// prints them.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
