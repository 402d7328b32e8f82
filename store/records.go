package store

// records.go owns the encoding of path and content records (schema 5).
// A path record's key is its path key (pathkey.go); its root is a folder
// id the caller resolves. Fields that are usually zero cost a flag bit,
// not a byte, and times are deltas from one another where that is shorter.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// pathFormat is the first byte of a path record since schema 5.
const pathFormat byte = 4

// The flags byte after pathFormat: what an uploaded record has.
const (
	pfState    = 0x07 // 0: the state as a string follows; i: States[i-1]
	pfRootDir  = 0x08 // the root is a folder id
	pfHash     = 0x10 // the hash follows (else it is zero)
	pfAttempts = 0x20 // the attempts follow (else 0)
	pfChain    = 0x40 // the chain fields follow
	pfExtended = 0x80 // a second flags byte follows
)

// The second flags byte: which rarer fields follow.
const (
	pxRootStr = 1 << iota // the root is a string (one rootFolder cannot hold)
	pxNextAttempt
	pxLastError
	pxRemovedAt
	pxMore
	pxPrint
	pxAll = 1<<iota - 1
)

// stateCode is s's code in pfState, 0 for a state not in States.
func stateCode(s State) byte {
	for i, v := range States {
		if s == v {
			return byte(i + 1)
		}
	}
	return 0
}

// encodePath encodes r but its Path, which is the key; rootID is the
// folder id of r.Root, or 0 when rootFolder cannot hold it.
func encodePath(r *PathRecord, rootID uint64) []byte {
	e := encoder{b: make([]byte, 0, 72+len(r.LastError))}
	chained := r.chained()
	var flags, ext byte
	setIf := func(b *byte, bit byte, set bool) {
		if set {
			*b |= bit
		}
	}
	flags = stateCode(r.State)
	setIf(&flags, pfRootDir, rootID != 0)
	setIf(&flags, pfHash, !r.Hash.IsZero())
	setIf(&flags, pfAttempts, r.Attempts != 0)
	setIf(&flags, pfChain, chained)
	setIf(&ext, pxRootStr, rootID == 0 && r.Root != "")
	setIf(&ext, pxNextAttempt, !r.NextAttempt.IsZero())
	setIf(&ext, pxLastError, r.LastError != "")
	setIf(&ext, pxRemovedAt, !r.RemovedAt.IsZero())
	setIf(&ext, pxMore, r.More && chained)
	setIf(&ext, pxPrint, !r.Print.IsZero() && chained)
	setIf(&flags, pfExtended, ext != 0)
	e.byte1(pathFormat)
	e.byte1(flags)
	if ext != 0 {
		e.byte1(ext)
	}
	switch {
	case flags&pfRootDir != 0:
		e.b = appendDirID(e.b, rootID)
	case ext&pxRootStr != 0:
		e.str(r.Root)
	}
	if flags&pfHash != 0 {
		e.hash(r.Hash)
	}
	e.varint(r.Size)
	e.timeAt(r.ModTime, time.Time{})
	e.uvarint(r.Dev)
	e.uvarint(r.Ino)
	if flags&pfState == 0 {
		e.str(string(r.State))
	}
	e.timeAt(r.FirstSeen, r.ModTime)
	e.timeAt(r.UpdatedAt, r.FirstSeen)
	if flags&pfAttempts != 0 {
		e.varint(int64(r.Attempts))
	}
	if ext&pxNextAttempt != 0 {
		e.timeAt(r.NextAttempt, r.UpdatedAt)
	}
	if ext&pxLastError != 0 {
		e.str(r.LastError)
	}
	if ext&pxRemovedAt != 0 {
		e.timeAt(r.RemovedAt, r.UpdatedAt)
	}
	if chained {
		e.varint(r.Start)
		e.varint(r.End)
		e.uvarint(uint64(r.Prior))
		if ext&pxPrint != 0 {
			e.print(r.Print)
		}
	}
	return e.b
}

// decodePath decodes a path record's value into a record with Path set to
// path; its root folder id comes back for the caller to resolve (0 when
// the root was stored as a string, and is set).
func decodePath(path string, v []byte) (PathRecord, uint64, error) {
	r := PathRecord{Path: path}
	d := decoder{b: v}
	if d.byte1() != pathFormat {
		d.fail()
	}
	flags := d.byte1()
	var ext byte
	if flags&pfExtended != 0 {
		if ext = d.byte1(); ext == 0 || ext&^pxAll != 0 {
			d.fail()
		}
	}
	var rootID uint64
	switch {
	case flags&pfRootDir != 0 && ext&pxRootStr != 0:
		d.fail()
	case flags&pfRootDir != 0:
		var n int
		if rootID, n = readDirID(d.b); n == 0 || rootID == 0 {
			d.fail()
		} else {
			d.b = d.b[n:]
		}
	case ext&pxRootStr != 0:
		r.Root = d.str()
	}
	if flags&pfHash != 0 {
		r.Hash = d.hash()
	}
	r.Size = d.varint()
	r.ModTime = d.timeAt(time.Time{})
	r.Dev = d.uvarint()
	r.Ino = d.uvarint()
	if code := flags & pfState; code == 0 {
		r.State = State(d.str())
	} else {
		r.State = States[code-1]
	}
	r.FirstSeen = d.timeAt(r.ModTime)
	r.UpdatedAt = d.timeAt(r.FirstSeen)
	if flags&pfAttempts != 0 {
		r.Attempts = int(d.varint())
	}
	if ext&pxNextAttempt != 0 {
		r.NextAttempt = d.timeAt(r.UpdatedAt)
	}
	if ext&pxLastError != 0 {
		r.LastError = d.str()
	}
	if ext&pxRemovedAt != 0 {
		r.RemovedAt = d.timeAt(r.UpdatedAt)
	}
	if flags&pfChain != 0 {
		r.Start = d.varint()
		r.End = d.varint()
		r.Prior = int(d.uvarint())
		r.More = ext&pxMore != 0
		if ext&pxPrint != 0 {
			r.Print = d.print()
		}
	} else if ext&(pxMore|pxPrint) != 0 {
		d.fail()
	}
	return r, rootID, d.finish("path", []byte(path))
}

// The first byte of a value in the contents bucket under a hash. Both name
// the content's holder: the key of the first live path that holds it (as
// its bytes or as an earlier segment), whose ref is not written as a key
// of its own; most contents have one path.
const (
	// contentFormat: the holder's key (length-prefixed; empty when no live
	// path holds the content), how the upload name is stored and the
	// name, the size, the front-coded trace ids, the upload time.
	contentFormat byte = 5
	// stubFormat (schema 5 only; migrate5to6 moves them to the holders
	// bucket): no content is recorded under the hash yet (its upload is
	// pending): the rest of the value is the holder's key.
	stubFormat byte = 6
)

// How a content's upload name is stored.
const (
	nameLiteral    byte = iota // as it is
	nameTagged                 // stem and extension of stem.<hashTag>.ext (design.md rule 8)
	nameHolder                 // the holder's base name with .<hashTag> inserted at an offset
	nameHolderBase             // the holder's base name
)

// hashTag is the part of the hash a unique upload name carries: its first
// 16 hex digits.
func hashTag(h Hash) string { return hex.EncodeToString(h[:8]) }

// baseOf is the base name in a path key.
func baseOf(pathKey []byte) string {
	_, n := readDirID(pathKey)
	return string(pathKey[n:])
}

// encodeContent encodes a Content held by the path with key holder (nil:
// none); the hash is the key.
func encodeContent(c *Content, holder []byte) []byte {
	// Room for the ids at worst: each a shared-prefix varint, a length
	// varint (at most 2 bytes each for ids under 16 KiB; append grows the
	// buffer for longer ones) and all its bytes.
	n := 40 + len(holder) + len(c.Filename)
	for _, id := range c.TraceIDs {
		n += 4 + len(id)
	}
	e := encoder{b: make([]byte, 0, n)}
	e.byte1(contentFormat)
	e.uvarint(uint64(len(holder)))
	e.b = append(e.b, holder...)
	tag := "." + hashTag(c.Hash)
	i := strings.LastIndex(c.Filename, tag)
	switch base := baseOf(holder); {
	case holder != nil && c.Filename == base:
		e.byte1(nameHolderBase)
	case holder != nil && i >= 0 && c.Filename[:i]+c.Filename[i+len(tag):] == base:
		e.byte1(nameHolder)
		e.uvarint(uint64(i))
	case i >= 0:
		e.byte1(nameTagged)
		e.str(c.Filename[:i])
		e.str(c.Filename[i+len(tag):])
	default:
		e.byte1(nameLiteral)
		e.str(c.Filename)
	}
	e.varint(c.Size)
	e.frontCoded(c.TraceIDs)
	e.timeAt(c.UploadedAt, time.Time{})
	if len(e.b) < cap(e.b)/2 {
		// Shared prefixes saved most of the room: keep only what is used.
		e.b = append([]byte(nil), e.b...)
	}
	return e.b
}

// contentHolder reads the holder's key of a value under a hash, without
// copying it (nil when none), and whether the value is a content record
// (else a stub).
func contentHolder(key, v []byte) (holder []byte, record bool, err error) {
	if len(key) != len(Hash{}) || len(v) == 0 {
		return nil, false, fmt.Errorf("decode content %x: %w", key, ErrCorrupt)
	}
	switch v[0] {
	case stubFormat:
		if len(v) == 1 {
			return nil, false, fmt.Errorf("decode content %x: a stub without a holder: %w", key, ErrCorrupt)
		}
		return v[1:], false, nil
	case contentFormat:
		d := decoder{b: v[1:]}
		if n := d.uvarint(); d.err == nil && n <= uint64(len(d.b)) {
			if n == 0 {
				return nil, true, nil
			}
			return d.b[:n], true, nil
		}
	}
	return nil, false, fmt.Errorf("decode content %x: %w", key, ErrCorrupt)
}

// decodeContent decodes a content record and returns its holder's key too
// (a copy; nil when none). A stub is refused: it records no content.
func decodeContent(key, v []byte) (Content, []byte, error) {
	var c Content
	if len(key) != len(c.Hash) {
		return c, nil, fmt.Errorf("decode content key %x: %w", key, ErrCorrupt)
	}
	copy(c.Hash[:], key)
	d := decoder{b: v}
	if d.byte1() != contentFormat {
		d.fail()
	}
	holder := d.holder()
	c.Filename = d.name(c.Hash, holder)
	c.Size = d.varint()
	c.TraceIDs = d.frontCoded()
	c.UploadedAt = d.timeAt(time.Time{})
	return c, holder, d.finish("content", key)
}

// holder decodes the length-prefixed holder's key, as a copy.
func (d *decoder) holder() []byte { return bytes.Clone(d.holderRef()) }

// holderRef is holder without the copy: valid while the value is.
func (d *decoder) holderRef() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	if _, m := readDirID(d.b[:n]); m == 0 {
		d.fail()
		return nil
	}
	h := d.b[:n]
	d.b = d.b[n:]
	return h
}

// name decodes an upload name stored as encodeContent stores it.
func (d *decoder) name(h Hash, holder []byte) string {
	kind, stem, i := d.nameParts(holder)
	tag := "." + hashTag(h)
	switch kind {
	case nameLiteral:
		return stem
	case nameTagged:
		return stem + tag + d.str()
	case nameHolder:
		base := baseOf(holder)
		return base[:i] + tag + base[i:]
	case nameHolderBase:
		return baseOf(holder)
	}
	return ""
}

// nameParts reads how the name is stored, up to the extension of a tagged
// name: the kind, the literal name or the stem, the holder's offset.
func (d *decoder) nameParts(holder []byte) (kind byte, s string, i uint64) {
	switch kind = d.byte1(); kind {
	case nameLiteral, nameTagged:
		return kind, d.str(), 0
	case nameHolder:
		if i = d.uvarint(); holder != nil && i <= uint64(len(baseOf(holder))) {
			return kind, "", i
		}
	case nameHolderBase:
		if holder != nil {
			return kind, "", 0
		}
	}
	d.fail()
	return 0xff, "", 0
}

// contentTraceCount is len(decodeContent(key, v).TraceIDs), with the same
// checks, without copying the ids out: status and every metrics scrape
// count the traces of all contents.
func contentTraceCount(key, v []byte) (int, error) {
	if len(key) != len(Hash{}) {
		return 0, fmt.Errorf("decode content key %x: %w", key, ErrCorrupt)
	}
	d := decoder{b: v}
	if d.byte1() != contentFormat {
		d.fail()
	}
	if kind, _, _ := d.nameParts(d.holderRef()); kind == nameTagged {
		d.skipStr() // the extension
	}
	d.varint() // size
	n := d.uvarint()
	d.skipFrontCoded(n)
	d.timeAt(time.Time{})
	return int(n), d.finish("content", key)
}

// frontCoded encodes trace ids front-coded: each as the length of the
// prefix it shares with the previous id, and the rest. Ids of one create
// share most of their bytes wherever the server numbers them in order;
// random ids (UUIDv4) cost one byte more each.
func (e *encoder) frontCoded(ids []string) {
	e.uvarint(uint64(len(ids)))
	prev := ""
	for _, id := range ids {
		k := sharedPrefix(prev, id)
		e.uvarint(uint64(k))
		e.str(id[k:])
		prev = id
	}
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

// frontCoded decodes encoder.frontCoded's list. All ids share one string,
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
