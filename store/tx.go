package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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
	holders  *bolt.Bucket // nil in a schema 5 file opened read-only: its stubs are the holders
	intents  *bolt.Bucket
	deletes  *bolt.Bucket
	segments *bolt.Bucket
	inodes   *bolt.Bucket
	ix       indexes // counts.go: the counters and indexes the hooks keep in step
	dirs     *bolt.Bucket
	cache    *dirCache // the DB's
	dw       dirWrites // what this transaction did to dirs
}

func newTx(btx *bolt.Tx, target string, cache *dirCache) *Tx {
	t := &Tx{btx: btx, cache: cache}
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
	t.holders = ns.Bucket(bucketHolders)
	t.intents = ns.Bucket(bucketIntents)
	t.deletes = ns.Bucket(bucketDeletes)
	t.segments = ns.Bucket(bucketSegments)
	t.inodes = ns.Bucket(bucketInodes)
	t.ix = indexesOf(ns)
	t.dirs = ns.Bucket(bucketDirs)
	return t
}

// errNoNamespace is returned by writes on a Tx without a namespace; Update
// refuses earlier with ErrNoTarget, so it is not seen in practice.
var errNoNamespace = errors.New("store: no target namespace in this transaction")

// isRef reports whether a record holds a reference to its content.
func isRef(r *PathRecord) bool { return !r.Hash.IsZero() && r.State != StateRemoved }

// lookup returns the key of path and its record's value (nil when it has
// no record); the key is nil when its folder is unknown.
func (t *Tx) lookup(path string) (key, v []byte, err error) {
	if t.paths == nil {
		return nil, nil, nil
	}
	key, err = t.pathKey(path, false)
	if errors.Is(err, errNoDir) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return key, t.paths.Get(key), nil
}

// record decodes the value of path's record and resolves its root.
func (t *Tx) record(path string, v []byte) (PathRecord, error) {
	rec, rootID, err := decodePath(path, v)
	if err != nil || rootID == 0 {
		return rec, err
	}
	dir, err := t.dirPath(rootID)
	rec.Root = rootOfFolder(dir)
	return rec, err
}

// GetPath returns the record of path, or ErrNotFound.
func (t *Tx) GetPath(path string) (PathRecord, error) {
	_, v, err := t.lookup(path)
	if err != nil {
		return PathRecord{}, err
	}
	if v == nil {
		return PathRecord{}, ErrNotFound
	}
	return t.record(path, v)
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
	key, err := t.pathKey(rec.Path, true)
	if err != nil {
		return err
	}
	rootID, err := t.rootID(rec.Root, true)
	if err != nil {
		return err
	}
	var old PathRecord
	if v := t.paths.Get(key); v != nil {
		if old, _, err = decodePath(rec.Path, v); err != nil {
			return err
		}
	}
	if isRef(&old) && (!isRef(&rec) || old.Hash != rec.Hash) {
		if err := t.dropRef(old.Hash, key); err != nil {
			return err
		}
	}
	if err := t.paths.Put(key, encodePath(&rec, rootID)); err != nil {
		return fmt.Errorf("store: put path %s: %w", rec.Path, err)
	}
	if err := t.indexInode(key, &old, &rec); err != nil {
		return err
	}
	if err := t.pathChanged(key, &old, &rec); err != nil {
		return err
	}
	if isRef(&rec) && !(isRef(&old) && old.Hash == rec.Hash) {
		return t.addRef(rec.Hash, key)
	}
	return nil
}

// indexInode keeps the inodes index in step: a live path read as a chain
// of segments is found by its device and inode, so the new name of a
// renamed growing file takes over its chain. old is the zero record when
// the path had none.
func (t *Tx) indexInode(key []byte, old, rec *PathRecord) error {
	if t.inodes == nil {
		return nil
	}
	had := isRef(old) && old.chained()
	has := isRef(rec) && rec.chained()
	if had && (!has || old.Dev != rec.Dev || old.Ino != rec.Ino) {
		k := inodeKey(old.Dev, old.Ino)
		if bytes.Equal(t.inodes.Get(k), key) {
			if err := t.inodes.Delete(k); err != nil {
				return err
			}
		}
	}
	if has {
		return t.inodes.Put(inodeKey(rec.Dev, rec.Ino), key)
	}
	return nil
}

// PathByInode returns the path recorded for a growing file's device and
// inode (a .jsonl read as a chain), if one is.
func (t *Tx) PathByInode(dev, ino uint64) (string, bool) {
	if t.inodes == nil || (dev == 0 && ino == 0) {
		return "", false
	}
	v := t.inodes.Get(inodeKey(dev, ino))
	if v == nil {
		return "", false
	}
	p, err := t.pathOf(v)
	return p, err == nil
}

// Chain lists the earlier segments of path, in order.
func (t *Tx) Chain(path string) ([]Segment, error) {
	key, _, err := t.lookup(path)
	if err != nil || key == nil || t.segments == nil {
		return nil, err
	}
	return t.chain(key)
}

func (t *Tx) chain(key []byte) ([]Segment, error) {
	prefix := append(slices.Clip(key), 0)
	var out []Segment
	c := t.segments.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+4; k, v = c.Next() {
		s, err := decodeSegment(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// AppendSegment records seg as the n-th (from 0) earlier segment of path,
// and its reference. The path's record must count it in Prior.
func (t *Tx) AppendSegment(path string, n int, seg Segment) error {
	if t.segments == nil {
		return errNoNamespace
	}
	key, err := t.pathKey(path, true)
	if err != nil {
		return err
	}
	if err := t.segments.Put(segKey(key, n), encodeSegment(seg)); err != nil {
		return fmt.Errorf("store: put segment of %s: %w", path, err)
	}
	return t.addRef(seg.Hash, key)
}

// DropChain deletes the earlier segments of path and their references, and
// returns them. The current segment (the record's Hash) is PutPath's.
func (t *Tx) DropChain(path string) ([]Segment, error) {
	key, v, err := t.lookup(path)
	if err != nil || key == nil || t.segments == nil {
		return nil, err
	}
	return t.dropChain(key, path, v)
}

// dropChain is DropChain of the path with key key and record value v (nil
// when it has none).
func (t *Tx) dropChain(key []byte, path string, v []byte) ([]Segment, error) {
	segs, err := t.chain(key)
	if err != nil || len(segs) == 0 {
		return nil, err
	}
	for n := range segs {
		if err := t.segments.Delete(segKey(key, n)); err != nil {
			return nil, err
		}
	}
	var cur PathRecord
	if v != nil {
		if cur, _, err = decodePath(path, v); err != nil {
			return nil, err
		}
	}
	for _, s := range segs {
		if isRef(&cur) && cur.Hash == s.Hash {
			continue // the same bytes are its current segment too
		}
		if err := t.dropRef(s.Hash, key); err != nil {
			return nil, err
		}
	}
	return segs, nil
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
	rec.Prior = 0 // a removed path holds no segments: a new file there starts a new chain
	if err := t.PutPath(rec); err != nil {
		return old, err
	}
	_, err = t.DropChain(path)
	return old, err
}

// ForgetPath drops the record of path and its reference; when its content
// then has no reference left, the content's record goes too, so the next
// scan uploads it again. ErrNotFound if there is no record.
func (t *Tx) ForgetPath(path string) error {
	key, v, err := t.lookup(path)
	if err != nil {
		return err
	}
	if v == nil {
		return ErrNotFound
	}
	old, _, err := decodePath(path, v)
	if err != nil {
		return err
	}
	segs, err := t.dropChain(key, path, v)
	if err != nil {
		return err
	}
	if err := t.paths.Delete(key); err != nil {
		return err
	}
	if err := t.indexInode(key, &old, &PathRecord{}); err != nil {
		return err
	}
	if err := t.pathChanged(key, &old, &PathRecord{}); err != nil {
		return err
	}
	for _, s := range segs {
		if t.RefCount(s.Hash) == 0 && s.Hash != old.Hash {
			if err := t.DeleteContent(s.Hash); err != nil {
				return err
			}
		}
	}
	if old.Hash.IsZero() {
		return nil
	}
	if isRef(&old) {
		if err := t.dropRef(old.Hash, key); err != nil {
			return err
		}
	}
	if t.RefCount(old.Hash) == 0 {
		return t.DeleteContent(old.Hash)
	}
	return nil
}

// PutIntent writes the upload intent of i.Hash.
func (t *Tx) PutIntent(i Intent) error {
	if t.intents == nil {
		return errNoNamespace
	}
	if i.Hash.IsZero() {
		return errors.New("store: PutIntent: zero hash")
	}
	if err := t.keyCounted(t.intents, i.Hash[:], true, counterIntents); err != nil {
		return err
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
	if err := t.keyCounted(t.intents, h[:], false, counterIntents); err != nil {
		return err
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
	if err := t.keyCounted(t.deletes, []byte(d.TraceID), true, counterDeletes); err != nil {
		return err
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
	if err := t.keyCounted(t.deletes, []byte(traceID), false, counterDeletes); err != nil {
		return err
	}
	return t.deletes.Delete([]byte(traceID))
}
