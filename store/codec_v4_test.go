package store

// Frozen copies of how schema 4 (and 3) wrote path and content records,
// to build old files for the migration tests. Do not change them.

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// encodePathV4 is schema 4's encodePath: the path is the key.
func encodePathV4(r *PathRecord) []byte {
	e := encoder{b: make([]byte, 0, 96+len(r.Root)+len(r.LastError))}
	chained := r.chained()
	if chained {
		e.byte1(chainFormatV4)
	} else {
		e.byte1(recordFormat)
	}
	e.str(r.Root)
	e.hash(r.Hash)
	e.varint(r.Size)
	e.time(r.ModTime)
	e.uvarint(r.Dev)
	e.uvarint(r.Ino)
	e.str(string(r.State))
	e.varint(int64(r.Attempts))
	e.time(r.NextAttempt)
	e.str(r.LastError)
	e.time(r.FirstSeen)
	e.time(r.UpdatedAt)
	e.time(r.RemovedAt)
	if chained {
		e.varint(r.Start)
		e.varint(r.End)
		e.b = append(e.b, r.Print.Head[:]...)
		e.b = append(e.b, r.Print.Tail[:]...)
		e.uvarint(uint64(r.Prior))
		var flags uint64
		if r.More {
			flags |= 1
		}
		e.uvarint(flags)
	}
	return e.b
}

// encodeContentV3 is schema 3 and 4's encodeContent (front-coded ids).
func encodeContentV3(c *Content) []byte {
	e := encoder{}
	e.byte1(contentFormatV3)
	e.str(c.Filename)
	e.varint(c.Size)
	e.frontCoded(c.TraceIDs)
	e.time(c.UploadedAt)
	return e.b
}

// encodeContentV1 is how content records were written up to schema 2.
func encodeContentV1(c *Content) []byte {
	e := encoder{}
	e.byte1(recordFormat)
	e.str(c.Filename)
	e.varint(c.Size)
	e.uvarint(uint64(len(c.TraceIDs)))
	for _, id := range c.TraceIDs {
		e.str(id)
	}
	e.time(c.UploadedAt)
	return e.b
}

// oldState is what a test writes into a file of an old schema.
type oldState struct {
	version  uint32
	target   string
	paths    []PathRecord
	contents []Content
	v1       bool                 // content records in format 1 (schema 2 and older)
	segments map[string][]Segment // earlier segments by path
	intents  []Intent
	deletes  []Delete
	noRefs   bool // schema 1: no refs index
	noChains bool // no segments or inodes buckets (schema 3 as released)
}

// writeOld writes st into dir's state file as the schema it names wrote
// it: keys are whole paths, refs are hash + path, values in the old formats.
func writeOld(t testing.TB, dir string, st oldState) {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	target := st.target
	if target == "" {
		target = targetA
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, st.version)); err != nil {
			return err
		}
		if err := meta.Put(keyLastTarget, []byte(target)); err != nil {
			return err
		}
		targets, _ := tx.CreateBucket(bucketTargets)
		ns, _ := targets.CreateBucket([]byte(target))
		buckets := [][]byte{bucketPaths, bucketContents, bucketIntents, bucketDeletes}
		if !st.noChains {
			buckets = append(buckets, bucketSegments, bucketInodes)
		}
		for _, b := range buckets {
			if _, err := ns.CreateBucket(b); err != nil {
				return err
			}
		}
		paths, contents := ns.Bucket(bucketPaths), ns.Bucket(bucketContents)
		for _, r := range st.paths {
			if err := paths.Put([]byte(r.Path), encodePathV4(&r)); err != nil {
				return err
			}
			if st.noRefs || !isRef(&r) {
				continue
			}
			if err := contents.Put(refKey(r.Hash, []byte(r.Path)), refMarker); err != nil {
				return err
			}
			if r.chained() && !st.noChains {
				if err := ns.Bucket(bucketInodes).Put(inodeKey(r.Dev, r.Ino), []byte(r.Path)); err != nil {
					return err
				}
			}
			for n, s := range st.segments[r.Path] {
				if err := ns.Bucket(bucketSegments).Put(segKey([]byte(r.Path), n), encodeSegment(s)); err != nil {
					return err
				}
				if err := contents.Put(refKey(s.Hash, []byte(r.Path)), refMarker); err != nil {
					return err
				}
			}
		}
		for _, c := range st.contents {
			v := encodeContentV3(&c)
			if st.v1 {
				v = encodeContentV1(&c)
			}
			if err := contents.Put(c.Hash[:], v); err != nil {
				return err
			}
		}
		for _, i := range st.intents {
			if err := ns.Bucket(bucketIntents).Put(i.Hash[:], encodeIntent(&i)); err != nil {
				return err
			}
		}
		for _, d := range st.deletes {
			if err := ns.Bucket(bucketDeletes).Put([]byte(d.TraceID), encodeDelete(&d)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
