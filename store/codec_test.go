package store

import (
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

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

// The ids of one create, numbered in order by the server, take a fraction
// of their bytes in a content record, and come back as they went in.
func TestContentIDsFrontCoded(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	seq := make([]string, 190_000)
	idBytes := 0
	for i := range seq {
		seq[i] = "tr_9x2k" + strconv.FormatUint(uint64(1_000_000+i), 36)
		idBytes += len(seq[i])
	}
	random := make([]string, 1000)
	for i := range random {
		random[i] = rand.Text()
	}
	for _, tc := range []struct {
		name     string
		ids      []string
		maxRatio float64 // of the record's size to format 1's
	}{
		{"sequential", seq, 0.4},
		{"random", random, 1.1},
		{"one", []string{"only"}, 1.2},
		{"none", nil, 1},
		{"repeated and prefixes", []string{"abc", "abc", "ab", "", "abcd", "b"}, 1.5},
	} {
		c := Content{Hash: Hash{7}, Filename: "big.jsonl", Size: 50 << 20, TraceIDs: tc.ids, UploadedAt: now}
		v := encodeContent(&c)
		if v[0] != contentFormat {
			t.Fatalf("%s: format byte %d, want %d", tc.name, v[0], contentFormat)
		}
		got, err := decodeContent(c.Hash[:], v)
		if err != nil || !slices.Equal(got.TraceIDs, c.TraceIDs) || got.Filename != c.Filename || got.Size != c.Size || !got.UploadedAt.Equal(now) {
			t.Fatalf("%s: round trip = %d ids, %v", tc.name, len(got.TraceIDs), err)
		}
		if n, err := contentTraceCount(c.Hash[:], v); err != nil || n != len(tc.ids) {
			t.Fatalf("%s: contentTraceCount = %d, %v; want %d", tc.name, n, err, len(tc.ids))
		}
		if ratio := float64(len(v)) / float64(len(encodeContentV1(&c))); ratio > tc.maxRatio {
			t.Errorf("%s: record is %d bytes, %.2f of format 1's; want at most %.2f", tc.name, len(v), ratio, tc.maxRatio)
		}
	}
	v := encodeContent(&Content{TraceIDs: seq})
	t.Logf("190,000 sequential ids of %d bytes in all: a %d-byte record (format 1: %d)", idBytes, len(v), len(encodeContentV1(&Content{TraceIDs: seq})))
}

// A damaged front-coded list is refused, never decoded into a huge
// allocation: a shared prefix longer than the previous id, or an expansion
// no real id list has.
func TestFrontCodedCorruptRefused(t *testing.T) {
	head := func() encoder {
		e := encoder{}
		e.byte1(contentFormat)
		e.str("a.jsonl")
		e.varint(10)
		return e
	}
	e := head()
	e.uvarint(2)
	e.uvarint(0)
	e.str("ab")
	e.uvarint(3) // shares 3 bytes of a 2-byte id
	e.str("")
	e.time(time.Time{})
	if _, err := decodeContent(make([]byte, 32), e.b); err == nil {
		t.Error("a shared prefix longer than the previous id was accepted")
	}
	e = head()
	const n = 5000
	e.uvarint(n)
	e.uvarint(0)
	e.str(string(make([]byte, 4000)))
	for range n - 1 {
		e.uvarint(4000)
		e.str("")
	}
	e.time(time.Time{})
	if _, err := decodeContent(make([]byte, 32), e.b); err == nil {
		t.Errorf("a %d-byte list that expands to %d MB was accepted", len(e.b), n*4000>>20)
	}
	if _, err := contentTraceCount(make([]byte, 32), e.b); err == nil {
		t.Error("contentTraceCount accepted what decodeContent refuses")
	}
}

// A state file of schema 2 holds format 1 content records: it opens
// read-only as it is, and a writable open moves it to schema 3 without
// rewriting them; records written since are front-coded.
func TestSchema2ContentRecordsStillRead(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	old := Content{Hash: hashOf("old"), Filename: "old.jsonl", Size: 9, TraceIDs: []string{"t-1", "t-2", "t-3"}, UploadedAt: time.Unix(1_700_000_000, 0).UTC()}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		ns := tx.Bucket(bucketTargets).Bucket([]byte(targetA))
		if err := ns.Bucket(bucketContents).Put(old.Hash[:], encodeContentV1(&old)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	dropIndexes(t, dir) // a schema 2 file has no counters

	ro, err := OpenReadOnly(dir, Options{Target: targetA})
	if err != nil {
		t.Fatalf("read-only open of a schema 2 file: %v", err)
	}
	if c, err := ro.GetContent(old.Hash); err != nil || !slices.Equal(c.TraceIDs, old.TraceIDs) {
		t.Fatalf("read-only: content = %+v, %v", c, err)
	}
	ro.Close()

	db = openT(t, dir, targetA)
	if v := schemaOf(t, db); v != 3 {
		t.Fatalf("schema after a writable open = %d, want 3", v)
	}
	if c, err := db.GetContent(old.Hash); err != nil || !slices.Equal(c.TraceIDs, old.TraceIDs) {
		t.Fatalf("after migration: content = %+v, %v", c, err)
	}
	fresh := Content{Hash: hashOf("new"), Filename: "new.jsonl", Size: 9, TraceIDs: []string{"t-4", "t-5"}, UploadedAt: time.Unix(1_700_000_100, 0).UTC()}
	update(t, db, func(tx *Tx) error { return tx.PutContent(fresh) })
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		ns := tx.Bucket(bucketTargets).Bucket([]byte(targetA))
		if v := ns.Bucket(bucketContents).Get(old.Hash[:]); v[0] != recordFormat {
			t.Errorf("the old record was rewritten (format %d)", v[0])
		}
		if v := ns.Bucket(bucketContents).Get(fresh.Hash[:]); v[0] != contentFormat {
			t.Errorf("a new record is format %d, want %d", v[0], contentFormat)
		}
		return nil
	})
	checkConsistent(t, db)
}
