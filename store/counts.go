package store

// counts.go keeps, per target, the totals `tracesync status` shows and two
// small indexes of the paths worth finding apart, changed in the same
// transaction as the records they follow, so that status, `files --state`
// for a state other than uploaded, and the recent errors read a few keys
// instead of every record. Layout, beside paths and contents:
//
//	targets/<target>/counts   counter name                -> int64, 8 bytes big-endian
//	targets/<target>/bystate  state code (1 byte) + path key -> empty (every path not uploaded)
//	targets/<target>/errors   UpdatedAt (12 bytes) + path key -> empty (every path with a LastError)
//
// A namespace without them (a file from before them) gets them from
// buildCounts when opened read-write; until then readers walk the records.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketCounts  = []byte("counts")
	bucketByState = []byte("bystate")
	bucketErrors  = []byte("errors")
)

// counter is one of the counters: the fixed ones, then one per state in
// the order of States.
type counter int

const (
	counterChained counter = iota
	counterSegments
	counterContents
	counterTraces
	counterDeletes
	counterIntents
	counterFiles // + the state's index in States
)

// counterNames are the counters' keys in the counts bucket.
var counterNames = func() [][]byte {
	names := [][]byte{[]byte("chained"), []byte("segments"), []byte("contents"), []byte("traces"), []byte("deletes"), []byte("intents")}
	for _, s := range States {
		names = append(names, []byte("files:"+string(s)))
	}
	return names
}()

// stateCounter is the counter of the paths in state s; -1 for a state
// that is not one of States.
func stateCounter(s State) counter {
	if i := slices.Index(States, s); i >= 0 {
		return counterFiles + counter(i)
	}
	return -1
}

// byStateCode is the first byte of a bystate key; 0 for uploaded, which is
// most of the store and is not indexed.
func byStateCode(s State) byte {
	switch s {
	case StatePending:
		return 'p'
	case StateRetrying:
		return 'r'
	case StateQuarantined:
		return 'q'
	case StateIncomplete:
		return 'i'
	case StateSkipped:
		return 's'
	case StateRemoved:
		return 'x'
	}
	return 0
}

// indexes are one target's counters and indexes; nil buckets in a file
// that has none yet (only seen read-only: a read-write open builds them).
type indexes struct {
	counts, byState, errs *bolt.Bucket
	// delta is what this transaction added to each counter so far, written
	// by flushCounts before it commits, so that a counter many records move
	// is read and written once per transaction, not once per record.
	delta []int64
}

func indexesOf(ns *bolt.Bucket) indexes {
	return indexes{counts: ns.Bucket(bucketCounts), byState: ns.Bucket(bucketByState), errs: ns.Bucket(bucketErrors)}
}

// byStateKey is rec's key in the bystate index, nil when it has none.
func byStateKey(key []byte, rec *PathRecord) []byte {
	code := byStateCode(rec.State)
	if rec.State == "" || code == 0 {
		return nil
	}
	return append([]byte{code}, key...)
}

// errTimeLen is the length of the UpdatedAt prefix of an errors key.
const errTimeLen = 12

// errorKey is rec's key in the errors index, nil when it has no LastError:
// the seconds (sign bit flipped, so that they sort as signed) and the
// nanoseconds of UpdatedAt, then the path key, so keys sort by time.
func errorKey(key []byte, rec *PathRecord) []byte {
	if rec.State == "" || rec.LastError == "" {
		return nil
	}
	k := make([]byte, errTimeLen, errTimeLen+len(key))
	binary.BigEndian.PutUint64(k, uint64(rec.UpdatedAt.Unix())^1<<63)
	binary.BigEndian.PutUint32(k[8:], uint32(rec.UpdatedAt.Nanosecond()))
	return append(k, key...)
}

// chainedSegments is what a record adds to the chained and segments
// counters: a live path uploaded in more than one segment.
func chainedSegments(rec *PathRecord) (chained, segments int64) {
	if rec.State == "" || rec.State == StateRemoved || rec.Prior <= 0 {
		return 0, 0
	}
	return 1, int64(rec.Prior) + 1
}

// bump adds delta to a counter, in this transaction's deltas.
func (t *Tx) bump(c counter, delta int64) {
	if c < 0 || delta == 0 {
		return
	}
	if t.ix.delta == nil {
		t.ix.delta = make([]int64, len(counterNames))
	}
	t.ix.delta[c] += delta
}

// flushCounts writes this transaction's counter deltas; the writer calls
// it before each commit.
func (t *Tx) flushCounts() error {
	if t.ix.counts == nil || t.ix.delta == nil {
		return nil
	}
	for c, d := range t.ix.delta {
		if d == 0 {
			continue
		}
		name := counterNames[c]
		var n int64
		if v := t.ix.counts.Get(name); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		if err := t.ix.counts.Put(name, binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n+d))); err != nil {
			return err
		}
	}
	t.ix.delta = nil
	return nil
}

// moveKey replaces key old by key new in b (either may be nil: none).
func moveKey(b *bolt.Bucket, old, new []byte) error {
	if bytes.Equal(old, new) {
		return nil
	}
	if old != nil {
		if err := b.Delete(old); err != nil {
			return err
		}
	}
	if new != nil {
		return b.Put(new, []byte{})
	}
	return nil
}

// pathChanged moves the counters and indexes of the path whose key is key
// from its old record to rec. A zero State means no record: old's for a
// path new to the store, rec's for one whose record is deleted.
func (t *Tx) pathChanged(key []byte, old, rec *PathRecord) error {
	if t.ix.counts == nil {
		return nil
	}
	if old.State != rec.State {
		if old.State != "" {
			t.bump(stateCounter(old.State), -1)
		}
		if rec.State != "" {
			t.bump(stateCounter(rec.State), 1)
		}
	}
	oldChained, oldSegs := chainedSegments(old)
	chained, segs := chainedSegments(rec)
	t.bump(counterChained, chained-oldChained)
	t.bump(counterSegments, segs-oldSegs)
	if err := moveKey(t.ix.byState, byStateKey(key, old), byStateKey(key, rec)); err != nil {
		return err
	}
	return moveKey(t.ix.errs, errorKey(key, old), errorKey(key, rec))
}

// deletePathKey deletes the path record under key, keeping the counters
// and indexes in step. It leaves the refs and the chain alone: it is for a
// record that holds none (a removed path).
func (t *Tx) deletePathKey(key []byte) error {
	v := t.paths.Get(key)
	if v == nil {
		return nil
	}
	old, _, err := decodePath("", v) // the indexes need its state, times and chain, not its path
	if err != nil {
		return err
	}
	if err := t.paths.Delete(key); err != nil {
		return err
	}
	return t.pathChanged(key, &old, &PathRecord{})
}

// contentChanged keeps the contents and traces counters in step, called
// before the record of h is put with traces trace ids (put) or deleted.
func (t *Tx) contentChanged(h Hash, traces int, put bool) error {
	if t.ix.counts == nil {
		return nil
	}
	var contents, ids int64
	if v := t.contents.Get(h[:]); v != nil && isRecord(h[:], v) { // a stub is no content
		n, err := contentTraceCount(h[:], v)
		if err != nil {
			return err
		}
		contents, ids = -1, -int64(n)
	}
	if put {
		contents, ids = contents+1, ids+int64(traces)
	}
	t.bump(counterContents, contents)
	t.bump(counterTraces, ids)
	return nil
}

// keyCounted keeps counter c in step with the keys of b, called before
// key is put (put) or deleted.
func (t *Tx) keyCounted(b *bolt.Bucket, key []byte, put bool, c counter) error {
	if t.ix.counts == nil {
		return nil
	}
	switch had := b.Get(key) != nil; {
	case put && !had:
		t.bump(c, 1)
	case !put && had:
		t.bump(c, -1)
	}
	return nil
}

// recount walks every record of the namespace t sees and returns what its
// counters hold; index, when set, gets the bystate and errors keys of each
// path record (nil when it has none).
func (t *Tx) recount(index func(byState, errKey []byte) error) ([]int64, error) {
	m := make([]int64, len(counterNames))
	if t.paths != nil {
		err := t.paths.ForEach(func(k, v []byte) error {
			rec, _, err := decodePath("", v)
			if err != nil {
				return err
			}
			if c := stateCounter(rec.State); c >= 0 {
				m[c]++
			}
			c, s := chainedSegments(&rec)
			m[counterChained] += c
			m[counterSegments] += s
			if index != nil {
				return index(byStateKey(k, &rec), errorKey(k, &rec))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if t.contents != nil {
		err := t.contents.ForEach(func(k, v []byte) error {
			if !isRecord(k, v) {
				return nil
			}
			n, err := contentTraceCount(k, v)
			if err != nil {
				return err
			}
			m[counterContents]++
			m[counterTraces] += int64(n)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	m[counterIntents] = int64(keyCount(t.intents))
	m[counterDeletes] = int64(keyCount(t.deletes))
	return m, nil
}

// keyCount counts the keys of b (0 when b is nil).
func keyCount(b *bolt.Bucket) int {
	n := 0
	if b != nil {
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
	}
	return n
}

// buildCounts (re)computes the counters and indexes of the namespace ns
// from its records: for the schema migration, and for a namespace that
// has none when opened read-write.
func buildCounts(ns *bolt.Bucket) error {
	for _, name := range [][]byte{bucketCounts, bucketByState, bucketErrors} {
		if err := ns.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return fmt.Errorf("build counts: %w", err)
		}
	}
	counts, err := ns.CreateBucket(bucketCounts)
	if err != nil {
		return fmt.Errorf("build counts: %w", err)
	}
	byState, err := ns.CreateBucket(bucketByState)
	if err != nil {
		return fmt.Errorf("build counts: %w", err)
	}
	errs, err := ns.CreateBucket(bucketErrors)
	if err != nil {
		return fmt.Errorf("build counts: %w", err)
	}
	t := &Tx{paths: ns.Bucket(bucketPaths), contents: ns.Bucket(bucketContents), intents: ns.Bucket(bucketIntents), deletes: ns.Bucket(bucketDeletes)}
	m, err := t.recount(func(s, e []byte) error {
		if s != nil {
			if err := byState.Put(s, []byte{}); err != nil {
				return err
			}
		}
		if e != nil {
			return errs.Put(e, []byte{})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build counts: %w", err)
	}
	for c, n := range m {
		if n != 0 {
			if err := counts.Put(counterNames[c], binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return fmt.Errorf("build counts: %w", err)
			}
		}
	}
	return nil
}

// ensureCounts builds the counters and indexes of every namespace that has
// none (a state written before them).
func ensureCounts(tx *bolt.Tx) error {
	targets := tx.Bucket(bucketTargets)
	if targets == nil {
		return nil
	}
	return targets.ForEachBucket(func(name []byte) error {
		if ns := targets.Bucket(name); ns.Bucket(bucketCounts) == nil {
			return buildCounts(ns)
		}
		return nil
	})
}

// storedCounts reads the counters, with this transaction's deltas.
func (t *Tx) storedCounts() ([]int64, error) {
	m := make([]int64, len(counterNames))
	for c, name := range counterNames {
		switch v := t.ix.counts.Get(name); {
		case v == nil:
		case len(v) != 8:
			return nil, fmt.Errorf("decode counter %q: %w", name, ErrCorrupt)
		default:
			m[c] = int64(binary.BigEndian.Uint64(v))
		}
		if t.ix.delta != nil {
			m[c] += t.ix.delta[c]
		}
	}
	return m, nil
}

// counts fills c from the counters, or from a walk of every record in a
// file that has none yet.
func (t *Tx) counts(c *Counts) error {
	read := t.storedCounts
	if t.ix.counts == nil {
		read = func() ([]int64, error) { return t.recount(nil) }
	}
	m, err := read()
	if err != nil {
		return err
	}
	for _, s := range States {
		c.Files[s] = int(m[stateCounter(s)])
	}
	c.Contents = int(m[counterContents])
	c.Traces = int(m[counterTraces])
	c.DeletesPending = int(m[counterDeletes])
	c.Intents = int(m[counterIntents])
	c.Chained = int(m[counterChained])
	c.Segments = int(m[counterSegments])
	return nil
}

// recordAt reads the path record an index key points to.
func (t *Tx) recordAt(key []byte) (PathRecord, error) {
	v := t.paths.Get(key)
	if v == nil {
		return PathRecord{}, fmt.Errorf("index names path key %q, which has no record: %w", key, ErrCorrupt)
	}
	path, err := t.pathOf(key)
	if err != nil {
		return PathRecord{}, err
	}
	return t.record(path, v)
}

// recentErrors is RecentErrors from the errors index: the newest keys,
// and those that share the n-th one's time, so ties sort as a walk does.
func (t *Tx) recentErrors(n int) ([]PathRecord, error) {
	var out []PathRecord
	var edge []byte // the n-th record's time
	c := t.ix.errs.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		if len(k) < errTimeLen {
			return nil, fmt.Errorf("decode errors index key %x: %w", k, ErrCorrupt)
		}
		if edge != nil && !bytes.Equal(k[:errTimeLen], edge) {
			break
		}
		rec, err := t.recordAt(k[errTimeLen:])
		if err != nil {
			return nil, err
		}
		if out = append(out, rec); len(out) == n {
			edge = k[:errTimeLen]
		}
	}
	sortRecentErrors(out)
	return out[:min(n, len(out))], nil
}

// sortRecentErrors puts the newest first, and ties in path order.
func sortRecentErrors(recs []PathRecord) {
	slices.SortStableFunc(recs, func(a, b PathRecord) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
}

// ForEachPathIn calls fn for every path record in state ("" for all),
// grouped by folder (not in path order): in chunks, each from
// one read transaction, with fn outside any. Every state but uploaded is
// read from the bystate index, not by walking every record.
func (db *DB) ForEachPathIn(state State, fn func(PathRecord) error) error {
	code := byStateCode(state)
	indexed := false
	_ = db.view(func(t *Tx) error {
		indexed = t.ix.byState != nil
		return nil
	})
	if code == 0 || !indexed {
		return db.ForEachPath("", func(r PathRecord) error {
			if state != "" && r.State != state {
				return nil
			}
			return fn(r)
		})
	}
	start := []byte{code}
	first := true
	for {
		var chunk []PathRecord
		err := db.view(func(t *Tx) error {
			if t.ix.byState == nil {
				return nil
			}
			c := t.ix.byState.Cursor()
			k, _ := c.Seek(start)
			if !first && k != nil && bytes.Equal(k, start) {
				k, _ = c.Next() // start is the last key of the previous chunk
			}
			for ; k != nil && k[0] == code && len(chunk) < forEachChunk; k, _ = c.Next() {
				rec, err := t.recordAt(k[1:])
				if err != nil {
					return err
				}
				chunk = append(chunk, rec)
				start = append(start[:0], k...)
			}
			return nil
		})
		if done, err := emitChunk(chunk, err, fn); done {
			return err
		}
		first = false
	}
}
