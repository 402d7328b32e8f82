package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkReadyLatency measures the time from an atomic rename into a
// watched root to the Ready event reaching the consumer, beyond the settle
// time, and splits it: the rename system call itself, the Go runtime's
// lateness in waking the settle timer, and the watcher's own work (inotify
// to the event goroutine, then timer to consumer). Run with a fixed count,
// e.g. -benchtime=300x.
func BenchmarkReadyLatency(b *testing.B) {
	root := tempRoot(b)
	const settle = 20 * time.Millisecond
	var timerLate, seenAt atomic.Int64
	w := runDirect(b, root, settle, func(w *Watcher) {
		w.OnTimerLate(func(d time.Duration) { timerLate.Store(int64(d)) })
		w.OnEventSeen(func(string) { seenAt.Store(time.Now().UnixNano()) })
	})
	var total, renameCall, late, own, toLoop, toConsumer []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tmp := filepath.Join(root, fmt.Sprintf(".t%d.tmp", i))
		final := filepath.Join(root, fmt.Sprintf("f%d.json", i))
		if err := os.WriteFile(tmp, []byte(`{"i":1}`), 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := os.Rename(tmp, final); err != nil {
			b.Fatal(err)
		}
		renamed := time.Now()
		for ev := range w.Events() {
			if ev.Kind == Ready && ev.Path == final {
				got := time.Now()
				tl := time.Duration(timerLate.Load())
				seen := time.Unix(0, seenAt.Load())
				total = append(total, got.Sub(start)-settle)
				renameCall = append(renameCall, renamed.Sub(start))
				late = append(late, tl)
				own = append(own, got.Sub(renamed)-settle-tl)
				toLoop = append(toLoop, seen.Sub(renamed))
				toConsumer = append(toConsumer, got.Sub(seen)-settle-tl)
				break
			}
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("p50 %v p99 %v", d[len(d)/2].Round(100*time.Nanosecond), d[len(d)*99/100].Round(100*time.Nanosecond))
	}
	slices.Sort(own)
	slices.Sort(total)
	b.ReportMetric(float64(own[len(own)/2].Nanoseconds())/1e3, "own-p50-µs")
	b.ReportMetric(float64(own[len(own)*99/100].Nanoseconds())/1e3, "own-p99-µs")
	b.ReportMetric(float64(total[len(total)/2].Nanoseconds())/1e3, "total-p50-µs")
	b.Logf("%d renames, beyond the settle time: total (from calling rename) %s = rename call %s + Go timer lateness %s + watcher's own work %s "+
		"[rename returned to event goroutine %s; timer to consumer %s]",
		len(total), pct(total), pct(renameCall), pct(late), pct(own), pct(toLoop), pct(toConsumer))
}

var (
	scanTreeOnce sync.Once
	scanTreeDir  string
	scanTreeErr  error
)

const scanTreeFiles = 100_000

// scanTree builds (once per test binary) 100,000 small trace files in 100
// directories of 1,000.
func scanTree(b *testing.B) string {
	scanTreeOnce.Do(func() {
		scanTreeDir, scanTreeErr = os.MkdirTemp("", "watcher-bench-")
		if scanTreeErr != nil {
			return
		}
		for d := 0; d < 100 && scanTreeErr == nil; d++ {
			dir := filepath.Join(scanTreeDir, fmt.Sprintf("d%03d", d))
			if scanTreeErr = os.Mkdir(dir, 0o755); scanTreeErr != nil {
				return
			}
			for f := 0; f < scanTreeFiles/100; f++ {
				if scanTreeErr = os.WriteFile(filepath.Join(dir, fmt.Sprintf("t%04d.json", f)), []byte("{}"), 0o644); scanTreeErr != nil {
					return
				}
			}
		}
	})
	if scanTreeErr != nil {
		b.Fatal(scanTreeErr)
	}
	return scanTreeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if scanTreeDir != "" {
		os.RemoveAll(scanTreeDir)
	}
	os.Exit(code)
}

// BenchmarkInitialScanUnchanged measures a restart's initial scan of
// 100,000 files that Known vouches for (warm cache), in daemon mode
// (watching every directory) and in Once mode.
func BenchmarkInitialScanUnchanged(b *testing.B) {
	root := scanTree(b)
	known := perFile(func(string, Stat) bool { return true })
	for _, once := range []bool{false, true} {
		name := "daemon"
		if once {
			name = "once"
		}
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				w, err := New(Config{Roots: []string{root}, Known: known, Once: once})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := time.Now()
				go func() { done <- w.Run(ctx) }()
				for ev := range w.Events() {
					if ev.Kind == ScanDone {
						total += time.Since(start)
						if ev.Scan.Files != scanTreeFiles || ev.Scan.Unchanged != scanTreeFiles {
							b.Fatalf("scan saw %d files, %d unchanged; want %d", ev.Scan.Files, ev.Scan.Unchanged, scanTreeFiles)
						}
						cancel()
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				cancel()
			}
			per := total / time.Duration(b.N)
			b.ReportMetric(float64(per.Milliseconds()), "ms/scan")
			b.ReportMetric(float64(scanTreeFiles)/per.Seconds(), "files/s")
		})
	}
}

// BenchmarkIdleCPU measures the process CPU time (user+sys, getrusage)
// spent while a watcher on 100 watched directories sits idle for one
// second per iteration.
func BenchmarkIdleCPU(b *testing.B) {
	root := tempRoot(b)
	for d := 0; d < 100; d++ {
		writeFile(b, filepath.Join(root, fmt.Sprintf("d%02d", d), "t.json"), "{}")
	}
	w, err := New(Config{Roots: []string{root}, Settle: 10 * time.Millisecond, Known: perFile(func(string, Stat) bool { return true })})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for ev := range w.Events() {
		if ev.Kind == ScanDone {
			break
		}
	}
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	var used time.Duration
	for i := 0; i < b.N; i++ {
		before := cpu()
		time.Sleep(time.Second)
		used += cpu() - before
	}
	b.StopTimer()
	cancel()
	<-done
	perSec := used / time.Duration(b.N)
	b.ReportMetric(float64(perSec.Microseconds()), "cpu-µs/idle-s")
	b.Logf("idle CPU: %v per idle second", perSec)
}
