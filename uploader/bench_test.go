package uploader_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// writeJSONL writes a .jsonl file of about size bytes.
func writeJSONL(tb testing.TB, path string, size int, seed int) {
	tb.Helper()
	var b strings.Builder
	b.Grow(size + 256)
	for i := 0; b.Len() < size-200; i++ {
		fmt.Fprintf(&b, `{"trace_id":"t-%d-%d","spans":[{"name":"llm.call","duration_ms":%d,"ok":true,"text":"lorem ipsum dolor sit amet \u00e9 \"quoted\""}],"score":0.%d}`+"\n", seed, i, i*7%1000, i%10)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkHashValidate measures the one streaming pass (SHA-256 plus JSON
// validation) over a 50 MiB .jsonl file: throughput and memory per file.
func BenchmarkHashValidate(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.jsonl")
	writeJSONL(b, path, 50<<20-1024, 1)
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := uploader.HashFile(path, client.MaxFileSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineSmallFiles runs the whole engine (hash, decide, presign,
// PUT, create, record) over 10,000 distinct 4 KiB files against an
// in-process stratixtest server and a real bbolt store, and reports files/s (timed from the first event to Run's return; ns/op
// includes the setup).
func BenchmarkEngineSmallFiles(b *testing.B) {
	const n = 10000
	dir := b.TempDir()
	paths := make([]string, n)
	stats := make([]watcher.Stat, n)
	for i := range n {
		paths[i] = filepath.Join(dir, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("trace-%05d.jsonl", i))
		os.MkdirAll(filepath.Dir(paths[i]), 0o755)
		writeJSONL(b, paths[i], 4096, i)
		stats[i] = statOf(b, paths[i])
	}
	for _, workers := range []int{4, 16, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var total, cpu time.Duration
			for range b.N {
				c0 := cpuTime()
				total += runEngineOnce(b, dir, paths, stats, workers)
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "files/s")
			// CPU per file (engine, store and the in-process server
			// together) does not depend on what else loads the machine:
			// 2 cores allow 2e6/cpu-µs/file files/s at best.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/file")
		})
	}
}

func runEngineOnce(b *testing.B, root string, paths []string, stats []watcher.Stat, workers int) time.Duration {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	api, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: stratixtest.DefaultAPIKey})
	if err != nil {
		b.Fatal(err)
	}
	target, err := api.Discover(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(b.TempDir(), store.Options{Target: target.String(), CommitInterval: benchCommitInterval})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	eng, err := uploader.New(uploader.Config{Workers: workers, OneShot: true, Log: zerolog.Nop()}, db, api)
	if err != nil {
		b.Fatal(err)
	}
	events := make(chan watcher.Event, 1024)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- eng.Run(context.Background(), events, &resettles{}) }()
	for i, p := range paths {
		events <- watcher.Event{Kind: watcher.Ready, Root: root, Path: p, Stat: stats[i]}
	}
	close(events)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	if p := eng.Progress(); p.Uploaded != len(paths) {
		b.Fatalf("uploaded %d of %d (progress %+v)", p.Uploaded, len(paths), p)
	}
	return elapsed
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCommitInterval is the store's group-commit window in the engine
// benchmark (0: the store's default).
var benchCommitInterval time.Duration

func init() {
	if v := os.Getenv("TRACESYNC_BENCH_COMMIT_INTERVAL"); v != "" {
		benchCommitInterval, _ = time.ParseDuration(v)
	}
}
