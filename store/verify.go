package store

// verify.go holds what `tracesync verify` needs of the store: a walk of
// every content with the live paths that hold it, and the forgetting of a
// content whose traces are gone from the server.

import (
	"bytes"
	"errors"
	"slices"
)

// HasTarget reports whether the state file holds a namespace for the
// target this DB was opened with (false when nothing was ever recorded for
// it).
func (db *DB) HasTarget() (bool, error) {
	has := false
	err := db.view(func(t *Tx) error {
		has = t.contents != nil
		return nil
	})
	return has, err
}

// ForEachContent calls fn for every uploaded content of the target, in
// hash order, with the live paths that hold it (as their current bytes or
// an earlier segment; none when only removed files held it). All of it is
// read in one consistent read transaction, and fn runs inside it: fn must
// not call Update. An error from fn stops the walk and is returned.
func (db *DB) ForEachContent(fn func(c Content, paths []string) error) error {
	return db.view(func(t *Tx) error {
		if t.contents == nil {
			return nil
		}
		// A content's key is its 32-byte hash, its refs are the hash then a
		// path: in key order the refs follow their content's record.
		cur := t.contents.Cursor()
		var (
			have  bool
			c     Content
			paths []string
		)
		flush := func() error {
			if !have {
				return nil
			}
			have = false
			slices.Sort(paths)
			return fn(c, paths)
		}
		add := func(pk []byte) error {
			p, err := t.pathOf(pk)
			paths = append(paths, p)
			return err
		}
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if isRefKey(k) {
				if have && bytes.Equal(k[:len(Hash{})], c.Hash[:]) {
					if err := add(k[len(Hash{}):]); err != nil {
						return err
					}
				}
				continue // else a ref of a content not uploaded yet
			}
			if err := flush(); err != nil {
				return err
			}
			if !isRecord(k, v) {
				continue // a stub: not uploaded yet
			}
			var holder []byte
			var err error
			if c, holder, err = decodeContent(k, v); err != nil {
				return err
			}
			have, paths = true, nil
			if holder != nil {
				if err := add(holder); err != nil {
					return err
				}
			}
		}
		return flush()
	})
}

// ForgetContent drops content h and every live path that holds it (as its
// bytes or as an earlier segment), as ForgetPath does each, so the next
// scan finds those files unknown and uploads them again. It returns the
// paths forgotten and the contents whose records went with them: h, and
// the other segments of those paths that no other path holds. Removed
// paths' records are left; they hold no reference. ErrNotFound if h has no
// record.
func (t *Tx) ForgetContent(h Hash) (paths []string, dropped []Content, err error) {
	if _, err := t.GetContent(h); err != nil {
		return nil, nil, err
	}
	paths = t.Refs(h)
	held := map[Hash]Content{}
	note := func(x Hash) error {
		if _, ok := held[x]; ok || x.IsZero() {
			return nil
		}
		c, err := t.GetContent(x)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		held[x] = c
		return err
	}
	if err := note(h); err != nil {
		return nil, nil, err
	}
	for _, p := range paths {
		rec, err := t.GetPath(p)
		if err != nil {
			return nil, nil, err
		}
		segs, err := t.Chain(p)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range segs {
			if err := note(s.Hash); err != nil {
				return nil, nil, err
			}
		}
		if err := note(rec.Hash); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range paths {
		if err := t.ForgetPath(p); err != nil {
			return nil, nil, err
		}
	}
	if err := t.DeleteContent(h); err != nil {
		return nil, nil, err
	}
	for x, c := range held {
		if t.contents.Get(x[:]) == nil {
			dropped = append(dropped, c)
		}
	}
	slices.SortFunc(dropped, func(a, b Content) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	return paths, dropped, nil
}
