package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestScanStreamsThroughABoundedQueue: a scan of a folder far bigger than
// the output queue's bound, read by a slow consumer, waits for the
// consumer instead of queueing every file it meets, so a backfill of a
// million files holds a window of events, not a million.
func TestScanStreamsThroughABoundedQueue(t *testing.T) {
	const files, bound = 1500, 8
	root := tempRoot(t)
	old := time.Now().Add(-time.Hour) // settled long ago: each is Ready as the scan meets it
	for i := range files {
		p := filepath.Join(root, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%04d.json", i))
		writeFile(t, p, "{}")
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(Config{Roots: []string{root}, Once: true})
	if err != nil {
		t.Fatal(err)
	}
	w.out.highWater = bound
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// What the scan may have handed on beyond the bound: the results
	// waiting for the event goroutine, and the one the scanner holds.
	limit := bound + foundQueue + 1
	ready, most := 0, 0
	for ev := range w.Events() {
		if ev.Kind == Ready {
			ready++
			if ready%100 == 0 {
				time.Sleep(20 * time.Millisecond) // a consumer slower than the scan
			}
		}
		most = max(most, w.out.len())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ready != files {
		t.Fatalf("%d Ready events, want %d", ready, files)
	}
	if most > limit {
		t.Fatalf("%d events queued at once for a slow consumer, want at most %d (queue bound %d + scan results in flight %d + 1)", most, limit, bound, foundQueue)
	}
	t.Logf("at most %d events queued (limit %d) for %d files", most, limit, files)
}

// TestPathKeyFromDirectory: a scan keys a file from its directory's key
// and its name; that must be PathKey of its path, which the consumer
// computes, under any seed.
func TestPathKeyFromDirectory(t *testing.T) {
	for _, seed := range []uint64{0, 1, 0x9e3779b97f4a7c15} {
		for _, c := range []struct{ dir, name string }{{"/", "a.json"}, {"/r", "a.json"}, {"/r/d", "b.jsonl"}, {"/r/d", ""}} {
			got := pathKeyIn(dirKey(seed, c.dir), c.name)
			if want := PathKey(seed, joinName(c.dir, c.name)); got != want {
				t.Errorf("seed %#x, %s in %s: key %#x from the directory, PathKey %#x", seed, c.name, c.dir, got, want)
			}
			if b := PathKey(seed, []byte(joinName(c.dir, c.name))); b != got {
				t.Errorf("seed %#x, %s in %s: PathKey of the bytes %#x, of the string %#x", seed, c.name, c.dir, b, got)
			}
		}
	}
	if PathKey(1, "/r/a.json") == PathKey(2, "/r/a.json") && PathKey(1, "/r/b.json") == PathKey(2, "/r/b.json") {
		t.Errorf("PathKey ignores its seed")
	}
}
