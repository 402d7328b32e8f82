package store

import (
	"fmt"
	"testing"
	"time"
)

// fastpathRecords are records of every shape encodePath writes: each state,
// hashed or not, whole or chained, with and without More.
func fastpathRecords() []PathRecord {
	var out []PathRecord
	for i, s := range States {
		r := pathRec(fmt.Sprintf("/r/a/%d.json", i), "", s)
		r.LastError = "a reason"
		out = append(out, r)
		h := pathRec(fmt.Sprintf("/r/b/%d.json", i), fmt.Sprintf("content %d", i), s)
		h.ModTime = time.Unix(1700000000+int64(i), 123456789).UTC()
		h.Dev, h.Ino, h.Size = 1<<40+uint64(i), 1<<50+uint64(i), 1<<33
		h.NextAttempt, h.Attempts = t0.Add(time.Hour), 3
		if s == StateRemoved {
			h.RemovedAt = t0
		}
		out = append(out, h)
		c := h
		c.Path = fmt.Sprintf("/r/c/%d.jsonl", i)
		c.Prior, c.Start, c.End, c.More = 2, 100, 250, i%2 == 0
		c.Print.Head[0], c.Print.Tail[15] = 1, 2
		out = append(out, c)
	}
	return out
}

// TestPathStatMatchesDecode: for every shape of record, decodePathStat
// reads what decodePath reads.
func TestPathStatMatchesDecode(t *testing.T) {
	for _, r := range fastpathRecords() {
		got, rootID, err := decodePathStat(encodePath(&r, 0))
		if err != nil {
			t.Fatalf("decodePathStat %s: %v", r.Path, err)
		}
		if got.root != r.Root || rootID != 0 {
			t.Errorf("decodePathStat %s: root %q (folder id %d), want %q", r.Path, got.root, rootID, r.Root)
		}
		want := PathStat{State: r.State, Hashed: !r.Hash.IsZero(), Size: r.Size, ModTime: r.ModTime, Dev: r.Dev, Ino: r.Ino, More: r.More}
		if r.State == StateRemoved {
			want.RemovedAt = r.RemovedAt
		}
		if got.PathStat != want || !got.RemovedAt.Equal(want.RemovedAt) {
			t.Errorf("decodePathStat %s:\n got %+v\nwant %+v", r.Path, got.PathStat, want)
		}
	}
	if _, _, err := decodePathStat([]byte{pathFormat}); err == nil {
		t.Errorf("decodePathStat of a cut record: no error")
	}
}

func TestReadPathsAndScanPaths(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	recs := fastpathRecords()
	update(t, db, func(tx *Tx) error {
		for _, r := range recs {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return nil
	})
	err := db.ReadPaths(func(r *PathReader) error {
		for _, rec := range recs {
			st, ok, err := r.Stat([]byte(rec.Path))
			if err != nil || !ok {
				return fmt.Errorf("Stat %s: ok %v, err %v", rec.Path, ok, err)
			}
			_, unchanged := db.Unchanged(rec.Path, rec.Dev, rec.Ino, rec.Size, rec.ModTime)
			if st.Unchanged(rec.Dev, rec.Ino, rec.Size, rec.ModTime) != unchanged {
				return fmt.Errorf("Stat %s: Unchanged %v, DB.Unchanged %v", rec.Path, !unchanged, unchanged)
			}
		}
		if _, ok, err := r.Stat([]byte("/r/none.json")); ok || err != nil {
			return fmt.Errorf("Stat of a path without a record: ok %v, err %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Past a chunk, in order, and only under the prefix.
	many := scanChunk*2 + 7
	update(t, db, func(tx *Tx) error {
		for i := range many {
			if err := tx.PutPath(pathRec(fmt.Sprintf("/r/m/%06d.json", i), "m", StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	var seen []string
	if err := db.ScanPaths("/r/m/", func(p, _ []byte, st PathStat) bool {
		seen = append(seen, string(p))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != many {
		t.Fatalf("ScanPaths /r/m/: %d paths, want %d", len(seen), many)
	}
	for i, p := range seen {
		if want := fmt.Sprintf("/r/m/%06d.json", i); p != want {
			t.Fatalf("ScanPaths /r/m/: path %d is %s, want %s", i, p, want)
		}
	}
	n := 0
	if err := db.ScanPaths("", func(_, _ []byte, _ PathStat) bool { n++; return n < 10 }); err != nil || n != 10 {
		t.Fatalf("ScanPaths stopped by fn: %d calls (err %v), want 10", n, err)
	}
}
