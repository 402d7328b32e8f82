package uploader

// segment.go owns reading a .jsonl file as a chain of segments: checking
// that a grown file still starts with what was sent without reading it
// again, and cutting the next segment at a line boundary.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// readSource hashes and validates path for decide: a .jsonl as its next
// segment (lookup finds the record it continues), any other file whole, a
// compressed one through its decompressed stream (at most maxInflate
// bytes).
func readSource(path string, maxSize, maxInflate int64, lookup baseLookup, growing bool) hashResult {
	if isCompressed(path) {
		return hashCompressed(path, maxSize, maxInflate, lookup)
	}
	if isJSONL(path) {
		return hashSegment(path, maxSize, lookup, growing)
	}
	res := hashFile(path, maxSize)
	if res.Outcome == hashTooLarge && isWholeJSON(path) {
		// Refused unread for its size: an array goes up in parts.
		return hashArrayPart(path, maxSize, lookup)
	}
	return res
}

// baseLookup finds the record the next segment of the .jsonl at path
// (identity id) continues, or nil: a new content from byte 0.
type baseLookup func(path string, id fileID) *segBase

// recordLookup is the baseLookup of a store: the path's own record when it
// has segments to continue, else, through byInode (nil: none), the record
// of the name the same file had before a rename.
func recordLookup(getPath func(string) (store.PathRecord, error), getContent func(store.Hash) (store.Content, error), byInode func(dev, ino uint64) (string, bool)) baseLookup {
	uploaded := func(h store.Hash) bool { _, err := getContent(h); return err == nil }
	return func(path string, id fileID) *segBase {
		if rec, err := getPath(path); err == nil && rec.State != store.StateRemoved && !rec.Hash.IsZero() {
			return &segBase{rec: rec, uploaded: uploaded(rec.Hash)}
		}
		if byInode == nil {
			return nil
		}
		from, ok := byInode(id.Dev, id.Ino)
		if !ok || from == path {
			return nil
		}
		rec, err := getPath(from)
		if err != nil || rec.State == store.StateRemoved || rec.Dev != id.Dev || rec.Ino != id.Ino {
			return nil
		}
		return &segBase{rec: rec, from: from, uploaded: uploaded(rec.Hash)}
	}
}

// segBase is the record a .jsonl's next segment continues: the path's own,
// or that of the name it had before a rename (from).
type segBase struct {
	rec      store.PathRecord
	from     string
	uploaded bool // rec's last segment has traces recorded
}

// hashSegment reads the next segment of the .jsonl at path. With a base
// whose print still matches the file, it continues the chain: after the
// base's last segment when that is uploaded, or the same segment again
// when it is not (a pending segment is never cut anew: its create may have
// run). Otherwise the file is a new content from byte 0. A segment ends
// after the last complete line within maxSize; when growing is false (the
// file is quiet) a last line without a newline is taken too if it is a
// whole JSON value.
func hashSegment(path string, maxSize int64, lookup baseLookup, growing bool) hashResult {
	f, id, failed := openToHash(path)
	if f == nil {
		return failed
	}
	defer f.Close()
	res := hashResult{ID: id}
	var start int64
	var read int64
	var base *segBase
	if lookup != nil {
		base = lookup(path, id)
	}
	if base != nil {
		b := &base.rec
		end := b.SegEnd()
		ok, n, err := continues(f, b, id)
		read += n
		if err != nil {
			return hashResult{Outcome: hashUnreadable, ID: id, Read: read, Err: fmt.Errorf("read %s: %w (check the disk and the file's permissions)", path, err)}
		}
		if ok {
			res.From, res.BaseHash, res.BaseEnd, res.Based = base.from, b.Hash, end, true
			switch {
			case base.uploaded:
				start, res.Extends = end, true
			case b.State == store.StateQuarantined:
				start = b.Start // cut again: more lines may have come
			default:
				return sameSegment(f, path, id, b, res, read)
			}
		}
	}
	seg, err := cutSegment(f, start, id.Size, maxSize, !growing)
	read += seg.read
	res.Read = read
	res.Start, res.End = start, seg.end
	switch {
	case err != nil:
		res.Outcome, res.Err = hashUnreadable, fmt.Errorf("read %s: %w (check the disk and the file's permissions)", path, err)
		return res
	case seg.tooLarge:
		res.Outcome = hashTooLarge
		res.Err = fmt.Errorf("%s: a line at byte %d is longer than the limit of %d bytes (the API accepts at most 50 MiB per upload): split it", path, start, maxSize)
		return res
	case seg.end == start || seg.values == 0 && seg.syntax == nil:
		if res.Extends {
			// Nothing new but whitespace or an unfinished line: the chain
			// stands as it is.
			res.Outcome, res.Hash, res.Start, res.End = hashOK, base.rec.Hash, base.rec.Start, base.rec.SegEnd()
			res.Print, res.Extends = base.rec.Print, false
			if seg.partial && !growing {
				res.Outcome, res.Err = hashIncomplete, fmt.Errorf("%s: the last line is not complete yet", path)
			}
			return res
		}
		if seg.partial {
			res.Outcome, res.Err = hashIncomplete, fmt.Errorf("%s: the file ends in the middle of a line", path)
			return res
		}
		res.Outcome = hashEmpty
		return res
	}
	if err := stillThere(f, id, seg.end); err != nil {
		res.Outcome, res.Err = hashChanged, fmt.Errorf("%s %w", path, err)
		return res
	}
	res.Hash, res.Values = seg.sum, seg.values
	if seg.syntax != nil {
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w", path, seg.syntax)
		return res
	}
	res = withPrint(f, path, res)
	if res.Outcome != hashOK {
		return res
	}
	res.More = seg.limited
	res.Partial = seg.partial && !growing
	return res
}

// sameSegment hashes a chain's pending segment again, as it was cut.
func sameSegment(f *os.File, path string, id fileID, b *store.PathRecord, res hashResult, read int64) hashResult {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, b.Start, b.SegEnd()-b.Start))
	res.Read = read + n
	if err != nil {
		res.Outcome, res.Err = hashUnreadable, fmt.Errorf("read %s: %w", path, err)
		return res
	}
	if n != b.SegEnd()-b.Start {
		res.Outcome, res.Err = hashChanged, fmt.Errorf("%s shrank while it was read", path)
		return res
	}
	h.Sum(res.Hash[:0])
	res.Outcome, res.Start, res.End, res.Print = hashOK, b.Start, b.SegEnd(), b.Print
	return res
}

// continues reports whether the file f (identity id) still starts with the
// bytes its record b has sent or cut: same device and inode, not shorter,
// and the same print at the record's end. A record without a print (a
// whole file recorded by an older version) is checked by hashing its bytes
// once. n is the bytes read.
func continues(f *os.File, b *store.PathRecord, id fileID) (ok bool, n int64, err error) {
	end := b.SegEnd()
	if b.Hash.IsZero() || b.Dev != id.Dev || b.Ino != id.Ino || id.Size < end || end == 0 {
		return false, 0, nil
	}
	if b.Print.IsZero() {
		if b.Start != 0 || b.Prior != 0 {
			return false, 0, nil
		}
		h := sha256.New()
		n, err := io.Copy(h, io.NewSectionReader(f, 0, end))
		if err != nil {
			return false, n, err
		}
		var sum store.Hash
		h.Sum(sum[:0])
		return n == end && sum == b.Hash, n, nil
	}
	p, n, err := printAt(f, end)
	return err == nil && p == b.Print, n, err
}

// withPrint ends a hash result whose segment was read whole: it takes the
// print of the file up to res.End, and the outcome is OK.
func withPrint(f *os.File, path string, res hashResult) hashResult {
	p, n, err := printAt(f, res.End)
	res.Read += n
	if err != nil {
		res.Outcome, res.Err = hashUnreadable, fmt.Errorf("read %s: %w", path, err)
		return res
	}
	res.Print, res.Outcome = p, hashOK
	return res
}

// printAt fingerprints f's bytes up to end (see store.Print).
func printAt(f *os.File, end int64) (store.Print, int64, error) {
	var p store.Print
	span := min(end, store.PrintSpan)
	buf := make([]byte, span)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return p, 0, err
	}
	head := sha256.Sum256(buf)
	if _, err := f.ReadAt(buf, end-span); err != nil {
		return p, span, err
	}
	tail := sha256.Sum256(buf)
	copy(p.Head[:], head[:16])
	copy(p.Tail[:], tail[:16])
	return p, 2 * span, nil
}

// stillThere checks, after a segment was read, that the file was not cut
// short or replaced meanwhile (growing is fine: the segment is a prefix).
func stillThere(f *os.File, id fileID, end int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("could not be checked after it was read: %w", err)
	}
	if a := identity(fi); a.Dev != id.Dev || a.Ino != id.Ino || a.Size < end {
		return errors.New("was truncated or replaced while it was read")
	}
	return nil
}

// cut is one segment read from a .jsonl file.
type cut struct {
	end      int64 // where the segment ends (after its last line)
	sum      store.Hash
	values   int64
	syntax   error // a line is not JSON (the hash is still of the whole segment)
	partial  bool  // bytes after end: a line not finished yet
	tooLarge bool  // no line ends within maxSize bytes of start
	limited  bool  // the file goes on past maxSize bytes from start
	read     int64
}

// cutSegment reads f from start to size and cuts the segment: up to the
// end of its last complete line, at most maxSize bytes; with quiet, a last
// line without a newline is included when it is a whole JSON value. It
// hashes and validates the segment in the same pass.
func cutSegment(f *os.File, start, size, maxSize int64, quiet bool) (cut, error) {
	var c cut
	limit := min(size, start+maxSize)
	c.limited = limit < size
	h := sha256.New()
	v := tracefile.NewValidator(tracefile.FormatJSONL)
	bufp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bufp)
	buf := *bufp
	pos := start
	c.end = start
	// The bytes after the last newline seen (a line not ended yet) are
	// hashed once their newline comes: kept in memory while short, read
	// again from the file when a line is longer than that.
	const keepPending = 1 << 20
	var pending []byte
	pendStart, pendLen := start, int64(0)
	flush := func() error {
		if pendLen == 0 {
			return nil
		}
		if int64(len(pending)) == pendLen {
			feed(h, v, &c.syntax, pending)
		} else {
			r := io.NewSectionReader(f, pendStart, pendLen)
			for {
				k, err := r.Read(buf)
				c.read += int64(k)
				feed(h, v, &c.syntax, buf[:k])
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
			}
		}
		pending, pendLen = pending[:0], 0
		return nil
	}
	for pos < limit {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), limit-pos)], pos)
		if k > 0 {
			c.read += int64(k)
			chunk := buf[:k]
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				if err := flush(); err != nil {
					return c, err
				}
				feed(h, v, &c.syntax, chunk[:i+1])
				c.end = pos + int64(i) + 1
				chunk = chunk[i+1:]
				pendStart = c.end
			}
			if pendLen+int64(len(chunk)) <= keepPending && int64(len(pending)) == pendLen {
				pending = append(pending, chunk...)
			}
			pendLen += int64(len(chunk))
			pos += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, err
		}
		if k == 0 {
			break
		}
	}
	if pendLen > 0 && (int64(len(pending)) != pendLen || len(bytes.TrimSpace(pending)) > 0) {
		c.partial = true
		// A last line without a newline is whole when the file is quiet,
		// ends there, fits the limit and is one JSON value.
		if quiet && pos == size && size-start <= maxSize && int64(len(pending)) == pendLen && wholeLine(pending) {
			feed(h, v, &c.syntax, pending)
			c.end, c.partial = pos, false
		} else if c.end == start && size-start > maxSize {
			c.tooLarge = true
		}
	}
	h.Sum(c.sum[:0])
	c.values = v.Values()
	if c.syntax == nil && c.end > start {
		if err := v.Close(); err != nil && !errors.Is(err, tracefile.ErrNoValues) && !errors.Is(err, tracefile.ErrIncomplete) {
			c.syntax = err
		}
		c.values = v.Values()
	}
	return c, nil
}

// wholeLine reports whether p, a last line without its newline, is one
// whole JSON value.
func wholeLine(p []byte) bool {
	v := tracefile.NewValidator(tracefile.FormatJSONL)
	if _, err := v.Write(p); err != nil {
		return false
	}
	if _, err := v.Write([]byte{'\n'}); err != nil {
		return false
	}
	return v.Close() == nil
}

// isJSONL reports whether path is read as a chain of segments.
func isJSONL(path string) bool {
	f, ok := tracefile.FormatOf(path)
	return ok && f == tracefile.FormatJSONL
}

// isWholeJSON reports whether path is a .json, which may go up in parts
// when it is an array over the size limit.
func isWholeJSON(path string) bool {
	f, ok := tracefile.FormatOf(path)
	return ok && f == tracefile.FormatJSON
}

// isPart reports whether a record of path holds one part of a .json array.
func isPart(path string, start, end int64) bool {
	return isWholeJSON(path) && (start != 0 || end != 0)
}
