package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tx is one target's view of a bbolt transaction. A Tx handed to an Update
// function is valid only inside that function; every value it returns is a
// copy that stays valid afterwards.
type Tx struct {
	btx      *bolt.Tx
	paths    *bolt.Bucket // nil (with the others) when the namespace does not exist yet
	contents *bolt.Bucket
	intents  *bolt.Bucket
	deletes  *bolt.Bucket
}

func newTx(btx *bolt.Tx, target string) *Tx {
	t := &Tx{btx: btx}
	if target == "" {
		return t
	}
	targets := btx.Bucket(bucketTargets)
	if targets == nil {
		return t
	}
	ns := targets.Bucket([]byte(target))
	if ns == nil {
		return t
	}
	t.paths = ns.Bucket(bucketPaths)
	t.contents = ns.Bucket(bucketContents)
	t.intents = ns.Bucket(bucketIntents)
	t.deletes = ns.Bucket(bucketDeletes)
	return t
}

// errNoNamespace is returned by writes on a Tx without a namespace; Update
// refuses earlier with ErrNoTarget, so it is not seen in practice.
var errNoNamespace = errors.New("store: no target namespace in this transaction")

// refMarker is the value of a ref key. Ref keys are longer than 32 bytes,
// content keys exactly 32: that, not the value, tells them apart.
var refMarker = []byte{'r'}

// isRefKey reports whether a key of the contents bucket is a ref.
func isRefKey(k []byte) bool { return len(k) > len(Hash{}) }

// refKey is the refs index key: the 32-byte hash, then the path.
func refKey(h Hash, path string) []byte {
	k := make([]byte, 0, len(h)+len(path))
	k = append(k, h[:]...)
	return append(k, path...)
}

// isRef reports whether a record holds a reference to its content.
func isRef(r *PathRecord) bool { return !r.Hash.IsZero() && r.State != StateRemoved }

// GetPath returns the record of path, or ErrNotFound.
func (t *Tx) GetPath(path string) (PathRecord, error) {
	if t.paths == nil {
		return PathRecord{}, ErrNotFound
	}
	v := t.paths.Get([]byte(path))
	if v == nil {
		return PathRecord{}, ErrNotFound
	}
	return decodePath([]byte(path), v)
}

// GetContent returns the record of a content, or ErrNotFound.
func (t *Tx) GetContent(h Hash) (Content, error) {
	if t.contents == nil {
		return Content{}, ErrNotFound
	}
	v := t.contents.Get(h[:])
	if v == nil {
		return Content{}, ErrNotFound
	}
	return decodeContent(h[:], v)
}

// Refs returns the live (not removed) paths whose record has hash h, in
// path order.
func (t *Tx) Refs(h Hash) []string {
	if t.contents == nil {
		return nil
	}
	var out []string
	c := t.contents.Cursor()
	for k, _ := c.Seek(h[:]); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
		if isRefKey(k) {
			out = append(out, string(k[len(h):]))
		}
	}
	return out
}

// RefCount is len(Refs(h)) without building the list.
func (t *Tx) RefCount(h Hash) int {
	if t.contents == nil {
		return 0
	}
	n := 0
	c := t.contents.Cursor()
	for k, _ := c.Seek(h[:]); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
		if isRefKey(k) {
			n++
		}
	}
	return n
}

// PutPath writes the record of rec.Path and keeps the refs index in step:
// the path leaves the refs of the hash it had, and joins the refs of
// rec.Hash when that is set and the state is not removed.
func (t *Tx) PutPath(rec PathRecord) error {
	if t.paths == nil {
		return errNoNamespace
	}
	if rec.Path == "" {
		return errors.New("store: PutPath: empty path")
	}
	if !rec.State.Valid() {
		return fmt.Errorf("store: PutPath %s: unknown state %q", rec.Path, rec.State)
	}
	old, err := t.GetPath(rec.Path)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	case isRef(&old) && (!isRef(&rec) || old.Hash != rec.Hash):
		if err := t.contents.Delete(refKey(old.Hash, old.Path)); err != nil {
			return err
		}
	}
	if err := t.paths.Put([]byte(rec.Path), encodePath(&rec)); err != nil {
		return fmt.Errorf("store: put path %s: %w", rec.Path, err)
	}
	if isRef(&rec) {
		return t.contents.Put(refKey(rec.Hash, rec.Path), refMarker)
	}
	return nil
}

// RemovePath marks path removed at the given time and drops its reference.
// It returns the record as it was before, or ErrNotFound.
func (t *Tx) RemovePath(path string, at time.Time) (PathRecord, error) {
	old, err := t.GetPath(path)
	if err != nil {
		return old, err
	}
	rec := old
	rec.State = StateRemoved
	rec.RemovedAt = at
	rec.UpdatedAt = at
	return old, t.PutPath(rec)
}

// ForgetPath drops the record of path and its reference; when its content
// then has no reference left, the content's record goes too, so the next
// scan uploads it again. ErrNotFound if there is no record.
func (t *Tx) ForgetPath(path string) error {
	old, err := t.GetPath(path)
	if err != nil {
		return err
	}
	if err := t.paths.Delete([]byte(path)); err != nil {
		return err
	}
	if old.Hash.IsZero() {
		return nil
	}
	if isRef(&old) {
		if err := t.contents.Delete(refKey(old.Hash, path)); err != nil {
			return err
		}
	}
	if t.RefCount(old.Hash) == 0 {
		return t.contents.Delete(old.Hash[:])
	}
	return nil
}

// PutContent writes the record of c.Hash.
func (t *Tx) PutContent(c Content) error {
	if t.contents == nil {
		return errNoNamespace
	}
	if c.Hash.IsZero() {
		return errors.New("store: PutContent: zero hash")
	}
	return t.contents.Put(c.Hash[:], encodeContent(&c))
}

// DeleteContent drops the record of a content (no error if there is none).
func (t *Tx) DeleteContent(h Hash) error {
	if t.contents == nil {
		return errNoNamespace
	}
	return t.contents.Delete(h[:])
}

// PutIntent writes the upload intent of i.Hash.
func (t *Tx) PutIntent(i Intent) error {
	if t.intents == nil {
		return errNoNamespace
	}
	if i.Hash.IsZero() {
		return errors.New("store: PutIntent: zero hash")
	}
	return t.intents.Put(i.Hash[:], encodeIntent(&i))
}

// GetIntent returns the upload intent of h, or ErrNotFound.
func (t *Tx) GetIntent(h Hash) (Intent, error) {
	if t.intents == nil {
		return Intent{}, ErrNotFound
	}
	v := t.intents.Get(h[:])
	if v == nil {
		return Intent{}, ErrNotFound
	}
	return decodeIntent(h[:], v)
}

// DeleteIntent clears the upload intent of h (no error if there is none).
func (t *Tx) DeleteIntent(h Hash) error {
	if t.intents == nil {
		return errNoNamespace
	}
	return t.intents.Delete(h[:])
}

// PutDelete writes a pending remote delete.
func (t *Tx) PutDelete(d Delete) error {
	if t.deletes == nil {
		return errNoNamespace
	}
	if d.TraceID == "" {
		return errors.New("store: PutDelete: empty trace id")
	}
	return t.deletes.Put([]byte(d.TraceID), encodeDelete(&d))
}

// GetDelete returns the pending delete of a trace, or ErrNotFound.
func (t *Tx) GetDelete(traceID string) (Delete, error) {
	if t.deletes == nil {
		return Delete{}, ErrNotFound
	}
	v := t.deletes.Get([]byte(traceID))
	if v == nil {
		return Delete{}, ErrNotFound
	}
	return decodeDelete([]byte(traceID), v)
}

// DeleteDelete clears a pending delete, once done (no error if there is none).
func (t *Tx) DeleteDelete(traceID string) error {
	if t.deletes == nil {
		return errNoNamespace
	}
	return t.deletes.Delete([]byte(traceID))
}
