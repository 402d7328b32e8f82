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

// TestStatNames: a directory's names looked up together, in any order,
// with records missing between them (more than maxSteps in a row) and
// names without a record, answer as one lookup of each would.
func TestStatNames(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	update(t, db, func(tx *Tx) error {
		for i := range 100 {
			if i%3 == 0 || (i > 40 && i < 60) {
				continue // no record: a gap longer than maxSteps from 41 to 59
			}
			p := fmt.Sprintf("/r/d/%03d.json", i)
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		// Neighbours of the directory on both sides.
		for _, p := range []string{"/r/c/999.json", "/r/d.json", "/r/d/", "/r/e/000.json"} {
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	var names []string
	for i := 99; i >= 0; i -= 2 { // out of order, every other one
		names = append(names, fmt.Sprintf("%03d.json", i))
	}
	names = append(names, "none.json", "000.json", "")
	err := db.ReadPaths(func(r *PathReader) error {
		got := make([]bool, len(names))
		calls := 0
		r.StatNames("/r/d", len(names), func(i int) string { return names[i] }, func(i int, st PathStat, ok bool) {
			calls++
			got[i] = ok
			if ok && st.Size != int64(len("/r/d/"+names[i])) {
				t.Errorf("StatNames %s: size %d, want the record's %d", names[i], st.Size, len("/r/d/"+names[i]))
			}
		})
		if calls != len(names) {
			t.Errorf("StatNames called fn %d times for %d names", calls, len(names))
		}
		for i, n := range names {
			_, want, _ := r.Stat([]byte("/r/d/" + n))
			if got[i] != want {
				t.Errorf("StatNames %q: found %v, Stat says %v", n, got[i], want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
