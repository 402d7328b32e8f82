package store

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

// ForEachContent yields every content once with its live paths (current
// bytes and earlier segments), none for a content only removed files held,
// and skips refs of paths whose content is not uploaded yet.
func TestForEachContentListsLivePaths(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	update(t, db, func(tx *Tx) error {
		for _, c := range []string{"a", "b", "seg0", "gone"} {
			if err := tx.PutContent(Content{Hash: hashOf(c), Filename: c + ".jsonl", TraceIDs: []string{"tr-" + c}}); err != nil {
				return err
			}
		}
		for _, r := range []PathRecord{
			pathRec("/r/a1.json", "a", StateUploaded),
			pathRec("/r/a2.json", "a", StateUploaded),
			pathRec("/r/pending.json", "not-uploaded", StatePending),
			pathRec("/r/gone.json", "gone", StateRemoved),
		} {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		grow := pathRec("/r/grow.jsonl", "b", StateUploaded)
		grow.Prior, grow.Start, grow.End = 1, 4, 8
		if err := tx.PutPath(grow); err != nil {
			return err
		}
		return tx.AppendSegment(grow.Path, 0, Segment{Hash: hashOf("seg0"), End: 4})
	})
	if ok, err := db.HasTarget(); !ok || err != nil {
		t.Fatalf("HasTarget: %v, %v; want true", ok, err)
	}
	got := map[string][]string{}
	err := db.ForEachContent(func(c Content, paths []string) error {
		if _, dup := got[c.Filename]; dup {
			t.Errorf("content %s yielded twice", c.Filename)
		}
		got[c.Filename] = paths
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"a.jsonl":    {"/r/a1.json", "/r/a2.json"},
		"b.jsonl":    {"/r/grow.jsonl"},
		"seg0.jsonl": {"/r/grow.jsonl"},
		"gone.jsonl": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("contents and paths:\n got %v\nwant %v", got, want)
	}

	other := openT(t, t.TempDir(), "")
	if ok, err := other.HasTarget(); ok || err != nil {
		t.Errorf("HasTarget of a state never used: %v, %v; want false", ok, err)
	}
}

// ForgetContent forgets every path holding the content, drops the other
// segments of a forgotten chain that nothing else holds, keeps contents
// other paths still hold, and leaves the refs index consistent.
func TestForgetContentDropsPathsAndTheirChains(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	update(t, db, func(tx *Tx) error {
		for _, c := range []string{"a", "b", "seg0", "keep"} {
			if err := tx.PutContent(Content{Hash: hashOf(c), Filename: c + ".jsonl", TraceIDs: []string{"tr-" + c}}); err != nil {
				return err
			}
		}
		for _, r := range []PathRecord{
			pathRec("/r/a1.json", "a", StateUploaded),
			pathRec("/r/keep.json", "keep", StateUploaded),
		} {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		grow := pathRec("/r/grow.jsonl", "b", StateUploaded)
		grow.Prior, grow.Start, grow.End = 1, 4, 8
		if err := tx.PutPath(grow); err != nil {
			return err
		}
		return tx.AppendSegment(grow.Path, 0, Segment{Hash: hashOf("seg0"), End: 4})
	})
	var paths []string
	var dropped []Content
	update(t, db, func(tx *Tx) error {
		var err error
		paths, dropped, err = tx.ForgetContent(hashOf("seg0"))
		return err
	})
	if !slices.Equal(paths, []string{"/r/grow.jsonl"}) {
		t.Errorf("forgotten paths %v, want [/r/grow.jsonl]", paths)
	}
	var names []string
	for _, c := range dropped {
		names = append(names, c.Filename)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"b.jsonl", "seg0.jsonl"}) {
		t.Errorf("dropped contents %v, want the chain's two: [b.jsonl seg0.jsonl]", names)
	}
	if _, err := db.GetPath("/r/grow.jsonl"); !errors.Is(err, ErrNotFound) {
		t.Errorf("forgotten path still recorded: %v", err)
	}
	for _, c := range []string{"a", "keep"} {
		if _, err := db.GetContent(hashOf(c)); err != nil {
			t.Errorf("content %s, held by another path, is gone: %v", c, err)
		}
	}
	checkConsistent(t, db)

	// A content no live path holds is dropped alone.
	update(t, db, func(tx *Tx) error {
		if _, err := tx.RemovePath("/r/a1.json", t0); err != nil {
			return err
		}
		var err error
		paths, dropped, err = tx.ForgetContent(hashOf("a"))
		return err
	})
	if len(paths) != 0 || len(dropped) != 1 || dropped[0].Filename != "a.jsonl" {
		t.Errorf("content without paths: forgot %v, dropped %v; want no path and a.jsonl", paths, dropped)
	}
	update(t, db, func(tx *Tx) error {
		if _, _, err := tx.ForgetContent(hashOf("a")); !errors.Is(err, ErrNotFound) {
			t.Errorf("forgetting a content twice: %v, want ErrNotFound", err)
		}
		return nil
	})
	checkConsistent(t, db)
}
