package store

// fastpath.go owns the reads that run once per file of a scan: the restart
// fast path's lookups and the walks over every record of a folder. They
// decode only what tells whether a file changed (PathStat), copy nothing
// out of the page, and share one read transaction among many paths.

import (
	"bytes"
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
	c := r.cursor()
	if c == nil {
		return PathStat{}, false, nil
	}
	k, v := c.Seek(path)
	if v == nil || !bytes.Equal(k, path) {
		return PathStat{}, false, nil
	}
	st, _, err = decodePathStatRoot(path, v)
	return st, err == nil, err
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
	r.key = append(r.key[:0], dir...)
	if dir != string(filepath.Separator) {
		r.key = append(r.key, filepath.Separator)
	}
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
		st, _, err := decodePathStatRoot(k, v)
		fn(i, st, err == nil)
	}
}

// scanChunk is how many records ScanPaths reads per read transaction.
const scanChunk = 4096

// ScanPaths calls fn with the path, root (PathRecord.Root) and PathStat of
// every record whose path starts with prefix ("" for all), in path order,
// a few thousand per read transaction. path and root are valid only during
// the call (copy them to keep them), and fn runs inside the transaction:
// it must not use the DB. A false from fn stops the walk.
func (db *DB) ScanPaths(prefix string, fn func(path, root []byte, st PathStat) bool) error {
	pre := []byte(prefix)
	start := pre
	for {
		var next []byte // the first key of the next chunk, when there is one
		stopped := false
		err := db.view(func(t *Tx) error {
			if t.paths == nil {
				return nil
			}
			c := t.paths.Cursor()
			n := 0
			for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, pre); k, v = c.Next() {
				if n == scanChunk {
					next = bytes.Clone(k)
					return nil
				}
				n++
				st, root, err := decodePathStatRoot(k, v)
				if err != nil {
					return err
				}
				if !fn(k, root, st) {
					stopped = true
					return nil
				}
			}
			return nil
		})
		if err != nil || stopped || next == nil {
			return err
		}
		start = next
	}
}

// decodePathStatRoot decodes the PathStat of a path record (codec.go's
// encodePath), stepping over the fields it does not need, and returns its
// Root as the bytes of v.
func decodePathStatRoot(key, v []byte) (PathStat, []byte, error) {
	d := decoder{b: v}
	format := d.byte1()
	if format != recordFormat && format != chainFormat {
		d.fail()
	}
	var s PathStat
	root := d.rawStr()
	if len(d.b) < len(Hash{}) {
		d.fail()
	} else {
		s.Hashed = !bytes.Equal(d.b[:len(Hash{})], zeroHash[:])
		d.b = d.b[len(Hash{}):]
	}
	s.Size = d.varint()
	s.ModTime = d.time()
	s.Dev = d.uvarint()
	s.Ino = d.uvarint()
	s.State = stateOf(&d)
	if (format == chainFormat || s.State == StateRemoved) && d.err == nil {
		d.varint()  // Attempts
		d.time()    // NextAttempt
		d.skipStr() // LastError
		d.time()    // FirstSeen
		d.time()    // UpdatedAt
		s.RemovedAt = d.time()
	}
	if format == chainFormat && d.err == nil {
		d.varint() // Start
		d.varint() // End
		if len(d.b) < 32 {
			d.fail()
		} else {
			d.b = d.b[32:] // Print
		}
		d.uvarint() // Prior
		s.More = d.uvarint()&1 != 0
	}
	if d.err != nil {
		return PathStat{}, nil, d.finish("path", key)
	}
	return s, root, nil
}

var zeroHash Hash

// rawStr reads a string as the bytes of the value, without copying.
func (d *decoder) rawStr() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// stateOf reads a State without allocating: one of States, or a failure.
func stateOf(d *decoder) State {
	b := d.rawStr()
	if d.err != nil {
		return ""
	}
	for _, s := range States {
		if string(b) == string(s) {
			return s
		}
	}
	d.fail()
	return ""
}
