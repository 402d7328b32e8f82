package store

// The store on a state directory whose file system stops taking writes
// (issue 7, local faults), on a real tmpfs: full, and read-only. The end-to-end
// view (the daemon's exit and what the next start does) is in
// cmd/tracesync/e2e_statefs_test.go; these check what the store itself
// promises its callers: an error that wraps the errno and names the file,
// no half-written transaction, and a store that works again once the file
// system does.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// statefsMount mounts a tmpfs of size bytes on a new directory, unmounted
// (lazily if busy) at cleanup; it skips the test where mounting is not
// permitted.
func statefsMount(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CAP_SYS_ADMIN): state directory faults not tested")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			t.Skipf("cannot mount a tmpfs (%v): state directory faults not tested", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil {
				t.Errorf("unmount %s: %v; lazy unmount: %v", dir, err, err2)
			}
		}
	})
	return dir
}

// statefsFill writes zeros at name until the file system has no block
// left, and returns name.
func statefsFill(t *testing.T, name string) string {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := len(buf); n > 0; n /= 2 {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", name, err)
				}
				break
			}
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(name), &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("after filling %s, %d blocks are still free", filepath.Dir(name), st.Bavail)
	}
	return name
}

// statefsPaths returns n path records with long paths under prefix.
func statefsPaths(prefix string, n int) []PathRecord {
	recs := make([]PathRecord, n)
	for i := range recs {
		p := fmt.Sprintf("/r/%s/%s-%05d.json", prefix, strings.Repeat("d", 150), i)
		recs[i] = pathRec(p, fmt.Sprintf("content %s %d", prefix, i), StateUploaded)
	}
	return recs
}

func statefsPut(recs []PathRecord) func(*Tx) error {
	return func(tx *Tx) error {
		for _, r := range recs {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// statefsWantPaths fails unless every record of present is in db and none
// of absent is.
func statefsWantPaths(t *testing.T, db *DB, when string, present, absent []PathRecord) {
	t.Helper()
	for _, r := range present {
		if _, err := db.GetPath(r.Path); err != nil {
			t.Fatalf("%s: %s: %v, want it recorded", when, r.Path, err)
		}
	}
	for _, r := range absent {
		if _, err := db.GetPath(r.Path); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: %s: %v, want ErrNotFound (its transaction failed)", when, r.Path, err)
		}
	}
}

// A commit that needs pages the full file system cannot give fails with an
// error that wraps ENOSPC and names the state file; the transaction is
// wholly absent, what was committed before is intact, and once space is
// freed the same store (not reopened) commits again. After a reopen
// everything committed is there and bbolt's check passes.
func TestStateFSFullCommitFailsThenRecovers(t *testing.T) {
	mnt := statefsMount(t, 8<<20)
	dir := filepath.Join(mnt, "state")
	db, err := Open(dir, Options{Target: targetA})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	before := statefsPaths("before", 20)
	update(t, db, statefsPut(before))

	filler := statefsFill(t, filepath.Join(mnt, "filler"))
	// 500 records of ~200-byte paths: far more than the file's free pages.
	big := statefsPaths("big", 500)
	err = db.Update(context.Background(), statefsPut(big))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), db.File()) {
		t.Fatalf("update on a full file system: %v, want an error wrapping ENOSPC and naming %s", err, db.File())
	}
	statefsWantPaths(t, db, "after the failed commit", before, big)
	checkConsistent(t, db)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	update(t, db, statefsPut(big))
	statefsWantPaths(t, db, "after space was freed", append(before, big...), nil)
	checkConsistent(t, db)
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	db2, err := Open(dir, Options{Target: targetA})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer func() { _ = db2.Close() }()
	if db2.Recovered() != "" {
		t.Fatalf("reopen moved the state file aside as corrupt (%s)", db2.Recovered())
	}
	statefsWantPaths(t, db2, "after reopening", append(before, big...), nil)
	checkConsistent(t, db2)
}

// A state file on a file system that is read-only is not opened for
// writing: Open's error wraps EROFS and names the file, and the file is not
// taken for corrupt (nothing moved aside, nothing logged as such). Writable
// again, it opens with its records.
func TestStateFSOpenReadOnly(t *testing.T) {
	mnt := statefsMount(t, 4<<20)
	dir := filepath.Join(mnt, "state")
	db, err := Open(dir, Options{Target: targetA})
	if err != nil {
		t.Fatal(err)
	}
	recs := statefsPaths("ro", 5)
	update(t, db, statefsPut(recs))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if err := unix.Mount("", mnt, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	var logs strings.Builder
	_, err = Open(dir, Options{Target: targetA, Log: zerolog.New(&logs)})
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Fatalf("open on a read-only file system: %v, want an error wrapping EROFS and naming the state file", err)
	}
	if errors.Is(err, ErrCorrupt) || strings.Contains(logs.String(), "CORRUPT") {
		t.Fatalf("open on a read-only file system took the file for corrupt: %v\n%s", err, logs.String())
	}
	if err := unix.Mount("", mnt, "", unix.MS_REMOUNT, ""); err != nil {
		t.Fatalf("remount read-write: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".corrupt-") {
			t.Fatalf("%s: the state file was moved aside", e.Name())
		}
	}
	db2, err := Open(dir, Options{Target: targetA})
	if err != nil {
		t.Fatalf("open once writable: %v", err)
	}
	defer func() { _ = db2.Close() }()
	statefsWantPaths(t, db2, "once writable", recs, nil)
}

// A first start on a file system too full to create the state file fails
// with an error wrapping ENOSPC and naming the file. Once space is freed,
// the next Open starts the store without calling the half-created file
// corrupt: no "STATE FILE CORRUPT" alarm, no state.db.corrupt-* left, for a
// file that never held a record.
func TestStateFSFullAtFirstOpen(t *testing.T) {
	for _, freePages := range []int{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("%d pages free", freePages), func(t *testing.T) {
			mnt := statefsMount(t, 1<<20)
			dir := filepath.Join(mnt, "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			filler := statefsFill(t, filepath.Join(mnt, "filler"))
			if freePages > 0 {
				fi, err := os.Stat(filler)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(filler, fi.Size()-int64(freePages*os.Getpagesize())); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Open(dir, Options{Target: targetA})
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("first open with %d pages free: %v, want an error wrapping ENOSPC and naming the state directory", freePages, err)
			}
			var stub int64 // what the failed first open left
			if fi, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
				stub = fi.Size()
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			db, err := Open(dir, Options{Target: targetA, Log: zerolog.New(&logs)})
			if err != nil {
				t.Fatalf("open once space was freed: %v", err)
			}
			defer func() { _ = db.Close() }()
			// bbolt's creation of the file (4 pages written at once) was cut
			// short: that file never held a record, so it is started afresh
			// with a warning, not reported (and kept) as a corrupt store.
			if db.Recovered() != "" || strings.Contains(logs.String(), "CORRUPT") {
				t.Fatalf("with %d page(s) free (a %d-byte file left): the next Open moved it aside as corrupt (%q):\n%s",
					freePages, stub, db.Recovered(), logs.String())
			}
			if said := strings.Contains(logs.String(), "never completely created"); said != (stub > 0) {
				t.Errorf("with %d page(s) free (a %d-byte file left): said it started a cut-short file afresh: %v:\n%s", freePages, stub, said, logs.String())
			}
			update(t, db, statefsPut(statefsPaths("first", 3)))
		})
	}
}
