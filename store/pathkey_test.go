package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// ForEachPath keeps string-prefix semantics over folders: a prefix that
// ends inside a name matches that folder's names and the folders that
// start with it, and a walk resumed between chunks (in a folder and
// between folders) visits each record once, folder by folder.
func TestForEachPathByFolder(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	var all []string
	update(t, db, func(tx *Tx) error {
		for _, dir := range []string{"/a/", "/a/b/", "/a/bc/", "/a/c/", "/ab/", "/b/"} {
			n := 3
			if dir == "/a/b/" || dir == "/a/c/" {
				n = forEachChunk + 300 // the walk resumes inside the folder and at its end
			}
			for i := range n {
				p := fmt.Sprintf("%s%c%04d.json", dir, "bxz"[i%3], i)
				all = append(all, p)
				if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
					return err
				}
			}
		}
		return tx.PutPath(pathRec("/a/b", "file named like a folder", StateUploaded))
	})
	all = append(all, "/a/b")
	walk := func(prefix string) []string {
		var got []string
		if err := db.ForEachPath(prefix, func(r PathRecord) error { got = append(got, r.Path); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, prefix := range []string{"", "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/x", "/a/bc", "/b/z0", "/c", "/a/b/b0000.json"} {
		var want []string
		for _, p := range all {
			if strings.HasPrefix(p, prefix) {
				want = append(want, p)
			}
		}
		got := walk(prefix)
		// Grouped by folder: sorted by (folder, name).
		byFolder := slices.Clone(want)
		slices.SortFunc(byFolder, func(a, b string) int {
			ad, an := splitLast(a)
			bd, bn := splitLast(b)
			return cmpOr(strings.Compare(ad, bd), strings.Compare(an, bn))
		})
		if !slices.Equal(got, byFolder) {
			t.Errorf("ForEachPath(%q): %d paths, want %d grouped by folder (first got %v, want %v)", prefix, len(got), len(byFolder), got[:min(3, len(got))], byFolder[:min(3, len(byFolder))])
		}
	}
}

func splitLast(p string) (string, string) {
	i := strings.LastIndexByte(p, '/')
	return p[:i+1], p[i+1:]
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// A folder created in a transaction that rolls back is not remembered: a
// folder created next gets its id, and the first folder's paths stay
// unknown.
func TestRolledBackFolderIsNotCached(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	boom := errors.New("boom")
	err := db.Update(context.Background(), func(tx *Tx) error {
		if err := tx.PutPath(pathRec("/x/a.json", "x", StateUploaded)); err != nil {
			return err
		}
		if _, err := tx.GetPath("/x/a.json"); err != nil {
			return fmt.Errorf("read back in its own transaction: %w", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v, want boom", err)
	}
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/y/a.json", "y", StateUploaded)) })
	if r, err := db.GetPath("/x/a.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a path of the rolled back folder: %+v, %v; want ErrNotFound", r, err)
	}
	if r, err := db.GetPath("/y/a.json"); err != nil || r.Path != "/y/a.json" {
		t.Fatalf("GetPath(/y/a.json) = %+v, %v", r, err)
	}
	checkConsistent(t, db)
}

// Prune drops the folders nothing is recorded in any more, and a folder
// dropped, even in a transaction shared with other writes, can be used
// again.
func TestPruneDropsEmptyFolders(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	gone := pathRec("/old/day1/a.json", "a", StateRemoved)
	gone.RemovedAt = t0.Add(-100 * 24 * time.Hour)
	update(t, db, func(tx *Tx) error {
		if err := tx.PutPath(gone); err != nil {
			return err
		}
		r := pathRec("/keep/b.json", "b", StateUploaded)
		r.Root = "/rootonly"
		return tx.PutPath(r)
	})
	if _, err := db.Prune(context.Background(), DefaultRetention); err != nil {
		t.Fatal(err)
	}
	folders := func() []string {
		var out []string
		_ = db.view(func(tx *Tx) error {
			return tx.dirs.ForEach(func(k, _ []byte) error {
				if k[0] != dirIDPrefix {
					out = append(out, string(k))
				}
				return nil
			})
		})
		return out
	}
	if got, want := folders(), []string{"/keep/", "/rootonly/"}; !slices.Equal(got, want) {
		t.Errorf("folders after prune: %v, want %v", got, want)
	}
	if r, err := db.GetPath("/keep/b.json"); err != nil || r.Root != "/rootonly" {
		t.Errorf("record kept: %+v, %v", r, err)
	}
	// The dropped folder again, in one transaction with a prune.
	wg := make(chan error, 2)
	go func() { _, err := db.Prune(context.Background(), DefaultRetention); wg <- err }()
	go func() {
		wg <- db.Update(context.Background(), func(tx *Tx) error { return tx.PutPath(pathRec("/old/day1/c.json", "c", StatePending)) })
	}()
	for range 2 {
		if err := <-wg; err != nil {
			t.Fatal(err)
		}
	}
	if r, err := db.GetPath("/old/day1/c.json"); err != nil || r.Path != "/old/day1/c.json" {
		t.Errorf("a path in a folder dropped before: %+v, %v", r, err)
	}
	checkConsistent(t, db)
}

// A reader whose snapshot predates the deletion of a folder does not
// teach the cache that folder's id: a writer after the deletion would
// write keys under an id that no longer names a folder.
func TestStaleReaderDoesNotCacheDeletedFolder(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	gone := pathRec("/old/a.json", "a", StateRemoved)
	gone.RemovedAt = t0.Add(-100 * 24 * time.Hour)
	update(t, db, func(tx *Tx) error { return tx.PutPath(gone) })
	old, err := db.bolt.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Prune(context.Background(), DefaultRetention); err != nil {
		t.Fatal(err)
	}
	if _, err := newTx(old, db.target, db.dirs).dirID("/old/", false); err != nil {
		t.Fatalf("the old snapshot's folder: %v", err)
	}
	_ = old.Rollback()
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/old/b.json", "b", StatePending)) })
	if r, err := db.GetPath("/old/b.json"); err != nil || r.Path != "/old/b.json" {
		t.Fatalf("GetPath(/old/b.json) = %+v, %v", r, err)
	}
	checkConsistent(t, db)
}
