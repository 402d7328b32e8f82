package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// encodeStub is schema 5's value under the hash of a content not recorded
// yet: stubFormat, then the holder's key. Frozen: only schema 5 files hold
// it, and migrate5to6 and read-only opens of them read it.
func encodeStub(holder []byte) []byte {
	return append([]byte{stubFormat}, holder...)
}

// contentsKeys counts the keys of the contents and holders buckets.
func contentsKeys(t *testing.T, db *DB) (contents, holders int) {
	t.Helper()
	err := db.bolt.View(func(btx *bolt.Tx) error {
		tx := newTx(btx, db.target, newDirCache())
		contents, holders = tx.contents.Stats().KeyN, tx.holders.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return contents, holders
}

// A content with two paths, followed through the buckets: while its
// upload waits, the first path waits in the holders bucket (nothing under
// its hash in the contents bucket, whose keys land on random pages) and
// the second is a ref key; the upload's record takes the first over; when
// the first path goes, the second takes its place in the record; dropping
// the record moves it back to the holders bucket.
func TestHolderPassesThroughTheBuckets(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	a, b := pathRec("/r/a.json", "x", StatePending), pathRec("/r/b.json", "x", StatePending)
	update(t, db, func(tx *Tx) error { return tx.PutPath(a) })
	if c, h := contentsKeys(t, db); c != 0 || h != 1 {
		t.Fatalf("one pending path: %d contents keys, %d holders, want 0 and 1", c, h)
	}
	update(t, db, func(tx *Tx) error { return tx.PutPath(b) })
	if refs, _ := db.Refs(a.Hash); !slices.Equal(refs, []string{"/r/a.json", "/r/b.json"}) {
		t.Fatalf("refs of a pending content = %v", refs)
	}
	checkConsistent(t, db)
	update(t, db, func(tx *Tx) error {
		return tx.PutContent(Content{Hash: a.Hash, Filename: "a.json", Size: 1, TraceIDs: []string{"t1"}, UploadedAt: t0})
	})
	if c, h := contentsKeys(t, db); c != 2 || h != 0 {
		t.Fatalf("uploaded: %d contents keys, %d holders, want 2 (the record, b's ref) and 0", c, h)
	}
	checkConsistent(t, db)
	// The holder goes: its ref key takes its place, in the record.
	update(t, db, func(tx *Tx) error { _, err := tx.RemovePath("/r/a.json", t0); return err })
	if refs, _ := db.Refs(a.Hash); !slices.Equal(refs, []string{"/r/b.json"}) {
		t.Fatalf("refs after the holder went = %v", refs)
	}
	checkConsistent(t, db)
	// Forgetting the record of a content still held puts its holder back
	// in the holders bucket.
	update(t, db, func(tx *Tx) error { return tx.DeleteContent(a.Hash) })
	if c, h := contentsKeys(t, db); c != 0 || h != 1 {
		t.Fatalf("record dropped: %d contents keys, %d holders, want 0 and 1", c, h)
	}
	checkConsistent(t, db)
	update(t, db, func(tx *Tx) error { return tx.ForgetPath("/r/b.json") })
	if c, h := contentsKeys(t, db); c != 0 || h != 0 {
		t.Fatalf("no path left: %d contents keys, %d holders, want 0 and 0", c, h)
	}
	checkConsistent(t, db)
}

// toSchema5 turns db's file back into schema 5: no holders bucket, each of
// its entries a stub under the hash in the contents bucket.
func toSchema5(t *testing.T, db *DB) {
	t.Helper()
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		ns := btx.Bucket(bucketTargets).Bucket([]byte(db.target))
		contents := ns.Bucket(bucketContents)
		if err := ns.Bucket(bucketHolders).ForEach(func(k, v []byte) error {
			return contents.Put(bytes.Clone(k), encodeStub(bytes.Clone(v)))
		}); err != nil {
			return err
		}
		if err := ns.DeleteBucket(bucketHolders); err != nil {
			return err
		}
		return btx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 5))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A schema 5 file reads as it is in a read-only open (a stub is its
// content's holder), and a writable open moves its stubs into the holders
// bucket, after which it is consistent and every ref is where it was.
func TestMigrateSchema5Stubs(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	pending, up := pathRec("/r/p.json", "p", StatePending), pathRec("/r/u.json", "u", StateUploaded)
	twin := pathRec("/r/p2.json", "p", StateQuarantined)
	update(t, db, func(tx *Tx) error {
		for _, r := range []PathRecord{pending, twin, up} {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return tx.PutContent(Content{Hash: up.Hash, Filename: "u.json", Size: 1, TraceIDs: []string{"t1"}, UploadedAt: t0})
	})
	toSchema5(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := OpenReadOnly(dir, Options{Target: targetA})
	if err != nil {
		t.Fatalf("read-only open of schema 5: %v", err)
	}
	if refs, _ := ro.Refs(pending.Hash); !slices.Equal(refs, []string{"/r/p.json", "/r/p2.json"}) {
		t.Fatalf("schema 5 read-only: refs of a pending content = %v", refs)
	}
	if _, err := ro.GetContent(pending.Hash); err == nil {
		t.Fatal("schema 5 read-only: a stub read as a content record")
	}
	_ = ro.Close()

	db = openT(t, dir, targetA)
	if v := schemaOf(t, db); v != SchemaVersion {
		t.Fatalf("schema after a writable open = %d, want %d", v, SchemaVersion)
	}
	if c, h := contentsKeys(t, db); c != 2 || h != 1 {
		t.Fatalf("migrated: %d contents keys, %d holders, want 2 (u's record, p2's ref key) and 1 (p's holder)", c, h)
	}
	if refs, _ := db.Refs(pending.Hash); !slices.Equal(refs, []string{"/r/p.json", "/r/p2.json"}) {
		t.Fatalf("migrated: refs of a pending content = %v", refs)
	}
	if refs, _ := db.Refs(up.Hash); !slices.Equal(refs, []string{"/r/u.json"}) {
		t.Fatalf("migrated: refs of an uploaded content = %v", refs)
	}
	checkConsistent(t, db)
}

// The upgrade moves a schema 5 file's stubs a bounded number per
// transaction, resuming after the last one moved; the file is consistent
// afterwards, and between two of those transactions (a crash) it reads
// the same refs.
func TestMigrateSchema5StubsInBatches(t *testing.T) {
	defer func(n int) { stubsPerTx = n }(stubsPerTx)
	stubsPerTx = 3
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	var recs []PathRecord
	for i := range 10 {
		recs = append(recs, pathRec(fmt.Sprintf("/r/p%02d.json", i), fmt.Sprint("c", i), StatePending))
	}
	recs = append(recs, pathRec("/r/twin.json", "c3", StateQuarantined))
	update(t, db, func(tx *Tx) error {
		for _, r := range recs {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return nil
	})
	toSchema5(t, db)
	refsOf := func(db *DB) map[string][]string {
		m := map[string][]string{}
		for _, r := range recs {
			refs, err := db.Refs(r.Hash)
			if err != nil {
				t.Fatal(err)
			}
			m[r.Path] = refs
		}
		return m
	}
	want := refsOf(db)

	// Between two transactions of the move: half moved, half stubs.
	var from []byte
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		n, err := moveStubs(btx.Bucket(bucketTargets).Bucket([]byte(targetA)), &from, 5)
		if n != 5 {
			t.Errorf("moved %d stubs, want 5", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(db); !reflect.DeepEqual(got, want) {
		t.Fatalf("half moved: refs %v, want %v", got, want)
	}
	if c, h := contentsKeys(t, db); c != 6 || h != 5 {
		t.Fatalf("half moved: %d contents keys, %d holders, want 6 (5 stubs, the twin's ref key) and 5", c, h)
	}
	// The rest, 3 and then 2, before the schema step.
	if err := moveSchema5Stubs(db.bolt, db.file); err != nil {
		t.Fatal(err)
	}
	if c, h := contentsKeys(t, db); c != 1 || h != 10 || schemaOf(t, db) != 5 {
		t.Fatalf("moved in batches: %d contents keys, %d holders, schema %d; want 1 (the twin's ref key), 10, still 5", c, h, schemaOf(t, db))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openT(t, dir, targetA)
	if v := schemaOf(t, db); v != SchemaVersion {
		t.Fatalf("schema after a writable open = %d, want %d", v, SchemaVersion)
	}
	if c, h := contentsKeys(t, db); c != 1 || h != 10 {
		t.Fatalf("migrated: %d contents keys, %d holders, want 1 (the twin's ref key) and 10", c, h)
	}
	if got := refsOf(db); !reflect.DeepEqual(got, want) {
		t.Fatalf("migrated: refs %v, want %v", got, want)
	}
	checkConsistent(t, db)
}
