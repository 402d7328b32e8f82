package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The read commands open the state read-only: they see what the last
// target recorded, write nothing (no pid file, no file mode or size
// change), refuse writes with ErrReadOnly, share the file with other
// readers and wait for, then name, a read-write holder.
func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Target: targetA, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	update(t, db, func(tx *Tx) error {
		if err := tx.PutPath(pathRec("/r/a.json", "a", StateUploaded)); err != nil {
			return err
		}
		return tx.PutPath(pathRec("/r/b.json", "b", StateQuarantined))
	})
	// A read-write holder: a read-only open waits, then names it.
	if _, err := OpenReadOnly(dir, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open while a writer holds the state: %v, want ErrLocked", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, FileName)
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}

	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ro2, err := OpenReadOnly(dir, Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("a second reader: %v", err)
	}
	_ = ro2.Close()
	if ro.Target() != targetA {
		t.Errorf("target %q, want the last used %q", ro.Target(), targetA)
	}
	c, err := ro.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if c.Files[StateUploaded] != 1 || c.Files[StateQuarantined] != 1 {
		t.Errorf("counts %v, want 1 uploaded and 1 quarantined", c.Files)
	}
	err = ro.Update(context.Background(), func(tx *Tx) error { return tx.PutPath(pathRec("/r/c.json", "c", StateUploaded)) })
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Update on a read-only store: %v, want ErrReadOnly", err)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a read-only open left a pid file (%v)", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Errorf("the state file changed under a read-only open: %v %v %v -> %v %v %v",
			before.Size(), before.ModTime(), before.Mode(), after.Size(), after.ModTime(), after.Mode())
	}
	// No state file: a clear error, nothing created.
	empty := filepath.Join(t.TempDir(), "none")
	if _, err := OpenReadOnly(empty, Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing state: %v, want not exist", err)
	}
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a read-only open created %s", empty)
	}
}

// The read commands' open is read-only for a file that needs nothing of a
// writable open, and a writable open (which builds the counters, or moves
// a corrupt file aside) for one that does.
func TestOpenForReading(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/b.json", "b", StateQuarantined)) })
	if _, err := OpenForReading(dir, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("open for reading while a writer holds the state: %v, want ErrLocked", err)
	}
	db.Close()

	ro, err := OpenForReading(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !ro.readOnly {
		t.Errorf("a current state was opened read-write")
	}
	if c, err := ro.Counts(); err != nil || c.Files[StateQuarantined] != 1 {
		t.Errorf("Counts = %v, %v; want 1 quarantined", c.Files, err)
	}
	ro.Close()

	dropIndexes(t, dir)
	rw, err := OpenForReading(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rw.readOnly {
		t.Errorf("a state without counters was opened read-only (it would walk every record)")
	}
	checkCounts(t, rw)
	rw.Close()

	var used int64
	bdb := openT(t, dir, targetA)
	update(t, bdb, func(tx *Tx) error {
		for i := range 3000 {
			if err := tx.PutPath(pathRec(fmt.Sprintf("/r/%05d-%s.json", i, strings.Repeat("long-name", 10)), "x", StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	_ = bdb.bolt.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	bdb.Close()
	if err := os.Truncate(filepath.Join(dir, FileName), used/2); err != nil {
		t.Fatal(err)
	}
	fresh, err := OpenForReading(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if fresh.Recovered() == "" {
		t.Errorf("a truncated state was not moved aside")
	}
}
