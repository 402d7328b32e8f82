package store

import (
	"fmt"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fileWithPaths makes a closed state file holding n path records, enough
// for the paths bucket to span many leaf pages under branch pages.
func fileWithPaths(t *testing.T, n int) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error {
		for i := range n {
			p := fmt.Sprintf("/r/%05d.json", i)
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, db.File()
}

// reachable returns the checker of file's current tree, run to the end:
// its seen set holds every page in use.
func reachable(t *testing.T, file string) (*pageChecker, []byte) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var txid uint64
	_ = bdb.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil })
	bdb.Close()
	meta, err := currentMeta(b, txid)
	if err != nil {
		t.Fatal(err)
	}
	c := &pageChecker{data: b, pageSize: uint64(ne.Uint32(meta[metaSizeOffset:])), hwm: ne.Uint64(meta[metaPgidOffset:])}
	c.seen = make([]uint64, (c.hwm+63)/64)
	if err := c.bucket(meta[metaRootOffset:metaRootOffset+bucketHeader], 0); err != nil {
		t.Fatalf("check of a sound file: %v", err)
	}
	return c, b
}

// middleLeaf returns the offset of a leaf page in use halfway through the file.
func middleLeaf(t *testing.T, c *pageChecker) uint64 {
	t.Helper()
	var leaves []uint64
	for id := uint64(2); id < c.hwm; id++ {
		if c.seen[id/64]&(1<<(id%64)) != 0 && ne.Uint16(c.data[id*c.pageSize+8:]) == leafPageFlag {
			leaves = append(leaves, id)
		}
	}
	if len(leaves) < 10 {
		t.Fatalf("%d leaf pages in use, want a file of many", len(leaves))
	}
	return leaves[len(leaves)/2] * c.pageSize
}

// TestCorruptLeafIsMovedAside: one leaf page deep in the paths bucket,
// garbled, is caught at open, not when a scan reads it.
func TestCorruptLeafIsMovedAside(t *testing.T) {
	for name, garble := range map[string]func(page []byte){
		"count":   func(p []byte) { ne.PutUint16(p[10:], 0xFFFF) },
		"type":    func(p []byte) { ne.PutUint16(p[8:], 0x40) },
		"element": func(p []byte) { ne.PutUint32(p[pageHeaderSize+4:], 1<<30) },
		"id":      func(p []byte) { ne.PutUint64(p, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			dir, file := fileWithPaths(t, 5000)
			c, b := reachable(t, file)
			garble(b[middleLeaf(t, c):])
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			db := openT(t, dir, targetA)
			checkRecovered(t, db, b)
		})
	}
}

// TestFreelistIsStored: a file last written without a stored freelist (an
// older build) opens, and is written with one from then on, so the next
// open need not walk the file to rebuild it.
func TestFreelistIsStored(t *testing.T) {
	dir, file := fileWithPaths(t, 500)
	bdb, err := bolt.Open(file, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	if fl := storedFreelist(t, file); fl != noFreelist {
		t.Fatalf("written by bbolt with NoFreelistSync: freelist page %d, want none", fl)
	}
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/after.json", "after", StateUploaded)) })
	if _, err := db.GetPath("/r/00007.json"); err != nil {
		t.Fatalf("a record of the older file: %v", err)
	}
	db.Close()
	if fl := storedFreelist(t, file); fl == noFreelist {
		t.Fatalf("written by Open's options: no freelist page stored")
	}
	db = openT(t, dir, targetA)
	if db.Recovered() != "" {
		t.Fatalf("a sound file with a stored freelist was moved aside to %s", db.Recovered())
	}
}

func storedFreelist(t *testing.T, file string) uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var txid uint64
	_ = bdb.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil })
	bdb.Close()
	meta, err := currentMeta(b, txid)
	if err != nil {
		t.Fatal(err)
	}
	return ne.Uint64(meta[metaRootOffset+bucketHeader:])
}
