package uploader

// compressed.go owns reading a compressed trace file (x.jsonl.gz,
// x.json.zst) through its decompressed stream: hashing and validating it
// (a .jsonl's as a chain of segments, like segment.go does for a plain
// file), the quarantine reasons of a bad archive, and the PUT body of a
// segment. Its content is the decompressed bytes, so the same traces
// compressed or not are one content.

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// DefaultMaxInflate is the most bytes a compressed file may decompress to
// when Config.MaxInflate is 0: past it the file is quarantined as a
// probable decompression bomb.
const DefaultMaxInflate int64 = 1 << 30

// isCompressed reports whether path is read through its decompressed
// stream.
func isCompressed(path string) bool {
	c, _ := tracefile.CompressionOf(path)
	return c != tracefile.Uncompressed
}

// archive is one open compressed file, whose decompressed stream can be
// read from its start as many times as needed.
type archive struct {
	f          *os.File
	path       string
	c          tracefile.Compression
	size       int64 // the compressed size, as stat'd before reading
	maxInflate int64
	read       int64 // compressed bytes read, every pass included
}

// open starts a pass over the decompressed stream. Close the result.
func (a *archive) open() (io.ReadCloser, error) {
	src := &countingReader{r: io.NewSectionReader(a.f, 0, a.size), n: &a.read}
	return tracefile.NewReader(src, a.c, a.maxInflate)
}

// countingReader adds what it reads to *n.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	*c.n += int64(k)
	return k, err
}

// hashCompressed is readSource for a compressed file: a .json.gz whole, a
// .jsonl.gz as its next segment (lookup finds the record it continues).
// An archive never grows: it is read whole, the last line included when
// it is a whole JSON value, and JSON or a line cut at its end is invalid,
// not incomplete (nothing will finish it).
func hashCompressed(path string, maxSize, maxInflate int64, lookup baseLookup) hashResult {
	c, inner := tracefile.CompressionOf(path)
	f, id, failed := openToHash(path)
	if f == nil {
		return failed
	}
	defer f.Close()
	if id.Size == 0 {
		return hashResult{Outcome: hashEmpty, ID: id} // not an archive yet: nothing to upload
	}
	if maxInflate <= 0 {
		maxInflate = DefaultMaxInflate
	}
	a := &archive{f: f, path: path, c: c, size: id.Size, maxInflate: maxInflate}
	var res hashResult
	if format, _ := tracefile.FormatOf(inner); format == tracefile.FormatJSONL {
		res = a.segment(id, maxSize, lookup)
	} else {
		res = a.whole(id, maxSize)
	}
	res.ID = id
	if res.Outcome == hashUnreadable {
		return res
	}
	if after, err := f.Stat(); err != nil || !identity(after).same(id) {
		return hashResult{Outcome: hashChanged, ID: id, Read: a.read, Err: fmt.Errorf("%s changed while it was read", path)}
	}
	return res
}

// failed turns an error met reading the archive into its verdict.
func (a *archive) failed(res hashResult, err error) hashResult {
	res.Hash, res.Read = store.Hash{}, a.read
	switch {
	case errors.Is(err, tracefile.ErrInflateLimit):
		res.Outcome = hashTooLarge
		res.Err = fmt.Errorf("%s decompresses to more than %d bytes (--max-inflate), so it is taken for a decompression bomb: check it, and if it is sound raise --max-inflate (TRACESYNC_MAX_INFLATE) and `tracesync retry` it", a.path, a.maxInflate)
	case errors.Is(err, tracefile.ErrTruncated):
		res.Outcome = hashInvalid
		res.Err = fmt.Errorf("%s: %w: it was cut short (an interrupted copy or a writer that died); copy it again whole (writers should write a temporary name and rename it into place)", a.path, err)
	case errors.Is(err, tracefile.ErrArchive):
		res.Outcome = hashInvalid
		res.Err = fmt.Errorf("%s: %w: it cannot be decompressed; replace it with a sound copy (check it with gzip -t or zstd -t)", a.path, err)
	default:
		res.Outcome = hashUnreadable
		res.Err = fmt.Errorf("read %s: %w (check the disk and the file's permissions)", a.path, err)
	}
	return res
}

// whole hashes and validates a compressed .json: one value, at most
// maxSize bytes decompressed.
func (a *archive) whole(id fileID, maxSize int64) hashResult {
	var res hashResult
	r, err := a.open()
	if err != nil {
		return a.failed(res, err)
	}
	defer r.Close()
	c, over, err := readChecked(r, tracefile.FormatJSON, maxSize)
	if over {
		res.Outcome = hashTooLarge
		res.Err = fmt.Errorf("%s decompresses to more than the limit of %d bytes (the API accepts at most 50 MiB per upload): split it into smaller files", a.path, maxSize)
		return res
	}
	if err != nil {
		return a.failed(res, err)
	}
	n, syntaxErr := c.n, c.syntax
	res.Hash, res.End, res.Read, res.Values = c.sum, n, a.read, c.values
	switch {
	case n == 0 || errors.Is(syntaxErr, tracefile.ErrNoValues):
		res.Outcome, res.End = hashEmpty, 0
	case errors.Is(syntaxErr, tracefile.ErrIncomplete):
		// An archive never grows: its JSON will not be finished.
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w (it was compressed while still being written): compress the finished file again", a.path, syntaxErr)
	case syntaxErr != nil:
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w", a.path, syntaxErr)
	default:
		res.Outcome = hashOK
	}
	return res
}

// segment reads the next segment of a compressed .jsonl, as hashSegment
// does for a plain one: with a base (the path's record, or its old name's)
// whose last segment the stream still holds, after that segment when it
// is uploaded, the same segment again when it is pending, cut again when
// it was quarantined; else from byte 0. The stream holds the base's
// segment when its bytes hash to the recorded hash (an archive has no
// print: it is decompressed from its start anyway).
func (a *archive) segment(id fileID, maxSize int64, lookup baseLookup) hashResult {
	var res hashResult
	var base *segBase
	if lookup != nil {
		base = lookup(a.path, id)
	}
	r, err := a.open()
	if err != nil {
		return a.failed(res, err)
	}
	defer func() {
		if r != nil {
			r.Close() // the last pass opened
		}
	}()
	var start int64
	if base != nil && base.rec.Dev == id.Dev && base.rec.Ino == id.Ino && base.rec.SegEnd() > base.rec.Start {
		b := &base.rec
		end := b.SegEnd()
		ok, err := holds(r, b.Start, end, b.Hash)
		if err != nil {
			return a.failed(res, err)
		}
		if ok {
			res.From, res.BaseHash, res.BaseEnd, res.Based = base.from, b.Hash, end, true
			switch {
			case base.uploaded:
				start, res.Extends = end, true
			case b.State == store.StateQuarantined:
				start = b.Start
				r.Close()
				if r, err = a.open(); err != nil {
					return a.failed(res, err)
				}
				if _, err := io.CopyN(io.Discard, r, start); err != nil {
					return a.failed(res, err)
				}
			default: // pending: its create may have run, so it is never cut anew
				res.Outcome, res.Hash, res.Start, res.End = hashOK, b.Hash, b.Start, end
				return res
			}
		} else {
			r.Close()
			if r, err = a.open(); err != nil {
				return a.failed(res, err)
			}
		}
	}
	before := a.read
	seg, err := cutStream(r, start, maxSize)
	res.Start, res.End, res.Read = start, seg.end, a.read-before
	if err != nil {
		return a.failed(res, err)
	}
	if start == 0 && seg.limited {
		// The first of several segments: the whole archive must decompress
		// (sound, not truncated, within --max-inflate) before any is sent.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return a.failed(res, err)
		}
	}
	switch {
	case seg.tooLarge:
		res.Outcome = hashTooLarge
		res.Err = fmt.Errorf("%s: a line at byte %d of its decompressed data is longer than the limit of %d bytes (the API accepts at most 50 MiB per upload): split it", a.path, start, maxSize)
		return res
	case seg.end == start || seg.values == 0 && seg.syntax == nil:
		if res.Extends {
			// Nothing after the chain but whitespace or an unfinished line.
			res.Outcome, res.Hash, res.Start, res.End, res.Extends = hashOK, base.rec.Hash, base.rec.Start, base.rec.SegEnd(), false
			if seg.partial {
				res.Outcome, res.Err = hashInvalid, a.cutLine()
			}
			return res
		}
		if seg.partial {
			res.Outcome, res.Err = hashInvalid, a.cutLine()
			return res
		}
		res.Outcome = hashEmpty
		return res
	}
	res.Hash, res.Values = seg.sum, seg.values
	switch {
	case seg.syntax != nil:
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w", a.path, seg.syntax)
	case seg.partial:
		// An archive never grows: its cut last line never ends. The
		// segment before it is kept as the quarantined one's bytes.
		res.Outcome, res.Err = hashInvalid, a.cutLine()
	default:
		res.Outcome, res.More = hashOK, seg.limited
	}
	return res
}

// cutLine is the reason an archive whose last line is not whole is
// quarantined: unlike a plain file, it will not be finished.
func (a *archive) cutLine() error {
	return fmt.Errorf("%s: its decompressed data ends in the middle of a line (it was compressed while still being written): compress the finished file again", a.path)
}

// holds reports whether the stream r, read from its start, holds bytes
// [start, end) that hash to want. It reads r up to end.
func holds(r io.Reader, start, end int64, want store.Hash) (bool, error) {
	if _, err := io.CopyN(io.Discard, r, start); err != nil {
		return false, cleanEnd(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, r, end-start); err != nil {
		return false, cleanEnd(err)
	}
	var sum store.Hash
	h.Sum(sum[:0])
	return sum == want, nil
}

// cleanEnd drops io.EOF, a clean end of the stream before the bytes
// wanted: the archive is shorter than the record, so it is a new content.
func cleanEnd(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// cutStream reads the decompressed stream r, positioned at start, and cuts
// the segment as cutSegment does for a file: up to the end of its last
// complete line, at most maxSize bytes, a last line without a newline
// included when the stream ends there and it is a whole JSON value. It
// reads one pass: every byte is hashed and validated as it comes, and the
// hash and value count are kept at the last newline of each read, where
// the segment may end.
func cutStream(r io.Reader, start, maxSize int64) (cut, error) {
	c := cut{end: start}
	h := sha256.New()
	v := tracefile.NewValidator(tracefile.FormatJSONL)
	bufp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bufp)
	buf := *bufp
	var pos int64 // bytes read after start
	var atCut []byte
	var valuesAtCut int64
	tailBlank := true // the bytes after the last newline are whitespace
	eof := false
	for pos < maxSize {
		k, err := r.Read(buf[:min(int64(len(buf)), maxSize-pos)])
		if k > 0 {
			chunk := buf[:k]
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				feed(h, v, &c.syntax, chunk[:i+1])
				c.end, valuesAtCut = start+pos+int64(i)+1, v.Values()
				state, merr := h.(encoding.BinaryMarshaler).MarshalBinary()
				if merr != nil {
					return c, merr
				}
				atCut, tailBlank = state, true
				feed(h, v, &c.syntax, chunk[i+1:])
				tailBlank = len(bytes.TrimSpace(chunk[i+1:])) == 0
			} else {
				feed(h, v, &c.syntax, chunk)
				tailBlank = tailBlank && len(bytes.TrimSpace(chunk)) == 0
			}
			pos += int64(k)
		}
		if err == io.EOF {
			eof = true
			break
		}
		if err != nil {
			return c, err
		}
	}
	if !eof {
		var one [1]byte
		k, err := io.ReadFull(r, one[:])
		switch {
		case k == 1:
			c.limited = true
		case err == io.EOF:
			eof = true
		default:
			return c, err
		}
	}
	whole := false
	if eof && !tailBlank {
		// The stream ends in a line without a newline: whole when it is
		// one JSON value (the newline is the validator's, not hashed).
		_, werr := v.Write([]byte{'\n'})
		whole = werr == nil && v.Close() == nil
	}
	if whole {
		h.Sum(c.sum[:0])
		c.end, c.values = start+pos, v.Values()
		return c, nil
	}
	c.partial = eof && !tailBlank
	c.tooLarge = c.limited && c.end == start
	if c.end > start {
		cs := sha256.New()
		if err := cs.(encoding.BinaryUnmarshaler).UnmarshalBinary(atCut); err != nil {
			return c, err
		}
		cs.Sum(c.sum[:0])
	}
	c.values = valuesAtCut
	var se *tracefile.SyntaxError
	if errors.As(c.syntax, &se) && se.Offset >= c.end-start {
		c.syntax = nil // in the bytes after the segment: the next segment's
	}
	return c, nil
}

// inflatedBody is the PUT body of a compressed file's content: its
// decompressed bytes [offset, offset+size), decompressed from the start.
// Errors of the archive wrap tracefile.ErrArchive; a stream shorter than
// offset+size ends early (client.ErrBodySize). Close may run while
// net/http still reads the body: the mutex guards the decompressor.
type inflatedBody struct {
	mu           sync.Mutex
	a            archive
	offset, size int64
	r            io.ReadCloser // nil until the first Read
	body         io.Reader     // the range, once skipped to
	err          error
	closed       bool
}

// newInflatedBody returns the PUT body of the content at [offset,
// offset+size) of f's decompressed stream (f holds path).
func newInflatedBody(f *os.File, path string, offset, size int64) (*inflatedBody, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	c, _ := tracefile.CompressionOf(path)
	return &inflatedBody{a: archive{f: f, path: path, c: c, size: fi.Size()}, offset: offset, size: size}, nil
}

func (b *inflatedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return 0, fmt.Errorf("%s: %w", b.a.path, os.ErrClosed)
	case b.err != nil:
		return 0, b.err
	case b.body == nil:
		r, err := b.a.open()
		if err != nil {
			b.err = err
			return 0, err
		}
		b.r = r
		if _, err := io.CopyN(io.Discard, r, b.offset); err != nil {
			b.err = err
			return 0, err // io.EOF: shorter than decided, the PUT says so
		}
		b.body = io.LimitReader(r, b.size)
	}
	return b.body.Read(p)
}

// Close releases the decompressor; later reads fail.
func (b *inflatedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.r != nil {
		return b.r.Close()
	}
	return nil
}
