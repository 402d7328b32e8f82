package store

import (
	"encoding/binary"
	"fmt"
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
func (e *encoder) print(p Print)    { e.b = append(append(e.b, p.Head[:]...), p.Tail[:]...) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte1(0)
		return
	}
	e.byte1(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// timeEpoch (2000-01-01 UTC) is where timeAt's absolute times count from.
const timeEpoch = 946684800

// timeAt encodes t as one uvarint x, or as a delta from base when base is
// set and near enough, at full nanosecond precision:
//
//	x = 0            the zero time
//	x&3 = 0          whole seconds since timeEpoch, plus one, in x>>2
//	x&3 = 1          t - base in nanoseconds, zigzag, in x>>2
//	x&3 = 2          nanoseconds since timeEpoch in x>>2 (2000 to 2146)
//	x = 3            the seconds (varint) and nanoseconds (uvarint) follow
//
// A time of today takes 9 bytes (5 on a whole second), a time seconds
// after its base 5 or 6.
func (e *encoder) timeAt(t, base time.Time) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	if !base.IsZero() {
		bsec := base.Unix()
		if d := sec - bsec; inRange(sec) && inRange(bsec) && d > -1<<30 && d < 1<<30 {
			ns := d*1e9 + nsec - int64(base.Nanosecond())
			e.uvarint(uint64(ns<<1^ns>>63)<<2 | 1)
			return
		}
	}
	if s := sec - timeEpoch; sec >= timeEpoch && s < (1<<62)/1_000_000_000-1 {
		if nsec == 0 {
			e.uvarint(uint64(s+1) << 2)
		} else {
			e.uvarint((uint64(s)*1e9+uint64(nsec))<<2 | 2)
		}
		return
	}
	e.uvarint(3)
	e.varint(sec)
	e.uvarint(uint64(nsec))
}

// inRange bounds the seconds a delta is taken between, so it cannot overflow.
func inRange(sec int64) bool { return sec > -1<<40 && sec < 1<<40 }

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
		return d.unixTime()
	default:
		d.fail()
		return time.Time{}
	}
}

// unixTime decodes seconds (varint) and nanoseconds (uvarint) since 1970.
func (d *decoder) unixTime() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// print decodes a Print: its head and tail, 16 bytes each.
func (d *decoder) print() (p Print) {
	if len(d.b) < 32 {
		d.fail()
		return p
	}
	copy(p.Head[:], d.b[:16])
	copy(p.Tail[:], d.b[16:32])
	d.b = d.b[32:]
	return p
}

// timeAt decodes encoder.timeAt's encoding; base is the same as encoding's.
func (d *decoder) timeAt(base time.Time) time.Time {
	x := d.uvarint()
	switch {
	case d.err != nil || x == 0:
		return time.Time{}
	case x&3 == 0:
		return time.Unix(timeEpoch+int64(x>>2)-1, 0).UTC()
	case x&3 == 1:
		if base.IsZero() || !inRange(base.Unix()) {
			d.fail()
			return time.Time{}
		}
		z := x >> 2
		ns := int64(z>>1) ^ -int64(z&1)
		if ns > 1<<60 || ns < -1<<60 {
			d.fail()
			return time.Time{}
		}
		return base.Add(time.Duration(ns)).UTC()
	case x&3 == 2:
		v := x >> 2
		return time.Unix(timeEpoch+int64(v/1e9), int64(v%1e9)).UTC()
	case x == 3:
		return d.unixTime()
	}
	d.fail()
	return time.Time{}
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

// segKey is the key of a path's n-th earlier segment: the path's key, a
// NUL (never in a base name) and n, big-endian, so a path's segments sort
// in order and no other path's key starts with the same bytes.
func segKey(pathKey []byte, n int) []byte {
	k := make([]byte, 0, len(pathKey)+5)
	k = append(k, pathKey...)
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
