package store

// fastpath.go owns the reads that run once per file of a scan: the restart
// fast path's lookups and the walks over every record of a folder. They
// decode only what tells whether a file changed (PathStat), copy nothing
// out of the page, and share one read transaction among many paths.

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PathStat is the part of a path record that says whether the file it
// names changed since it was recorded.
type PathStat struct {
	State   State
	Hashed  bool // the record has a content hash
	Size    int64
	ModTime time.Time
	Dev     uint64
	Ino     uint64
	More    bool // PathRecord.More
	// RemovedAt is PathRecord.RemovedAt, read for removed records only.
	RemovedAt time.Time
}

// Same reports whether the record was taken of a file with this device,
// inode, size and modification time.
func (s *PathStat) Same(dev, ino uint64, size int64, mtime time.Time) bool {
	return s.Dev == dev && s.Ino == ino && s.Size == size && s.ModTime.Equal(mtime)
}

// Unchanged is DB.Unchanged on a PathStat: a hashed record, not removed,
// of a file with this identity.
func (s *PathStat) Unchanged(dev, ino uint64, size int64, mtime time.Time) bool {
	return s.Hashed && s.State != StateRemoved && s.Same(dev, ino, size, mtime)
}

// PathReader looks up path records inside one read transaction. It is
// valid only inside the function given to ReadPaths.
type PathReader struct {
	t     *Tx
	c     *bolt.Cursor // on the paths bucket, made on first use
	key   []byte
	order []int
}

// ReadPaths runs fn with a PathReader on one read transaction, so that a
// batch of lookups pays for one transaction. fn should be short (a folder's
// worth of lookups) and must not wait for an Update: a read transaction
// held open makes a writer that needs to grow the file's mapping wait.
func (db *DB) ReadPaths(fn func(*PathReader) error) error {
	return db.view(func(t *Tx) error { return fn(&PathReader{t: t}) })
}

func (r *PathReader) cursor() *bolt.Cursor {
	if r.c == nil && r.t.paths != nil {
		r.c = r.t.paths.Cursor()
	}
	return r.c
}

// Stat returns the PathStat of path's record; ok is false when it has none.
func (r *PathReader) Stat(path []byte) (st PathStat, ok bool, err error) {
	_, v, err := r.t.lookup(string(path))
	if err != nil || v == nil {
		return PathStat{}, false, err
	}
	rs, _, err := decodePathStat(v)
	if err != nil {
		return PathStat{}, false, fmt.Errorf("path %s: %w", path, err)
	}
	return rs.PathStat, true, nil
}

// maxSteps is how many records StatNames steps over to reach the next
// name before it searches from the root instead.
const maxSteps = 8

// StatNames looks up the records of n files of the directory dir, named
// name(0) to name(n-1), and calls fn with each index, its PathStat and
// whether it has a record that decodes. It takes them in path order,
// stepping from one record to the next rather than searching each from
// the root: the files of a directory are neighbours in the store.
func (r *PathReader) StatNames(dir string, n int, name func(i int) string, fn func(i int, st PathStat, ok bool)) {
	c := r.cursor()
	r.order = r.order[:0]
	for i := range n {
		r.order = append(r.order, i)
	}
	slices.SortFunc(r.order, func(a, b int) int { return strings.Compare(name(a), name(b)) })
	folder := dir
	if dir != string(filepath.Separator) {
		folder += string(filepath.Separator)
	}
	id, err := r.t.dirID(folder, false)
	if err != nil {
		c = nil // a folder the store has never seen (errNoDir), or one it cannot read: no records
		if !errors.Is(err, errNoDir) {
			for _, i := range r.order {
				fn(i, PathStat{}, false)
			}
			return
		}
	}
	r.key = appendDirID(r.key[:0], id)
	base := len(r.key)
	var k, v []byte
	at := false // the cursor is at k, at or before the next key in order
	for _, i := range r.order {
		if c == nil {
			fn(i, PathStat{}, false)
			continue
		}
		r.key = append(r.key[:base], name(i)...)
		for steps := 0; at && k != nil && bytes.Compare(k, r.key) < 0; steps++ {
			if steps == maxSteps {
				at = false
				break
			}
			k, v = c.Next()
		}
		if !at {
			k, v = c.Seek(r.key)
			at = true
		}
		if v == nil || !bytes.Equal(k, r.key) {
			fn(i, PathStat{}, false)
			continue
		}
		rs, _, err := decodePathStat(v)
		fn(i, rs.PathStat, err == nil)
	}
}

// scanChunk is how many records ScanPaths reads per read transaction.
const scanChunk = 4096

// ScanPaths calls fn with the path, root (PathRecord.Root) and PathStat of
// every record whose path starts with prefix ("" for all), folder by
// folder as ForEachPath goes, a few thousand per read transaction. path
// and root are valid only during the call (copy them to keep them), and fn
// runs inside the transaction: it must not use the DB. A false from fn
// stops the walk.
func (db *DB) ScanPaths(prefix string, fn func(path, root []byte, st PathStat) bool) error {
	var from *walkAt
	var buf, rootBuf []byte
	for {
		n, more, stopped := 0, false, false
		err := db.view(func(t *Tx) error {
			return t.walkPaths(prefix, from, func(at walkAt, k, v []byte) (bool, error) {
				if n == scanChunk {
					more = true
					return false, nil
				}
				n++
				st, rootID, err := decodePathStat(v)
				if err != nil {
					return false, fmt.Errorf("path key %q: %w", k, err)
				}
				rootBuf = rootBuf[:0]
				if rootID != 0 {
					dir, err := t.dirPath(rootID)
					if err != nil {
						return false, err
					}
					rootBuf = append(rootBuf, rootOfFolder(dir)...)
				} else if st.root != "" {
					rootBuf = append(rootBuf, st.root...)
				}
				buf = append(append(buf[:0], at.dir...), at.base...)
				from = &walkAt{dir: at.dir, base: at.base}
				if !fn(buf, rootBuf, st.PathStat) {
					stopped = true
					return false, nil
				}
				return true, nil
			})
		})
		if err != nil || stopped || !more {
			return err
		}
	}
}

// rootedStat is a PathStat and the root when the record holds it as a string.
type rootedStat struct {
	PathStat
	root string
}

// decodePathStat decodes the PathStat of a path record and its root's
// folder id (0 when the root is kept as a string, then in root).
func decodePathStat(v []byte) (rootedStat, uint64, error) {
	rec, rootID, err := decodePath("", v)
	if err != nil {
		return rootedStat{}, 0, err
	}
	st := PathStat{
		State: rec.State, Hashed: !rec.Hash.IsZero(), Size: rec.Size, ModTime: rec.ModTime,
		Dev: rec.Dev, Ino: rec.Ino, More: rec.More,
	}
	if rec.State == StateRemoved {
		st.RemovedAt = rec.RemovedAt
	}
	return rootedStat{PathStat: st, root: rec.Root}, rootID, nil
}
