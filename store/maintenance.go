package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// DefaultRetention is how long records of removed paths are kept.
const DefaultRetention = 30 * 24 * time.Hour

// PruneStats says what Prune dropped.
type PruneStats struct {
	Paths    int // records of paths removed before the retention cutoff
	Contents int // contents no path record, intent or pending delete refers to
}

// Prune drops the records of paths removed longer ago than retention, then
// the records of contents that no path record (live, or removed within the
// retention), upload intent or pending delete refers to, so the file does
// not grow without bound. It runs as one Update.
func (db *DB) Prune(ctx context.Context, retention time.Duration) (PruneStats, error) {
	cutoff := db.now().Add(-retention)
	var stats PruneStats
	err := db.Update(ctx, func(t *Tx) error {
		stats = PruneStats{} // fn may run more than once
		var drop [][]byte
		// A live record's content is kept by its ref (RefCount below): only
		// the contents of removed records still retained are noted here, so
		// this holds what grows with removals, not with the files tracked.
		keep := make(map[Hash]struct{})
		usedDirs := map[uint64]bool{}
		err := t.paths.ForEach(func(k, v []byte) error {
			rec, rootID, err := decodePath("", v)
			if err != nil {
				return fmt.Errorf("path key %q: %w", k, err)
			}
			if rec.State == StateRemoved && !rec.RemovedAt.IsZero() && rec.RemovedAt.Before(cutoff) {
				drop = append(drop, bytes.Clone(k))
				return nil
			}
			if rec.State == StateRemoved && !rec.Hash.IsZero() {
				keep[rec.Hash] = struct{}{}
			}
			id, _ := readDirID(k)
			usedDirs[id], usedDirs[rootID] = true, true
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			// Removed records hold no ref; delete the record alone.
			if err := t.deletePathKey(k); err != nil {
				return err
			}
		}
		stats.Paths = len(drop)
		if err := t.dropUnusedDirs(usedDirs); err != nil {
			return err
		}

		if err := t.intents.ForEach(func(k, _ []byte) error {
			var h Hash
			copy(h[:], k)
			keep[h] = struct{}{}
			return nil
		}); err != nil {
			return err
		}
		if err := t.deletes.ForEach(func(k, v []byte) error {
			d, err := decodeDelete(k, v)
			if err != nil {
				return err
			}
			keep[d.Hash] = struct{}{}
			return nil
		}); err != nil {
			return err
		}
		var dropContents [][]byte
		if err := t.contents.ForEach(func(k, v []byte) error {
			if !isRecord(k, v) {
				return nil
			}
			var h Hash
			copy(h[:], k)
			if _, ok := keep[h]; !ok && t.RefCount(h) == 0 {
				dropContents = append(dropContents, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range dropContents {
			if err := t.DeleteContent(Hash(k)); err != nil {
				return err
			}
		}
		stats.Contents = len(dropContents)
		return nil
	})
	return stats, err
}

// dropUnusedDirs deletes the folders no path record is in or has as its
// root: every other key that names a folder (refs, segments, inodes)
// belongs to a live path record.
func (t *Tx) dropUnusedDirs(used map[uint64]bool) error {
	type dir struct {
		path string
		id   uint64
	}
	var unused []dir
	err := t.dirs.ForEach(func(k, v []byte) error {
		if len(k) > 0 && k[0] == dirIDPrefix {
			return nil
		}
		if id, _ := readDirID(v); !used[id] {
			unused = append(unused, dir{string(k), id})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range unused {
		if err := t.deleteDir(d.path, d.id); err != nil {
			return err
		}
	}
	return nil
}

// compactTxMaxSize bounds the key and value bytes of each transaction of
// the copy. bbolt holds a transaction's nodes in memory at several times
// those bytes, so this is what bounds the memory a compaction takes.
const compactTxMaxSize = 4 << 20

// Compact rewrites the state file in dir offline (bbolt's compact) into a
// new file that atomically replaces it, and returns the sizes before and
// after. It takes the file's lock: while a daemon holds it, it returns a
// *LockedError and changes nothing.
func Compact(dir string) (before, after int64, err error) {
	file := filepath.Join(dir, FileName)
	st, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("%w at %s: nothing to compact", ErrNoStateFile, file)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("stat state %s: %w", file, err)
	}
	before = st.Size()

	err = validate(file, before, defaultTimeout)
	if err == nil {
		err = compact(dir, file)
	}
	if err != nil {
		var ce *corruptError
		if errors.As(err, &ce) {
			return before, 0, fmt.Errorf("compact %s: %w (run any tracesync command to move it aside and start fresh)", file, err)
		}
		return before, 0, err
	}
	st, err = os.Stat(file)
	if err != nil {
		return before, 0, fmt.Errorf("stat state %s: %w", file, err)
	}
	return before, st.Size(), nil
}

// errNotWorth stops compact when the file holds too little slack to pay
// for the copy.
var errNotWorth = errors.New("store: not worth compacting")

// CompactIfSlack compacts the state in dir as Compact does, but only when
// at least a quarter of the space it takes on disk, and at least minSlack
// bytes, hold no live data: pages left half full by inserts and free pages
// that copy-on-write keeps. done says whether it did; before and after are
// the allocated bytes on disk. A busy file (another process holds its lock)
// is an error, as for Compact.
func CompactIfSlack(dir string, minSlack int64) (before, after int64, done bool, err error) {
	file := filepath.Join(dir, FileName)
	before, err = Allocated(file)
	if err != nil {
		return 0, 0, false, err
	}
	if before < 4*minSlack/3 {
		return before, before, false, nil
	}
	err = compactWhen(dir, file, func(tx *bolt.Tx) bool {
		// The two meta pages, the free list's, and what a packed copy
		// takes: the bytes in use, and each bucket's last page part filled.
		page := int64(tx.DB().Info().PageSize)
		live := 3 * page
		if targets := tx.Bucket(bucketTargets); targets != nil {
			st := targets.Stats()
			live += int64(st.BranchInuse+st.LeafInuse) + page*int64(st.BucketN-st.InlineBucketN)
		}
		slack := before - live
		return slack >= minSlack && slack*4 >= before
	})
	if errors.Is(err, errNotWorth) {
		return before, before, false, nil
	}
	if err != nil {
		return before, 0, false, err
	}
	after, err = Allocated(file)
	return before, after, err == nil, err
}

// Allocated is the space file takes on disk (st_blocks * 512, what du
// counts); the state file is sparse, so its apparent size overstates it (a
// new one is 16 MiB apparent and a few KiB allocated).
func Allocated(file string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return 0, fmt.Errorf("stat state %s: %w", file, err)
	}
	return st.Blocks * 512, nil
}

// compact copies file into a new file and renames it over file, under the
// file's lock.
func compact(dir, file string) error { return compactWhen(dir, file, nil) }

// compactWhen is compact, first asking worth (when not nil) whether the
// copy is worth making; when it says no, it returns errNotWorth.
func compactWhen(dir, file string, worth func(*bolt.Tx) bool) error {
	return protect(func() error {
		var f *os.File
		src, err := bolt.Open(file, 0o600, boltOptions(defaultTimeout, &f))
		if err != nil {
			return classifyOpenError(file, err)
		}
		defer src.Close()
		// A file tracesync did not write, or one a newer build wrote, is
		// left as it is, as Open leaves it.
		if err := src.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("compact %s: %w (no meta bucket); move it away", file, ErrNotStateFile)
			}
			if _, err := schemaVersion(meta, file); err != nil {
				return err
			}
			if worth != nil && !worth(tx) {
				return errNotWorth
			}
			return nil
		}); err != nil {
			return err
		}
		pidFile := filepath.Join(dir, PIDFileName)
		_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
		defer os.Remove(pidFile)

		tmp := file + ".compact"
		_ = os.Remove(tmp) // a leftover of an interrupted compact
		// The copy is of no use until it is renamed over file, so its
		// transactions are not synced one by one: it is synced once, whole.
		dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: defaultTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true, NoSync: true})
		if err != nil {
			return fmt.Errorf("create %s: %w", tmp, err)
		}
		// bbolt's Compact packs every page full (FillPercent 1).
		err = bolt.Compact(dst, src, compactTxMaxSize)
		if err == nil {
			err = dst.Sync()
		}
		if err != nil {
			_ = dst.Close()
			_ = os.Remove(tmp)
			return fmt.Errorf("compact %s: %w", file, err)
		}
		if err := closeTrimmed(dst); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("compact %s: close copy: %w", file, err)
		}
		// Replace while still holding the old file's lock; Open notices
		// a lock taken on the old inode and opens again.
		if err := os.Rename(tmp, file); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("compact %s: replace: %w", file, err)
		}
		return syncDir(dir)
	})
}

// closeTrimmed closes a file this process wrote whole and cuts it to its
// pages: bbolt sizes a file to its memory map, up to twice what the pages
// use, and the apparent size should be the size.
func closeTrimmed(db *bolt.DB) error {
	var used int64
	_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	path := db.Path()
	if err := db.Close(); err != nil {
		return err
	}
	return os.Truncate(path, used)
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
