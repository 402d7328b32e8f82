package store

import (
	"context"
	"reflect"
	"slices"
	"testing"
)

// A growing file's chain: each earlier segment is a key of its own with a
// reference to its content; removal lets go of every reference, and a
// rename finds the chain by device and inode.
func TestChainRefsAndInodes(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	rec := pathRec("/r/app.jsonl", "seg2", StateUploaded)
	rec.Start, rec.End, rec.Prior = 10, 20, 2
	rec.Print.Head[0], rec.Print.Tail[0] = 1, 2
	update(t, db, func(tx *Tx) error {
		if err := tx.PutPath(rec); err != nil {
			return err
		}
		if err := tx.AppendSegment(rec.Path, 0, Segment{Hash: hashOf("seg0"), End: 5}); err != nil {
			return err
		}
		return tx.AppendSegment(rec.Path, 1, Segment{Hash: hashOf("seg1"), End: 10})
	})
	checkConsistent(t, db)
	got, err := db.GetPath(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("record read back:\n%+v\nwant\n%+v", got, rec)
	}
	segs, _ := db.Chain(rec.Path)
	if want := []Segment{{hashOf("seg0"), 5}, {hashOf("seg1"), 10}}; !slices.Equal(segs, want) {
		t.Fatalf("chain %v, want %v", segs, want)
	}
	for _, c := range []string{"seg0", "seg1", "seg2"} {
		if refs, _ := db.Refs(hashOf(c)); !slices.Equal(refs, []string{rec.Path}) {
			t.Errorf("refs of %s: %v, want the path", c, refs)
		}
	}
	if p, ok := db.PathByInode(rec.Dev, rec.Ino); !ok || p != rec.Path {
		t.Errorf("PathByInode: %q %v, want %s", p, ok, rec.Path)
	}
	// A record without a chain carries no chain fields.
	plain := pathRec("/r/a.json", "x", StateUploaded)
	if enc := encodePath(&plain, 1); enc[1]&pfChain != 0 {
		t.Errorf("a whole file's record has the chain flag (flags %#x)", enc[1])
	}

	update(t, db, func(tx *Tx) error { _, err := tx.RemovePath(rec.Path, t0); return err })
	checkConsistent(t, db)
	for _, c := range []string{"seg0", "seg1", "seg2"} {
		if n, _ := db.Refs(hashOf(c)); len(n) != 0 {
			t.Errorf("refs of %s after removal: %v, want none", c, n)
		}
	}
	if _, ok := db.PathByInode(rec.Dev, rec.Ino); ok {
		t.Error("a removed path is still found by its inode")
	}
	if segs, _ := db.Chain(rec.Path); len(segs) != 0 {
		t.Errorf("a removed path keeps %d segments", len(segs))
	}
}

// DropChain lets go of the earlier segments (a file rewritten from byte 0);
// ForgetPath forgets them with the contents nothing else holds.
func TestDropChainAndForget(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	rec := pathRec("/r/app.jsonl", "seg1", StateUploaded)
	rec.Start, rec.End, rec.Prior = 5, 10, 1
	other := pathRec("/r/other.jsonl", "seg0", StateUploaded) // holds seg0's bytes too
	update(t, db, func(tx *Tx) error {
		for _, c := range []string{"seg0", "seg1"} {
			if err := tx.PutContent(Content{Hash: hashOf(c), Filename: c, TraceIDs: []string{c}}); err != nil {
				return err
			}
		}
		if err := tx.PutPath(other); err != nil {
			return err
		}
		if err := tx.PutPath(rec); err != nil {
			return err
		}
		return tx.AppendSegment(rec.Path, 0, Segment{Hash: hashOf("seg0"), End: 5})
	})
	checkConsistent(t, db)
	update(t, db, func(tx *Tx) error {
		fresh := rec
		fresh.Hash, fresh.Start, fresh.End, fresh.Prior = hashOf("new"), 0, 3, 0
		if err := tx.PutPath(fresh); err != nil {
			return err
		}
		segs, err := tx.DropChain(rec.Path)
		if len(segs) != 1 {
			t.Errorf("DropChain returned %v, want seg0", segs)
		}
		return err
	})
	checkConsistent(t, db)
	if refs, _ := db.Refs(hashOf("seg0")); !slices.Equal(refs, []string{other.Path}) {
		t.Errorf("refs of seg0: %v, want only %s", refs, other.Path)
	}
	update(t, db, func(tx *Tx) error { return tx.PutPath(rec) })
	update(t, db, func(tx *Tx) error { return tx.AppendSegment(rec.Path, 0, Segment{Hash: hashOf("seg0"), End: 5}) })
	update(t, db, func(tx *Tx) error { return tx.ForgetPath(rec.Path) })
	checkConsistent(t, db)
	if _, err := db.GetContent(hashOf("seg1")); err == nil {
		t.Error("seg1, held by nothing else, kept after ForgetPath")
	}
	if _, err := db.GetContent(hashOf("seg0")); err != nil {
		t.Error("seg0, held by another path, forgotten with the path")
	}
}

// A schema 3 file as released (no segments or inodes buckets) opens as
// schema 5: its records read as they are, and the segments and inodes
// buckets are there to write.
func TestMigrateFromSchema3(t *testing.T) {
	dir := t.TempDir()
	rec := pathRec("/r/app.jsonl", "whole", StateUploaded)
	writeOld(t, dir, oldState{version: 3, noChains: true, paths: []PathRecord{rec}})
	db := openT(t, dir, targetA)
	if v := schemaOf(t, db); v != SchemaVersion {
		t.Fatalf("schema after open = %d, want %d", v, SchemaVersion)
	}
	if got, err := db.GetPath(rec.Path); err != nil || got.SegEnd() != rec.Size || got.Segments() != 1 {
		t.Fatalf("the whole .jsonl after the step: %+v, %v; want one segment ending at its size", got, err)
	}
	err := db.Update(context.Background(), func(tx *Tx) error {
		return tx.AppendSegment(rec.Path, 0, Segment{Hash: rec.Hash, End: rec.Size})
	})
	if err != nil {
		t.Fatalf("append a segment after the step: %v", err)
	}
}
