package store

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Values are encoded in a small binary format of our own: a format byte,
// then fields as varints and length-prefixed strings. It is compact, cheap
// to decode (the restart fast path decodes one record per file) and every
// decode copies out of the bbolt page, so no value aliases mmap'd memory.

// recordFormat is the first byte of every encoded value. A value with
// another first byte is refused as corrupt.
const recordFormat byte = 1

type encoder struct{ b []byte }

func (e *encoder) byte1(v byte)     { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) hash(h Hash)      { e.b = append(e.b, h[:]...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte1(0)
		return
	}
	e.byte1(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
	d.b = nil
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) hash() Hash {
	var h Hash
	if len(d.b) < len(h) {
		d.fail()
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[len(h):]
	return h
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n]) // copies: never alias the bbolt page
	d.b = d.b[n:]
	return s
}

// skipStr steps over a string without copying it.
func (d *decoder) skipStr() {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return
	}
	d.b = d.b[n:]
}

func (d *decoder) strs() []string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) { // each string takes at least one byte
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, d.str())
	}
	return out
}

func (d *decoder) time() time.Time {
	switch d.byte1() {
	case 0:
		return time.Time{}
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			d.fail()
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail()
		return time.Time{}
	}
}

// start checks the format byte.
func (d *decoder) start() {
	if d.byte1() != recordFormat {
		d.fail()
	}
}

func (d *decoder) finish(what string, key []byte) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = ErrCorrupt
	}
	if d.err != nil {
		return fmt.Errorf("decode %s %q: %w", what, key, d.err)
	}
	return nil
}

// encodePath encodes a PathRecord; the path itself is the key.
func encodePath(r *PathRecord) []byte {
	e := encoder{b: make([]byte, 0, 96+len(r.Root)+len(r.LastError))}
	chained := r.chained()
	if chained {
		e.byte1(chainFormat)
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

// chainFormat is the first byte of a path record with segments (a growing
// .jsonl, since schema 4): the fields of recordFormat, then the range of
// the last segment, the print, the count of earlier segments (each is
// a key of its own in the segments bucket, so an append writes one key,
// not a list that grows with the file) and flags (1: More). Records
// without them keep recordFormat, byte for byte.
const chainFormat byte = 3

func decodePath(key, v []byte) (PathRecord, error) {
	d := decoder{b: v}
	format := d.byte1()
	if format != recordFormat && format != chainFormat {
		d.fail()
	}
	r := PathRecord{Path: string(key)}
	r.Root = d.str()
	r.Hash = d.hash()
	r.Size = d.varint()
	r.ModTime = d.time()
	r.Dev = d.uvarint()
	r.Ino = d.uvarint()
	r.State = State(d.str())
	r.Attempts = int(d.varint())
	r.NextAttempt = d.time()
	r.LastError = d.str()
	r.FirstSeen = d.time()
	r.UpdatedAt = d.time()
	r.RemovedAt = d.time()
	if format == chainFormat {
		r.Start = d.varint()
		r.End = d.varint()
		if len(d.b) < 32 {
			d.fail()
		} else {
			copy(r.Print.Head[:], d.b[:16])
			copy(r.Print.Tail[:], d.b[16:32])
			d.b = d.b[32:]
		}
		r.Prior = int(d.uvarint())
		r.More = d.uvarint()&1 != 0
	}
	return r, d.finish("path", key)
}

// contentFormat is the first byte of a content record since schema 3: its
// trace ids are front-coded, each stored as the length of the prefix it
// shares with the previous id and the rest. Ids of one create share most of
// their bytes wherever the server numbers them in order, which a large
// file's hundreds of thousands of ids made costly as plain strings; random
// ids (UUIDv4) cost one byte more each. Format 1 content records, from
// older builds, still decode.
const contentFormat byte = 2

// encodeContent encodes a Content; the hash is the key.
func encodeContent(c *Content) []byte {
	// Room for the ids at worst: each a shared-prefix varint, a length
	// varint (at most 2 bytes each for ids under 16 KiB; append grows the
	// buffer for longer ones) and all its bytes.
	n := 64 + len(c.Filename)
	for _, id := range c.TraceIDs {
		n += 4 + len(id)
	}
	e := encoder{b: make([]byte, 0, n)}
	e.byte1(contentFormat)
	e.str(c.Filename)
	e.varint(c.Size)
	e.uvarint(uint64(len(c.TraceIDs)))
	prev := ""
	for _, id := range c.TraceIDs {
		k := sharedPrefix(prev, id)
		e.uvarint(uint64(k))
		e.str(id[k:])
		prev = id
	}
	e.time(c.UploadedAt)
	if len(e.b) < cap(e.b)/2 {
		// Shared prefixes saved most of the room: keep only what is used.
		e.b = append([]byte(nil), e.b...)
	}
	return e.b
}

func sharedPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func decodeContent(key, v []byte) (Content, error) {
	var c Content
	if len(key) != len(c.Hash) {
		return c, fmt.Errorf("decode content key %x: %w", key, ErrCorrupt)
	}
	copy(c.Hash[:], key)
	d := decoder{b: v}
	format := d.startContent()
	c.Filename = d.str()
	c.Size = d.varint()
	if format == recordFormat {
		c.TraceIDs = d.strs()
	} else {
		c.TraceIDs = d.frontCoded()
	}
	c.UploadedAt = d.time()
	return c, d.finish("content", key)
}

// startContent checks the format byte of a content record and returns it.
func (d *decoder) startContent() byte {
	f := d.byte1()
	if f != recordFormat && f != contentFormat {
		d.fail()
	}
	return f
}

// frontCoded decodes contentFormat's id list. All ids share one string,
// built in a second pass once the first (skipFrontCoded) has checked every
// entry and summed their lengths: one allocation for the bytes of hundreds
// of thousands of ids, none aliasing the bbolt page. Each id is a slice of
// what the builder holds so far (its buffer, grown once, never moves).
func (d *decoder) frontCoded() []string {
	n := d.uvarint()
	start := d.b
	total := d.skipFrontCoded(n)
	if d.err != nil || n == 0 {
		return nil
	}
	var sb strings.Builder
	sb.Grow(total)
	out := make([]string, n)
	b, prev := start, ""
	for i := range out {
		k, m := binary.Uvarint(b)
		b = b[m:]
		rest, m := binary.Uvarint(b)
		b = b[m:]
		at := sb.Len()
		sb.WriteString(prev[:k])
		sb.Write(b[:rest])
		b = b[rest:]
		prev = sb.String()[at:]
		out[i] = prev
	}
	return out
}

// skipFrontCoded steps over n front-coded ids, checking each, and returns
// the bytes they decode to.
func (d *decoder) skipFrontCoded(n uint64) int {
	if d.err != nil || n > uint64(len(d.b))/2 { // each id takes at least two bytes
		d.fail()
		return 0
	}
	start := len(d.b)
	total, prevLen := 0, uint64(0)
	for range n {
		k := d.uvarint()
		rest := d.uvarint()
		if d.err != nil || k > prevLen || rest > uint64(len(d.b)) {
			d.fail()
			return 0
		}
		d.b = d.b[rest:]
		prevLen = k + rest
		total += int(prevLen)
	}
	if total > 64*start {
		// Ids of under 128 bytes cannot expand more than that: a corrupt
		// record must not make decoding allocate without bound.
		d.fail()
		return 0
	}
	return total
}

// contentTraceCount is len(decodeContent(key, v).TraceIDs), with the same
// checks, without copying the ids out: status and every metrics scrape
// count the traces of all contents.
func contentTraceCount(key, v []byte) (int, error) {
	if len(key) != len(Hash{}) {
		return 0, fmt.Errorf("decode content key %x: %w", key, ErrCorrupt)
	}
	d := decoder{b: v}
	format := d.startContent()
	d.skipStr() // filename
	d.varint()  // size
	n := d.uvarint()
	if format == contentFormat {
		d.skipFrontCoded(n)
	} else {
		if d.err != nil || n > uint64(len(d.b)) {
			d.fail()
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			d.skipStr()
		}
	}
	d.time() // uploaded at
	return int(n), d.finish("content", key)
}

// encodeIntent encodes an Intent; the hash is the key.
func encodeIntent(i *Intent) []byte {
	e := encoder{b: make([]byte, 0, 48+len(i.Path)+len(i.Filename))}
	e.byte1(recordFormat)
	e.str(i.Path)
	e.str(i.Filename)
	e.varint(i.Size)
	e.byte1(byte(i.Phase))
	e.time(i.StartedAt)
	return e.b
}

func decodeIntent(key, v []byte) (Intent, error) {
	var i Intent
	if len(key) != len(i.Hash) {
		return i, fmt.Errorf("decode intent key %x: %w", key, ErrCorrupt)
	}
	copy(i.Hash[:], key)
	d := decoder{b: v}
	d.start()
	i.Path = d.str()
	i.Filename = d.str()
	i.Size = d.varint()
	i.Phase = Phase(d.byte1())
	i.StartedAt = d.time()
	return i, d.finish("intent", key)
}

// encodeDelete encodes a Delete; the trace id is the key.
func encodeDelete(x *Delete) []byte {
	e := encoder{b: make([]byte, 0, 64+len(x.LastError))}
	e.byte1(recordFormat)
	e.hash(x.Hash)
	e.varint(int64(x.Attempts))
	e.time(x.NextAttempt)
	e.str(x.LastError)
	e.time(x.QueuedAt)
	return e.b
}

func decodeDelete(key, v []byte) (Delete, error) {
	x := Delete{TraceID: string(key)}
	d := decoder{b: v}
	d.start()
	x.Hash = d.hash()
	x.Attempts = int(d.varint())
	x.NextAttempt = d.time()
	x.LastError = d.str()
	x.QueuedAt = d.time()
	return x, d.finish("delete", key)
}

// segKey is the key of a path's n-th earlier segment: the path, a NUL
// (never in a path) and n, big-endian, so a path's segments sort in order.
func segKey(path string, n int) []byte {
	k := make([]byte, 0, len(path)+5)
	k = append(k, path...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(n))
}

func encodeSegment(s Segment) []byte {
	e := encoder{b: make([]byte, 0, 42)}
	e.byte1(recordFormat)
	e.hash(s.Hash)
	e.varint(s.End)
	return e.b
}

func decodeSegment(key, v []byte) (Segment, error) {
	d := decoder{b: v}
	d.start()
	s := Segment{Hash: d.hash(), End: d.varint()}
	return s, d.finish("segment", key)
}

// inodeKey is the key of the inodes index: device and inode, big-endian.
func inodeKey(dev, ino uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), dev), ino)
}
