package store

// size_test.go measures what the state file spends per tracked file, per
// bucket: `go test ./store -run TestStateFileSize -statefile PATH -v` on a
// real state file, and BenchmarkStateSize on one it builds itself.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	bolt "go.etcd.io/bbolt"
)

var stateFileFlag = flag.String("statefile", "", "TestStateFileSize: the state file to report on")

// bucketSize is what one bucket of a target takes.
type bucketSize struct {
	name        string
	entries     int // keys that are not nested buckets
	keyBytes    int
	valueBytes  int
	leafInuse   int
	leafAlloc   int
	branchAlloc int
}

// fileSize is what a state file takes, in total and per bucket of its
// targets (summed over targets).
type fileSize struct {
	buckets  []bucketSize
	files    int   // path records: the tracked files
	pages    int64 // bytes up to bbolt's high-water page
	apparent int64 // st_size
	onDisk   int64 // st_blocks * 512
}

// measureFile reads a closed state file's sizes.
func measureFile(file string) (fileSize, error) {
	var fs fileSize
	st, err := os.Stat(file)
	if err != nil {
		return fs, err
	}
	fs.apparent = st.Size()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.onDisk = sys.Blocks * 512
	}
	bdb, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fs, err
	}
	defer bdb.Close()
	byName := map[string]*bucketSize{}
	var order []string
	err = bdb.View(func(tx *bolt.Tx) error {
		fs.pages = tx.Size()
		targets := tx.Bucket(bucketTargets)
		if targets == nil {
			return nil
		}
		return targets.ForEachBucket(func(target []byte) error {
			return targets.Bucket(target).ForEachBucket(func(name []byte) error {
				b := targets.Bucket(target).Bucket(name)
				s := byName[string(name)]
				if s == nil {
					s = &bucketSize{name: string(name)}
					byName[string(name)] = s
					order = append(order, string(name))
				}
				_ = b.ForEach(func(k, v []byte) error {
					if v != nil {
						s.entries++
						s.keyBytes += len(k)
						s.valueBytes += len(v)
					}
					return nil
				})
				bs := b.Stats()
				s.leafInuse += bs.LeafInuse
				s.leafAlloc += bs.LeafAlloc
				s.branchAlloc += bs.BranchAlloc
				if string(name) == string(bucketPaths) {
					fs.files += bs.KeyN
				}
				return nil
			})
		})
	})
	for _, name := range order {
		fs.buckets = append(fs.buckets, *byName[name])
	}
	return fs, err
}

// report prints the sizes per tracked file.
func (fs fileSize) report(w io.Writer, label string) {
	n := float64(max(fs.files, 1))
	per := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/n) }
	fmt.Fprintf(w, "%s: %d tracked files; pages %s B/file, apparent %s B/file, on disk %s B/file\n", label, fs.files, per(fs.pages), per(fs.apparent), per(fs.onDisk))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "bucket\tentries\tkey B/file\tvalue B/file\tleaf inuse B/file\tleaf alloc B/file\tbranch B/file\tfill\t")
	var leaf, branch int64
	for _, b := range fs.buckets {
		fill := 0.0
		if b.leafAlloc > 0 {
			fill = float64(b.leafInuse) / float64(b.leafAlloc)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", b.name, b.entries, per(int64(b.keyBytes)), per(int64(b.valueBytes)),
			per(int64(b.leafInuse)), per(int64(b.leafAlloc)), per(int64(b.branchAlloc)), fill)
		leaf += int64(b.leafAlloc)
		branch += int64(b.branchAlloc)
	}
	fmt.Fprintf(tw, "all\t\t\t\t\t%s\t%s\t\t\n", per(leaf), per(branch))
	_ = tw.Flush()
}

func TestStateFileSize(t *testing.T) {
	if *stateFileFlag == "" {
		t.Skip("no -statefile given")
	}
	fs, err := measureFile(*stateFileFlag)
	if err != nil {
		t.Fatalf("measure %s: %v", *stateFileFlag, err)
	}
	var sb strings.Builder
	fs.report(&sb, *stateFileFlag)
	t.Log("\n" + sb.String())
}

// BenchmarkStateSize records 20,000 tiny files under a long root in 20
// folders as a backfill does: a pending record and an intent when a file is
// hashed, then the content, the uploaded record and the intent cleared when
// its create returns, a few files per transaction, in random order (as a
// real backfill writes them: see fillBackfill). It reports the state's
// bytes per file, fresh and after Compact; -v prints them per bucket.
func BenchmarkStateSize(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		db, err := Open(dir, Options{Target: targetA})
		if err != nil {
			b.Fatal(err)
		}
		fillBackfill(b, db, 20_000)
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		fresh, err := measureFile(filepath.Join(dir, FileName))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Compact(dir); err != nil {
			b.Fatal(err)
		}
		compacted, err := measureFile(filepath.Join(dir, FileName))
		if err != nil {
			b.Fatal(err)
		}
		if testing.Verbose() {
			var sb strings.Builder
			fresh.report(&sb, "fresh")
			compacted.report(&sb, "compacted")
			b.Log("\n" + sb.String())
		}
		n := float64(fresh.files)
		b.ReportMetric(float64(fresh.pages)/n, "B/file-fresh")
		b.ReportMetric(float64(compacted.pages)/n, "B/file-compacted")
	}
}

// fillBackfill records files tiny files of 1,000 per folder as a backfill
// of 16 workers does, in random order: a real backfill's put log (at
// 8214ee6) wrote 99.9% of its paths below the greatest one so far, a
// median of 6,000 behind.
func fillBackfill(tb testing.TB, db *DB, files int) {
	tb.Helper()
	const root = "/tmp/tracesync-bench.Ab3xYz/scale/tree"
	const perTx, lag = 16, 4
	rnd := rand.New(rand.NewPCG(1, 2))
	order := rnd.Perm(files)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	recs := make([]PathRecord, files)
	for n, i := range order {
		p := fmt.Sprintf("%s/d%04d/f%07d.json", root, i/1000, i)
		at := now.Add(time.Duration(n) * 1731 * time.Microsecond)
		recs[n] = PathRecord{Path: p, Root: root, Hash: hashOf(p), Size: 9, ModTime: now.Add(-time.Hour + time.Duration(i)*time.Millisecond),
			Dev: 66306, Ino: 5_000_000 + uint64(i), State: StatePending, FirstSeen: at, UpdatedAt: at}
	}
	pending := func(batch []PathRecord) error {
		return db.Update(context.Background(), func(tx *Tx) error {
			for _, r := range batch {
				if err := tx.PutIntent(Intent{Hash: r.Hash, Path: r.Path, Filename: filepath.Base(r.Path), Size: r.Size, Phase: PhasePresign, StartedAt: r.FirstSeen}); err != nil {
					return err
				}
				if err := tx.PutPath(r); err != nil {
					return err
				}
			}
			return nil
		})
	}
	record := func(batch []PathRecord) error {
		return db.Update(context.Background(), func(tx *Tx) error {
			for _, r := range batch {
				name := strings.TrimSuffix(filepath.Base(r.Path), ".json") + "." + r.Hash.String()[:16] + ".json"
				id := fmt.Sprintf("tr_e2611b68_%x", r.Ino-5_000_000)
				at := r.FirstSeen.Add(40 * time.Millisecond)
				if err := tx.PutContent(Content{Hash: r.Hash, Filename: name, Size: r.Size, TraceIDs: []string{id}, UploadedAt: at}); err != nil {
					return err
				}
				r.State, r.UpdatedAt = StateUploaded, at
				if err := tx.PutPath(r); err != nil {
					return err
				}
				if err := tx.DeleteIntent(r.Hash); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for start := 0; start < files+lag*perTx; start += perTx {
		if start < files {
			if err := pending(recs[start:min(start+perTx, files)]); err != nil {
				tb.Fatal(err)
			}
		}
		if done := start - lag*perTx; done >= 0 {
			if err := record(recs[done:min(done+perTx, files)]); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// Compact packs the pages full, whatever order the records came in, and
// the file's apparent size is its pages.
func TestCompactFillsPages(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	rnd := rand.New(rand.NewPCG(3, 4))
	putUploaded(t, db, rnd.Perm(3000), 3000)
	db.Close()
	if _, _, err := Compact(dir); err != nil {
		t.Fatal(err)
	}
	fs, err := measureFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fs.buckets {
		if b.leafAlloc > 4*4096 && float64(b.leafInuse)/float64(b.leafAlloc) < 0.95 {
			t.Errorf("bucket %s after compact: %d of %d leaf bytes in use, want at least 95%%", b.name, b.leafInuse, b.leafAlloc)
		}
	}
	if fs.apparent != fs.pages {
		t.Errorf("compacted file: apparent size %d, pages %d; want equal", fs.apparent, fs.pages)
	}
}

// TestCompactIfSlack: a state grown by many small commits in random order
// (as a backfill grows it) is compacted, keeps every record, and a second
// call finds too little slack to copy it again.
func TestCompactIfSlack(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	rnd := rand.New(rand.NewPCG(5, 6))
	t.Log("insert order: rand.NewPCG(5, 6), fixed")
	const files = 6000
	putUploaded(t, db, rnd.Perm(files), 20)
	db.Close()
	if _, _, done, err := CompactIfSlack(dir, 1<<40); err != nil || done {
		t.Fatalf("CompactIfSlack with a slack floor above the file: done %v, err %v; want left alone", done, err)
	}
	before, after, done, err := CompactIfSlack(dir, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: %d -> %d bytes on disk", files, before, after)
	if !done || after*4 > before*3 {
		t.Fatalf("CompactIfSlack: done %v, %d -> %d bytes; want done and at least a quarter off", done, before, after)
	}
	if b2, a2, done, err := CompactIfSlack(dir, 64<<10); err != nil || done || a2 != b2 {
		t.Errorf("CompactIfSlack on a compacted file: done %v (%d -> %d), err %v; want left alone", done, b2, a2, err)
	}
	db = openT(t, dir, "")
	defer db.Close()
	n := 0
	_ = db.ForEachPath("", func(PathRecord) error { n++; return nil })
	if n != files {
		t.Errorf("after CompactIfSlack: %d paths, want %d", n, files)
	}
	checkConsistent(t, db)
}

// putUploaded records file i of ids as uploaded (a content of its own and
// its path, in one of 7 folders), perTx files a transaction.
func putUploaded(t *testing.T, db *DB, ids []int, perTx int) {
	t.Helper()
	for start := 0; start < len(ids); start += perTx {
		update(t, db, func(tx *Tx) error {
			for _, i := range ids[start:min(start+perTx, len(ids))] {
				p := fmt.Sprintf("/r/d%d/f%05d.json", i%7, i)
				if err := tx.PutContent(Content{Hash: hashOf(p), Filename: "f.json", TraceIDs: []string{p}}); err != nil {
					return err
				}
				if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// BenchmarkBackfillPageWrites reports the pages bbolt writes per file while
// fillBackfill records a backfill, at a size where the contents bucket fits
// in a few branch pages and at one ten times larger: a page written is a
// pwrite and part of an fdatasync, the cost that grows with the archive.
func BenchmarkBackfillPageWrites(b *testing.B) {
	for _, files := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(files), func(b *testing.B) {
			for b.Loop() {
				db, err := Open(b.TempDir(), Options{Target: targetA})
				if err != nil {
					b.Fatal(err)
				}
				before := db.bolt.Stats().TxStats
				fillBackfill(b, db, files)
				after := db.bolt.Stats().TxStats
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				n := float64(files)
				b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/n, "pages/file")
				b.ReportMetric(float64(after.GetSpill()-before.GetSpill())/n, "spills/file")
			}
		})
	}
}
