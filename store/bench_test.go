package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecordResultParallel records upload results (content, path,
// intent cleared: one transaction's worth of what a worker hands the store)
// from many goroutines at once through Update. records/s is the figure to
// quote; design target: at least 20,000/s sustained.
func BenchmarkRecordResultParallel(b *testing.B) {
	db, err := Open(b.TempDir(), Options{Target: targetA})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var seq atomic.Int64
	b.SetParallelism(64) // 64 x GOMAXPROCS goroutines, like a large worker pool
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			p := fmt.Sprintf("/data/traces/%09d.jsonl", i)
			h := hashOf(p)
			err := db.Update(context.Background(), func(tx *Tx) error {
				if err := tx.PutContent(Content{Hash: h, Filename: "x.jsonl", Size: 1000, TraceIDs: []string{"trace-" + p}, UploadedAt: t0}); err != nil {
					return err
				}
				if err := tx.PutPath(PathRecord{Path: p, Root: "/data/traces", Hash: h, Size: 1000, ModTime: t0, Dev: 1, Ino: uint64(i), State: StateUploaded, UpdatedAt: t0}); err != nil {
					return err
				}
				return tx.DeleteIntent(h)
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkUnchanged100k is the restart fast path over 100,000 tracked
// files: one op is one Unchanged check. ms/100k is the time to re-check all
// of them (target: well under 1 s).
func BenchmarkUnchanged100k(b *testing.B) {
	const files = 100_000
	db, err := Open(b.TempDir(), Options{Target: targetA})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	paths := make([]string, files)
	for i := range paths {
		paths[i] = fmt.Sprintf("/data/traces/2026/11/%02d/run-%06d.jsonl", i%30, i)
	}
	mtime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for start := 0; start < files; start += 10_000 {
		err := db.Update(context.Background(), func(tx *Tx) error {
			for i := start; i < start+10_000; i++ {
				err := tx.PutPath(PathRecord{Path: paths[i], Root: "/data/traces", Hash: hashOf(paths[i]), Size: int64(i), ModTime: mtime.Add(time.Duration(i)),
					Dev: 2049, Ino: uint64(i), State: StateUploaded, FirstSeen: mtime, UpdatedAt: mtime})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := db.Unchanged(paths[i], 2049, uint64(i), int64(i), mtime.Add(time.Duration(i))); !ok {
			b.Fatalf("Unchanged(%s) = false, want true", paths[i])
		}
		if i++; i == files {
			i = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*files/1e6, "ms/100k")
}
