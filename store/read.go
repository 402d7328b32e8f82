package store

import (
	"fmt"
	"time"
)

// GetPath returns the record of path, or ErrNotFound.
func (db *DB) GetPath(path string) (rec PathRecord, err error) {
	err = db.view(func(t *Tx) error {
		rec, err = t.GetPath(path)
		return err
	})
	return rec, err
}

// PathByInode returns the path recorded for a growing file's device and
// inode (one whose chain has earlier segments), if one is.
func (db *DB) PathByInode(dev, ino uint64) (path string, ok bool) {
	_ = db.view(func(t *Tx) error {
		path, ok = t.PathByInode(dev, ino)
		return nil
	})
	return path, ok
}

// Chain lists the earlier segments of path, in order.
func (db *DB) Chain(path string) (segs []Segment, err error) {
	err = db.view(func(t *Tx) error {
		segs, err = t.Chain(path)
		return err
	})
	return segs, err
}

// GetContent returns the record of a content, or ErrNotFound.
func (db *DB) GetContent(h Hash) (c Content, err error) {
	err = db.view(func(t *Tx) error {
		c, err = t.GetContent(h)
		return err
	})
	return c, err
}

// Refs returns the live (not removed) paths whose record has hash h.
func (db *DB) Refs(h Hash) (refs []string, err error) {
	err = db.view(func(t *Tx) error {
		refs = t.Refs(h)
		return nil
	})
	return refs, err
}

// Unchanged is the restart fast path: it reports whether path has a
// record, not removed and already hashed, whose device, inode, size and
// modification time all equal the given ones, so the file need not be read
// again. It returns that record when it does.
func (db *DB) Unchanged(path string, dev, ino uint64, size int64, mtime time.Time) (PathRecord, bool) {
	rec, err := db.GetPath(path)
	if err != nil || rec.State == StateRemoved || rec.Hash.IsZero() {
		return PathRecord{}, false
	}
	if rec.Dev != dev || rec.Ino != ino || rec.Size != size || !rec.ModTime.Equal(mtime) {
		return PathRecord{}, false
	}
	return rec, true
}

// Intents returns every upload intent left in the store.
func (db *DB) Intents() (out []Intent, err error) {
	err = db.view(func(t *Tx) error {
		if t.intents == nil {
			return nil
		}
		return t.intents.ForEach(func(k, v []byte) error {
			i, err := decodeIntent(k, v)
			if err != nil {
				return err
			}
			out = append(out, i)
			return nil
		})
	})
	return out, err
}

// TraceIDsNamed returns the trace ids the store already attributes to
// something: those of every content uploaded under filename, and those
// waiting for a remote delete. Crash recovery (rule 9) must never adopt one
// of them for another content, however recently it was created.
func (db *DB) TraceIDsNamed(filename string) (map[string]bool, error) {
	ids := map[string]bool{}
	err := db.view(func(t *Tx) error {
		if t.contents != nil {
			err := t.contents.ForEach(func(k, v []byte) error {
				if !isRecord(k, v) {
					return nil
				}
				c, _, err := decodeContent(k, v)
				if err != nil {
					return err
				}
				if c.Filename == filename {
					for _, id := range c.TraceIDs {
						ids[id] = true
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if t.deletes == nil {
			return nil
		}
		return t.deletes.ForEach(func(k, _ []byte) error {
			ids[string(k)] = true
			return nil
		})
	})
	return ids, err
}

// DeletesAmong returns which of ids wait for a remote delete: a lookup per
// id, where TraceIDsNamed reads every content.
func (db *DB) DeletesAmong(ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	err := db.view(func(t *Tx) error {
		if t.deletes == nil {
			return nil
		}
		for _, id := range ids {
			if t.deletes.Get([]byte(id)) != nil {
				out[id] = true
			}
		}
		return nil
	})
	return out, err
}

// Deletes returns every pending remote delete, by trace id.
func (db *DB) Deletes() (out []Delete, err error) {
	err = db.view(func(t *Tx) error {
		if t.deletes == nil {
			return nil
		}
		return t.deletes.ForEach(func(k, v []byte) error {
			d, err := decodeDelete(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// forEachChunk is how many records ForEachPath reads per transaction.
const forEachChunk = 1024

// emitChunk hands a chunk read with error err to fn, outside any
// transaction; done when the walk ends here (an error, or a short chunk).
func emitChunk(chunk []PathRecord, err error, fn func(PathRecord) error) (done bool, _ error) {
	if err != nil {
		return true, err
	}
	for _, rec := range chunk {
		if err := fn(rec); err != nil {
			return true, err
		}
	}
	return len(chunk) < forEachChunk, nil
}

// ForEachPath calls fn for every path record whose path starts with prefix
// ("" for all), folder by folder: the folders in path order, the files of
// each in name order, so /r/b.json comes before /r/a/c.json (sort them
// where path order matters). Pass a root with a trailing separator for
// "the paths under root". Records are read in chunks of a few hundred,
// each chunk from one consistent read transaction, and fn runs outside any
// transaction, so it may call Update; a record changed meanwhile is seen as
// it is when its chunk is read. An error from fn stops the walk and is
// returned.
func (db *DB) ForEachPath(prefix string, fn func(PathRecord) error) error {
	var from *walkAt
	for {
		var chunk []PathRecord
		var last walkAt
		err := db.view(func(t *Tx) error {
			return t.walkPaths(prefix, from, func(at walkAt, _, v []byte) (bool, error) {
				rec, err := t.record(at.dir+string(at.base), v)
				if err != nil {
					return false, err
				}
				chunk, last = append(chunk, rec), at
				return len(chunk) < forEachChunk, nil
			})
		})
		if done, err := emitChunk(chunk, err, fn); done {
			return err
		}
		from = &last
	}
}

// Counts returns the number of paths in each state (every state present,
// zero or not), distinct contents, trace ids, pending deletes and intents,
// from one consistent read transaction: its counters (counts.go), or a walk
// of every record in a file that has none yet.
func (db *DB) Counts() (Counts, error) {
	c := Counts{Files: make(map[State]int, len(States))}
	for _, s := range States {
		c.Files[s] = 0
	}
	err := db.view(func(t *Tx) error {
		if t.paths == nil {
			return nil
		}
		return t.counts(&c)
	})
	return c, err
}

// RecentErrors returns the n most recently updated path records that carry
// a LastError, newest first (ties in path order), from the errors index, or
// a walk of every record in a file that has none yet.
func (db *DB) RecentErrors(n int) ([]PathRecord, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []PathRecord
	err := db.view(func(t *Tx) error {
		if t.paths == nil {
			return nil
		}
		if t.ix.errs != nil {
			var err error
			out, err = t.recentErrors(n)
			return err
		}
		return t.paths.ForEach(func(k, v []byte) error {
			rec, _, err := decodePath("", v)
			if err != nil {
				return fmt.Errorf("path key %q: %w", k, err)
			}
			if rec.LastError == "" {
				return nil
			}
			path, err := t.pathOf(k)
			if err != nil {
				return err
			}
			if rec, err = t.record(path, v); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortRecentErrors(out)
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}
