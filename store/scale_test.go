package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The scale state is what `status` and `files --state quarantined` must
// answer on quickly (issue 19): a million tracked files over 2,000 folders,
// each its own content with one trace, a thousand of them quarantined.
const (
	scaleFiles       = 1_000_000
	scaleFolders     = 2_000
	scaleQuarantined = 1_000
	scaleTxSize      = 50_000 // records per transaction while building
)

// scaleEnv names a directory to build the scale state in (or reuse, when it
// holds one already): the CLI can then be timed on it with --state-dir.
const scaleEnv = "TRACESYNC_SCALE_STATE"

// scalePath is the i-th file of the scale state.
func scalePath(i int) string {
	return fmt.Sprintf("/data/archive/d%04d/trace-%07d.json", i%scaleFolders, i)
}

// buildScaleState writes n records into dir through the Tx API in large
// transactions (not through the engine): every quarantineEvery-th path is
// quarantined with a LastError, the rest uploaded with a content and one
// trace id of their own.
func buildScaleState(tb testing.TB, dir string, n, quarantined int) {
	tb.Helper()
	db, err := Open(dir, Options{Target: targetA})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	every := n / quarantined
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for start := 0; start < n; start += scaleTxSize {
		err := db.Update(context.Background(), func(tx *Tx) error {
			for i := start; i < min(start+scaleTxSize, n); i++ {
				p := scalePath(i)
				h := Hash(sha256.Sum256([]byte(p)))
				rec := PathRecord{Path: p, Root: "/data/archive", Hash: h, Size: 10, ModTime: at, Dev: 2049, Ino: uint64(i) + 1,
					State: StateUploaded, FirstSeen: at, UpdatedAt: at.Add(time.Duration(i) * time.Millisecond)}
				if i%every == every/2 {
					rec.State, rec.Attempts = StateQuarantined, 1
					rec.LastError = p + ": not valid JSON at byte 3; fix the file, then run `tracesync retry`"
				} else {
					id := fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
					if err := tx.PutContent(Content{Hash: h, Filename: filepath.Base(p), Size: 10, TraceIDs: []string{id}, UploadedAt: rec.UpdatedAt}); err != nil {
						return err
					}
				}
				if err := tx.PutPath(rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// scaleState returns a directory holding the scale state: $TRACESYNC_SCALE_STATE
// (built there when it holds no state yet), else a fresh temporary one.
func scaleState(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv(scaleEnv)
	if dir == "" {
		dir = tb.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		return dir
	}
	start := time.Now()
	buildScaleState(tb, dir, scaleFiles, scaleQuarantined)
	tb.Logf("built a state of %d files (%d quarantined) in %s in %v", scaleFiles, scaleQuarantined, dir, time.Since(start).Round(time.Millisecond))
	return dir
}

// TestBuildScaleState builds the scale state in $TRACESYNC_SCALE_STATE, for
// timing the CLI on it; without the variable it is skipped.
func TestBuildScaleState(t *testing.T) {
	if os.Getenv(scaleEnv) == "" {
		t.Skip("set " + scaleEnv + " to a directory to build a state of a million files in it")
	}
	scaleState(t)
}

// BenchmarkScale1M times what `tracesync status` and `tracesync files
// --state quarantined` read, on the scale state: each op is one call.
func BenchmarkScale1M(b *testing.B) {
	dir := scaleState(b)
	b.Run("Open", func(b *testing.B) {
		for b.Loop() {
			db, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	b.Run("OpenForReading", func(b *testing.B) {
		for b.Loop() {
			db, err := OpenForReading(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	// Status is all that `tracesync status` asks of the store without a daemon.
	b.Run("Status", func(b *testing.B) {
		for b.Loop() {
			db, err := OpenForReading(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.Counts(); err != nil {
				b.Fatal(err)
			}
			if _, err := db.RecentErrors(10); err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	db, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.Run("Counts", func(b *testing.B) {
		for b.Loop() {
			c, err := db.Counts()
			if err != nil || c.Files[StateQuarantined] != scaleQuarantined {
				b.Fatalf("Counts = %+v, %v", c, err)
			}
		}
	})
	b.Run("RecentErrors", func(b *testing.B) {
		for b.Loop() {
			if recs, err := db.RecentErrors(10); err != nil || len(recs) != 10 {
				b.Fatalf("RecentErrors = %d records, %v", len(recs), err)
			}
		}
	})
	b.Run("Quarantined", func(b *testing.B) {
		for b.Loop() {
			n := 0
			err := db.ForEachPathIn(StateQuarantined, func(PathRecord) error {
				n++
				return nil
			})
			if err != nil || n != scaleQuarantined {
				b.Fatalf("listed %d quarantined, %v", n, err)
			}
		}
	})
}
