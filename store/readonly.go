package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrReadOnly is returned by Update on a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("the state store is open read-only")

// OpenReadOnly opens the existing state file in dir for reading only: no
// directory or pid file is created, nothing is migrated, recovered or
// written. It is how the read commands (status, files) still answer when
// the state directory's file system is read-only, which is when an
// operator needs them most. The last used target is shown unless
// opts.Target names another. A file bbolt cannot read is reported, not
// moved aside; a file of an older or newer schema is refused (a read-write
// Open upgrades an older one).
func OpenReadOnly(dir string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	file := filepath.Join(dir, FileName)
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("open state %s: %w", file, err)
	}
	var bdb *bolt.DB
	err := protect(func() error {
		var err error
		// A shared lock: a running daemon's exclusive lock makes this wait
		// for Timeout, then fail with a LockedError naming it.
		bdb, err = bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true, Timeout: opts.Timeout})
		return err
	})
	if err != nil {
		return nil, classifyOpenError(file, err)
	}
	db := &DB{bolt: bdb, dir: dir, file: file, pidFile: filepath.Join(dir, PIDFileName), now: opts.Now, log: opts.Log, readOnly: true, dirs: newDirCache()}
	err = protect(func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("open state %s: %w", file, ErrNotStateFile)
			}
			v, err := schemaVersion(meta, file)
			if err != nil {
				return err
			}
			if v < readableFrom {
				return fmt.Errorf("open state %s: written by an older tracesync (schema %d), which this read-only open cannot upgrade to schema %d: with the state directory writable and no daemon running, run `tracesync status` once (it upgrades the file), then run this again", file, v, SchemaVersion)
			}
			if st, err := os.Stat(file); err == nil && tx.Size() > st.Size() {
				return &corruptError{fmt.Errorf("file is %d bytes but its pages reach %d bytes (truncated)", st.Size(), tx.Size())}
			}
			db.target = opts.Target
			if db.target == "" {
				db.target = string(meta.Get(keyLastTarget))
			}
			return nil
		})
	})
	if err != nil {
		_ = bdb.Close()
		return nil, err
	}
	return db, nil
}

// OpenForReading opens the state in dir for the read commands (status,
// files). A file that needs nothing a writable open does (of this schema,
// with its counters) is opened read-only, which reads no page it is not
// asked for; any other file is opened as Open does, which migrates it,
// builds its counters or moves it aside when corrupt. A read-write holder
// gives a *LockedError either way.
func OpenForReading(dir string, opts Options) (*DB, error) {
	ro, err := OpenReadOnly(dir, opts)
	if errors.Is(err, ErrLocked) {
		return nil, err
	}
	if err == nil {
		if ro.current() {
			return ro, nil
		}
		_ = ro.Close()
	}
	return Open(dir, opts)
}

// current reports whether the file is of this schema and the namespace read
// has its counters (or there is none).
func (db *DB) current() bool {
	ok := false
	_ = db.view(func(t *Tx) error {
		raw := t.btx.Bucket(bucketMeta).Get(keySchema)
		ok = len(raw) == 4 && binary.BigEndian.Uint32(raw) == SchemaVersion && (t.paths == nil || t.ix.counts != nil)
		return nil
	})
	return ok
}
