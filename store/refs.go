package store

// refs.go owns the contents bucket: each content's record under its hash,
// and which live paths hold it. The first path that holds a content is its
// holder, named in the content's record, or in the holders bucket while no
// content is recorded (e.g. an upload in flight); every other path is a
// ref key of its own, hash + path key. A content with one path, the usual
// case, thus costs one key, not two, and the contents bucket, keyed by
// hash and so written at random, is written once per upload, not twice.

import (
	"bytes"
	"errors"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// refMarker is the value of a ref key. Ref keys are longer than 32 bytes,
// values under a hash exactly 32: that, not the value, tells them apart.
var refMarker = []byte{'r'}

// isRefKey reports whether a key of the contents bucket is a ref.
func isRefKey(k []byte) bool { return len(k) > len(Hash{}) }

// isRecord reports whether a key and value of the contents bucket are a
// content record: not a ref, not a stub (the holder of a pending content
// as schema 5 kept it, before the holders bucket).
func isRecord(k, v []byte) bool { return !isRefKey(k) && (len(v) == 0 || v[0] != stubFormat) }

// refKey is a ref's key: the 32-byte hash, then the path's key.
func refKey(h Hash, pathKey []byte) []byte {
	k := make([]byte, 0, len(h)+len(pathKey))
	k = append(k, h[:]...)
	return append(k, pathKey...)
}

// GetContent returns the record of a content, or ErrNotFound.
func (t *Tx) GetContent(h Hash) (Content, error) {
	if t.contents == nil {
		return Content{}, ErrNotFound
	}
	v := t.contents.Get(h[:])
	if v == nil || v[0] == stubFormat {
		return Content{}, ErrNotFound
	}
	c, _, err := decodeContent(h[:], v)
	return c, err
}

// PutContent writes the record of c.Hash.
func (t *Tx) PutContent(c Content) error {
	if t.contents == nil {
		return errNoNamespace
	}
	if c.Hash.IsZero() {
		return errors.New("store: PutContent: zero hash")
	}
	holder, record, _, err := t.holderOf(c.Hash)
	if err != nil {
		return err
	}
	holder = bytes.Clone(holder)
	if holder != nil && !record {
		if err := t.holders.Delete(c.Hash[:]); err != nil {
			return err
		}
	}
	if err := t.contentChanged(c.Hash, len(c.TraceIDs), true); err != nil {
		return err
	}
	return t.contents.Put(c.Hash[:], encodeContent(&c, holder))
}

// DeleteContent drops the record of a content (no error if there is none).
// The paths that hold it keep their refs.
func (t *Tx) DeleteContent(h Hash) error {
	if t.contents == nil {
		return errNoNamespace
	}
	v := t.contents.Get(h[:])
	if v == nil {
		return nil
	}
	if err := t.contentChanged(h, 0, false); err != nil {
		return err
	}
	holder, _, err := contentHolder(h[:], v)
	if err == nil && holder != nil {
		if err := t.holders.Put(h[:], bytes.Clone(holder)); err != nil {
			return err
		}
	}
	return t.contents.Delete(h[:])
}

// holderOf returns the key of the path that holds h first (nil when none),
// whether h has a content record, and that record's value (nil when none).
// The key is valid only as long as the transaction's pages are.
func (t *Tx) holderOf(h Hash) (holder []byte, record bool, v []byte, err error) {
	if v = t.contents.Get(h[:]); v != nil {
		holder, record, err = contentHolder(h[:], v)
		if !record { // a stub of schema 5
			v = nil
		}
		return holder, record, v, err
	}
	if t.holders != nil {
		holder = t.holders.Get(h[:])
	}
	return holder, false, nil, nil
}

// refKeys calls fn with the path key of every path that holds h: the
// holder first, then the ref keys in key order. The keys are valid only
// during the call.
func (t *Tx) refKeys(h Hash, fn func(pathKey []byte)) {
	if t.contents == nil {
		return
	}
	holder, _, _, err := t.holderOf(h)
	if err != nil || holder == nil {
		return // no holder, so no refs
	}
	fn(holder)
	c := t.contents.Cursor()
	for k := seekRefs(c, h); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
		fn(k[len(h):])
	}
}

// seekRefs moves c to the first ref key of h, past h's record, and returns
// that key (nil when h has none).
func seekRefs(c *bolt.Cursor, h Hash) []byte {
	k, _ := c.Seek(h[:])
	if k != nil && len(k) == len(h) {
		k, _ = c.Next()
	}
	if k == nil || !bytes.HasPrefix(k, h[:]) {
		return nil
	}
	return k
}

// Refs returns the live (not removed) paths that hold h, as their bytes or
// as an earlier segment, in path order.
func (t *Tx) Refs(h Hash) []string {
	var out []string
	t.refKeys(h, func(pk []byte) {
		if p, err := t.pathOf(pk); err == nil {
			out = append(out, p)
		}
	})
	slices.Sort(out)
	return out
}

// RefCount is len(Refs(h)) without building the list.
func (t *Tx) RefCount(h Hash) int {
	n := 0
	t.refKeys(h, func([]byte) { n++ })
	return n
}

// addRef records that the path with key pk holds h: as the holder when h
// has none, else as a ref key.
func (t *Tx) addRef(h Hash, pk []byte) error {
	holder, record, v, err := t.holderOf(h)
	switch {
	case err != nil:
		return err
	case bytes.Equal(holder, pk):
		return nil
	case holder != nil:
		return t.contents.Put(refKey(h, pk), refMarker)
	case !record:
		return t.holders.Put(h[:], bytes.Clone(pk))
	}
	return t.setHolder(h, v, pk)
}

// dropRef records that the path with key pk no longer holds h. When it was
// the holder, the first ref key takes its place; with none left, the
// holders entry goes and a record keeps no holder.
func (t *Tx) dropRef(h Hash, pk []byte) error {
	holder, record, v, err := t.holderOf(h)
	if err != nil {
		return err
	}
	if holder == nil || !bytes.Equal(holder, pk) {
		return t.contents.Delete(refKey(h, pk))
	}
	var c Content
	if record {
		var err error
		if c, _, err = decodeContent(h[:], v); err != nil {
			return err
		}
	}
	var next []byte
	if k := seekRefs(t.contents.Cursor(), h); k != nil {
		next = bytes.Clone(k[len(h):])
	}
	if next != nil {
		if err := t.contents.Delete(refKey(h, next)); err != nil {
			return err
		}
	}
	switch {
	case record:
		return t.contents.Put(h[:], encodeContent(&c, next))
	case next != nil:
		return t.holders.Put(h[:], next)
	}
	return t.holders.Delete(h[:])
}

// setHolder rewrites the content record v of h with holder as its holder.
func (t *Tx) setHolder(h Hash, v, holder []byte) error {
	c, _, err := decodeContent(h[:], v)
	if err != nil {
		return err
	}
	return t.contents.Put(h[:], encodeContent(&c, holder))
}
