package store

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// contentKeys counts the keys of the contents bucket: values under a hash
// and ref keys.
func contentKeys(t *testing.T, db *DB) (records, refs int) {
	t.Helper()
	_ = db.view(func(tx *Tx) error {
		return tx.contents.ForEach(func(k, _ []byte) error {
			if isRefKey(k) {
				refs++
			} else {
				records++
			}
			return nil
		})
	})
	return records, refs
}

// A path whose content is not recorded yet is named in the holders bucket,
// which no read sees as a content; the record, once written, keeps the
// path as its holder and no ref key is written for it; deleting the record
// puts the holder back; forgetting the path leaves nothing.
func TestHolderNamesThePathOfAPendingContent(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	rec := pathRec("/r/a.json", "a", StatePending)
	h := rec.Hash
	update(t, db, func(tx *Tx) error { return tx.PutPath(rec) })
	if n, r := contentKeys(t, db); n != 0 || r != 0 {
		t.Fatalf("after a pending path: %d values under hashes, %d ref keys; want none (the holder waits in its own bucket)", n, r)
	}
	if refs, _ := db.Refs(h); !slices.Equal(refs, []string{rec.Path}) {
		t.Errorf("Refs of a pending content: %v", refs)
	}
	if _, err := db.GetContent(h); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetContent of a pending content: %v, want ErrNotFound", err)
	}
	if c, _ := db.Counts(); c.Contents != 0 || c.Traces != 0 {
		t.Errorf("Counts with a pending content: %d contents, %d traces; want 0", c.Contents, c.Traces)
	}
	visited := 0
	_ = db.ForEachContent(func(Content, []string) error { visited++; return nil })
	if visited != 0 {
		t.Errorf("ForEachContent visited %d contents, want none (pending)", visited)
	}
	c := Content{Hash: h, Filename: "a." + hashTag(h) + ".json", Size: 1, TraceIDs: []string{"tr-1"}, UploadedAt: t0}
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(c); err != nil {
			return err
		}
		rec.State = StateUploaded
		return tx.PutPath(rec)
	})
	if n, r := contentKeys(t, db); n != 1 || r != 0 {
		t.Fatalf("after the upload: %d values under hashes, %d ref keys; want the record alone", n, r)
	}
	if got, err := db.GetContent(h); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("GetContent = %+v, %v; want %+v", got, err, c)
	}
	update(t, db, func(tx *Tx) error { return tx.DeleteContent(h) })
	if refs, _ := db.Refs(h); !slices.Equal(refs, []string{rec.Path}) {
		t.Errorf("Refs after DeleteContent: %v, want the path still", refs)
	}
	if _, err := db.GetContent(h); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetContent after DeleteContent: %v, want ErrNotFound", err)
	}
	checkConsistent(t, db)
	update(t, db, func(tx *Tx) error { return tx.ForgetPath(rec.Path) })
	if n, r := contentKeys(t, db); n != 0 || r != 0 {
		t.Errorf("after forgetting the path: %d values under hashes, %d ref keys; want none", n, r)
	}
}

// When the holder lets go of a content, the first other path takes its
// place; the upload name, stored as the holder's base name with the hash
// tag in it, comes back the same under every holder and under none.
func TestHolderHandsOver(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	h := hashOf("same")
	c := Content{Hash: h, Filename: "a." + hashTag(h) + ".json", Size: 4, TraceIDs: []string{"tr-1", "tr-2"}, UploadedAt: t0}
	paths := []string{"/r/a.json", "/r/sub/b.json", "/r/c.json"}
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(c); err != nil {
			return err
		}
		for _, p := range paths {
			if err := tx.PutPath(pathRec(p, "same", StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	if n, r := contentKeys(t, db); n != 1 || r != 2 {
		t.Fatalf("three paths: %d values under hashes, %d ref keys; want the record and 2 ref keys", n, r)
	}
	_ = db.view(func(tx *Tx) error {
		v := tx.contents.Get(h[:])
		other := append(appendDirID(nil, 1), "x.json"...) // as long, another name
		if e := encodeContent(&c, other); len(v) >= len(e) {
			t.Errorf("the record held by a.json is %d bytes, no shorter than held by x.json (%d): the name is not derived from the holder", len(v), len(e))
		}
		return nil
	})
	for i, p := range paths {
		update(t, db, func(tx *Tx) error { _, err := tx.RemovePath(p, t0.Add(-40*24*time.Hour)); return err })
		checkConsistent(t, db)
		if got, err := db.GetContent(h); err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("after removing %s: GetContent = %+v, %v; want %+v", p, got, err, c)
		}
		want := slices.Clone(paths[i+1:])
		slices.Sort(want)
		if refs, _ := db.Refs(h); !slices.Equal(refs, want) {
			t.Errorf("after removing %s: Refs = %v, want %v", p, refs, want)
		}
		var n int
		update(t, db, func(tx *Tx) error { n = tx.RefCount(h); return nil })
		if n != len(want) {
			t.Errorf("after removing %s: RefCount = %d, want %d", p, n, len(want))
		}
	}
	if n, r := contentKeys(t, db); n != 1 || r != 0 {
		t.Errorf("no path left: %d values under hashes, %d ref keys; want the record alone", n, r)
	}
	st, err := db.Prune(context.Background(), DefaultRetention)
	if err != nil || st != (PruneStats{Paths: 3, Contents: 1}) {
		t.Errorf("Prune with no path holding the content: %+v, %v; want it dropped", st, err)
	}
}
