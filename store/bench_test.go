package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecordResult records upload results (content, path, intent
// cleared: what a worker hands the store after a create) through Update
// from N goroutines at once, each waiting for its commit as a worker does.
// records/s is the figure to quote; design target: at least 20,000/s
// sustained. Throughput grows with N, because one commit (one fsync)
// serves every caller waiting at that moment.
func BenchmarkRecordResult(b *testing.B) {
	for _, callers := range []int{16, 128} {
		b.Run(fmt.Sprintf("goroutines=%d", callers), func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{Target: targetA})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var seq atomic.Int64
			n := int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for i := seq.Add(1); i <= n; i = seq.Add(1) {
						if err := recordResult(db, i); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func recordResult(db *DB, i int64) error {
	p := fmt.Sprintf("/data/traces/%09d.jsonl", i)
	h := hashOf(p)
	return db.Update(context.Background(), func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, Filename: "x.jsonl", Size: 1000, TraceIDs: []string{"trace-" + p}, UploadedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutPath(PathRecord{Path: p, Root: "/data/traces", Hash: h, Size: 1000, ModTime: t0, Dev: 1, Ino: uint64(i), State: StateUploaded, UpdatedAt: t0}); err != nil {
			return err
		}
		return tx.DeleteIntent(h)
	})
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
	paths, mtime := fill100k(b, db)
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

// fill100k records 100,000 uploaded paths, as a large drop folder has.
func fill100k(b *testing.B, db *DB) (paths []string, mtime time.Time) {
	b.Helper()
	const files = 100_000
	paths = make([]string, files)
	for i := range paths {
		paths[i] = fmt.Sprintf("/data/traces/2026/11/%02d/run-%06d.jsonl", i%30, i)
	}
	mtime = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
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
	return paths, mtime
}

// BenchmarkOpenAndCount100k is what `tracesync status` costs on a store of
// 100,000 paths with no daemon running: Open (which validates every page
// and rebuilds the freelist) plus Counts and RecentErrors.
func BenchmarkOpenAndCount100k(b *testing.B) {
	dir := b.TempDir()
	db, err := Open(dir, Options{Target: targetA})
	if err != nil {
		b.Fatal(err)
	}
	fill100k(b, db)
	db.Close()
	for b.Loop() {
		db, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		c, err := db.Counts()
		if err != nil || c.Files[StateUploaded] != 100_000 {
			b.Fatalf("Counts = %+v, %v", c, err)
		}
		if _, err := db.RecentErrors(10); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}
