package store

import (
	"crypto/rand"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
		v := encodeContent(&c, nil)
		if v[0] != contentFormat {
			t.Fatalf("%s: format byte %d, want %d", tc.name, v[0], contentFormat)
		}
		got, _, err := decodeContent(c.Hash[:], v)
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
	v := encodeContent(&Content{TraceIDs: seq}, nil)
	t.Logf("190,000 sequential ids of %d bytes in all: a %d-byte record (format 1: %d)", idBytes, len(v), len(encodeContentV1(&Content{TraceIDs: seq})))
}

// A damaged front-coded list is refused, never decoded into a huge
// allocation: a shared prefix longer than the previous id, or an expansion
// no real id list has.
func TestFrontCodedCorruptRefused(t *testing.T) {
	head := func() encoder {
		e := encoder{}
		e.byte1(contentFormat)
		e.uvarint(0) // no holder
		e.byte1(nameLiteral)
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
	if _, _, err := decodeContent(make([]byte, 32), e.b); err == nil {
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
	if _, _, err := decodeContent(make([]byte, 32), e.b); err == nil {
		t.Errorf("a %d-byte list that expands to %d MB was accepted", len(e.b), n*4000>>20)
	}
	if _, err := contentTraceCount(make([]byte, 32), e.b); err == nil {
		t.Error("contentTraceCount accepted what decodeContent refuses")
	}
}

// A state file of schema 2 holds format 1 content records: a read-only
// open says what to do, a writable open rewrites it as schema 5 and its
// records read as they did.
func TestSchema2ContentRecordsStillRead(t *testing.T) {
	dir := t.TempDir()
	old := Content{Hash: hashOf("old"), Filename: "old.jsonl", Size: 9, TraceIDs: []string{"t-1", "t-2", "t-3"}, UploadedAt: time.Unix(1_700_000_000, 0).UTC()}
	writeOld(t, dir, oldState{version: 2, v1: true, noChains: true, contents: []Content{old}})

	_, err := OpenReadOnly(dir, Options{Target: targetA})
	if err == nil || !strings.Contains(err.Error(), "schema 2") || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("read-only open of a schema 2 file: %v; want an error that says to open it writable once", err)
	}

	db := openT(t, dir, targetA)
	if v := schemaOf(t, db); v != SchemaVersion {
		t.Fatalf("schema after a writable open = %d, want %d", v, SchemaVersion)
	}
	if c, err := db.GetContent(old.Hash); err != nil || !reflect.DeepEqual(c, old) {
		t.Fatalf("after migration: content = %+v, %v; want %+v", c, err, old)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		ns := tx.Bucket(bucketTargets).Bucket([]byte(targetA))
		if v := ns.Bucket(bucketContents).Get(old.Hash[:]); v[0] != contentFormat {
			t.Errorf("the old record was not rewritten (format %d)", v[0])
		}
		return nil
	})
	checkConsistent(t, db)
}

// Folder ids keep their order as keys and come back as they went in, at
// every boundary of the encoding's lengths.
func TestDirIDEncoding(t *testing.T) {
	var ids []uint64
	for _, b := range []uint64{0, 1 << 7, 1<<7 + 1<<14, 1<<7 + 1<<14 + 1<<21, 1<<7 + 1<<14 + 1<<21 + 1<<28, 1 << 40} {
		for d := uint64(0); d < 3; d++ {
			ids = append(ids, b+d)
			if b >= d+1 {
				ids = append(ids, b-d-1)
			}
		}
	}
	ids = append(ids, ^uint64(0))
	slices.Sort(ids)
	var prev []byte
	for _, id := range ids {
		k := appendDirID(nil, id)
		got, n := readDirID(append(k, "tail"...))
		if got != id || n != len(k) {
			t.Fatalf("id %d: encoded %x, read back %d (%d bytes)", id, k, got, n)
		}
		if prev != nil && string(prev) >= string(k) {
			t.Fatalf("id %d encodes to %x, not after the smaller id's %x", id, k, prev)
		}
		prev = k
	}
}

// Times come back exactly, whatever their base, and a time near its base
// or on a whole second takes few bytes.
func TestTimeAt(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name     string
		t, base  time.Time
		maxBytes int
	}{
		{"zero", time.Time{}, base, 1},
		{"same as base", base, base, 1},
		{"40 ms after", base.Add(40 * time.Millisecond), base, 5},
		{"an hour before", base.Add(-time.Hour), base, 7},
		{"no base", base, time.Time{}, 9},
		{"whole second", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, 5},
		{"before 2000", time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC), time.Time{}, 11},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), base, 11},
		{"far future", time.Date(9999, 1, 1, 0, 0, 0, 999999999, time.UTC), base, 12},
	} {
		e := encoder{}
		e.timeAt(tc.t, tc.base)
		d := decoder{b: e.b}
		got := d.timeAt(tc.base)
		if d.err != nil || !got.Equal(tc.t) || len(d.b) != 0 {
			t.Errorf("%s: %v came back as %v (%v)", tc.name, tc.t, got, d.err)
		}
		if len(e.b) > tc.maxBytes {
			t.Errorf("%s: %d bytes, want at most %d", tc.name, len(e.b), tc.maxBytes)
		}
	}
}
