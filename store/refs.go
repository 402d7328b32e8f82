package store

// refs.go owns the contents bucket: each content's record under its hash,
// and which live paths hold it. The first path that holds a content is its
// holder, named in the value under the hash (a content record, or a stub
// while no content is recorded, e.g. an upload in flight); every other
// path is a ref key of its own, hash + path key. A content with one path,
// the usual case, thus costs one key, not two.

import (
	"bytes"
	"errors"
	"slices"
)

// refMarker is the value of a ref key. Ref keys are longer than 32 bytes,
// values under a hash exactly 32: that, not the value, tells them apart.
var refMarker = []byte{'r'}

// isRefKey reports whether a key of the contents bucket is a ref.
func isRefKey(k []byte) bool { return len(k) > len(Hash{}) }

// isRecord reports whether a key and value of the contents bucket are a
// content record: not a ref, not a stub.
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
	var holder []byte
	if v := t.contents.Get(c.Hash[:]); v != nil {
		h, _, err := contentHolder(c.Hash[:], v)
		if err != nil {
			return err
		}
		holder = bytes.Clone(h)
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
	if err != nil || holder == nil {
		return t.contents.Delete(h[:])
	}
	return t.contents.Put(h[:], encodeStub(bytes.Clone(holder)))
}

// refKeys calls fn with the path key of every path that holds h: the
// holder first, then the ref keys in key order. The keys are valid only
// during the call.
func (t *Tx) refKeys(h Hash, fn func(pathKey []byte)) {
	if t.contents == nil {
		return
	}
	c := t.contents.Cursor()
	k, v := c.Seek(h[:])
	if k == nil || !bytes.Equal(k, h[:]) {
		return // no holder, so no refs
	}
	if holder, _, err := contentHolder(k, v); err == nil && holder != nil {
		fn(holder)
	}
	for k, _ = c.Next(); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
		fn(k[len(h):])
	}
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
	v := t.contents.Get(h[:])
	if v == nil {
		return t.contents.Put(h[:], encodeStub(pk))
	}
	holder, record, err := contentHolder(h[:], v)
	switch {
	case err != nil:
		return err
	case bytes.Equal(holder, pk):
		return nil
	case holder != nil:
		return t.contents.Put(refKey(h, pk), refMarker)
	case !record:
		return t.contents.Put(h[:], encodeStub(pk))
	}
	return t.setHolder(h, v, pk)
}

// dropRef records that the path with key pk no longer holds h. When it was
// the holder, the first ref key takes its place; with none left, a stub
// goes and a record keeps no holder.
func (t *Tx) dropRef(h Hash, pk []byte) error {
	v := t.contents.Get(h[:])
	var holder []byte
	var record bool
	if v != nil {
		var err error
		if holder, record, err = contentHolder(h[:], v); err != nil {
			return err
		}
	}
	if v == nil || !bytes.Equal(holder, pk) {
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
	cur := t.contents.Cursor()
	if k, _ := cur.Seek(h[:]); k != nil {
		if k, _ = cur.Next(); k != nil && bytes.HasPrefix(k, h[:]) {
			next = bytes.Clone(k[len(h):])
		}
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
		return t.contents.Put(h[:], encodeStub(next))
	}
	return t.contents.Delete(h[:])
}

// setHolder rewrites the content record v of h with holder as its holder.
func (t *Tx) setHolder(h Hash, v, holder []byte) error {
	c, _, err := decodeContent(h[:], v)
	if err != nil {
		return err
	}
	return t.contents.Put(h[:], encodeContent(&c, holder))
}
