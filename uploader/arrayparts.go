package uploader

// arrayparts.go owns uploading a .json over the size limit whose top level
// is an array: in parts, each a valid array of whole elements, cut from the
// file as it streams by (never the whole file in memory).

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// errNotArray: the file's top level is not an array, so it cannot be cut.
var errNotArray = errors.New("not an array at the top level")

// hashArrayPart reads the next part of the .json array at path, which is
// larger than maxSize: after the record's last part when that is uploaded,
// that same part again when it is not, else the first. A part holds the
// file's bytes [Start, End), whole elements, and is uploaded wrapped in
// brackets.
func hashArrayPart(path string, maxSize int64, lookup baseLookup) hashResult {
	f, id, failed := openToHash(path)
	if f == nil {
		return failed
	}
	defer f.Close()
	res := hashResult{ID: id, Wrap: true}
	first := true
	var from int64
	if lookup != nil {
		if base := lookup(path, id); base != nil && (base.rec.Start != 0 || base.rec.End != 0) {
			b := &base.rec
			ok, n, err := continues(f, b, id)
			res.Read += n
			if err != nil {
				return hashResult{Outcome: hashUnreadable, ID: id, Read: res.Read, Err: fmt.Errorf("read %s: %w", path, err)}
			}
			if ok {
				res.Based, res.BaseHash, res.BaseEnd = true, b.Hash, b.SegEnd()
				if !base.uploaded && b.State != store.StateQuarantined {
					return wrappedAgain(f, path, id, b, res)
				}
				if base.uploaded {
					from, first, res.Extends = b.SegEnd(), false, true
				} else {
					from = b.Start // quarantined: cut it again
				}
			}
		}
	}
	p, err := cutArray(f, from, first, maxSize)
	res.Read += p.read
	switch {
	case errors.Is(err, errNotArray):
		res.Outcome, res.Read = hashTooLarge, 0 // refused: its first byte said so
		res.Err = fmt.Errorf("%s is %d bytes, larger than the limit of %d bytes (the API accepts at most 50 MiB), and not a JSON array that could go up in parts: split it into smaller files", path, id.Size, maxSize)
		return res
	case err != nil:
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w", path, err)
		return res
	case p.tooLarge:
		res.Outcome = hashTooLarge
		res.Err = fmt.Errorf("%s: the array element at byte %d is larger than the limit of %d bytes (the API accepts at most 50 MiB per upload): split it", path, p.start, maxSize)
		return res
	case p.end == p.start:
		if res.Extends {
			// No element after the last part: the file is all sent.
			b := lookup(path, id).rec
			res.Outcome, res.Hash, res.Start, res.End, res.Print, res.Extends = hashOK, b.Hash, b.Start, b.SegEnd(), b.Print, false
			return res
		}
		res.Outcome = hashEmpty
		return res
	}
	res.Start, res.End, res.More = p.start, p.end, p.more
	return finishPart(f, path, id, res)
}

// wrappedAgain hashes a record's pending part again, as it was cut.
func wrappedAgain(f *os.File, path string, id fileID, b *store.PathRecord, res hashResult) hashResult {
	res.Start, res.End = b.Start, b.SegEnd()
	return finishPart(f, path, id, res)
}

// finishPart hashes and validates res's part wrapped in brackets, and
// prints the file up to its end.
func finishPart(f *os.File, path string, id fileID, res hashResult) hashResult {
	h := sha256.New()
	v := tracefile.NewValidator(tracefile.FormatJSON)
	w := io.MultiWriter(h, v)
	n, err := io.Copy(w, wrapped(f, res.Start, res.End))
	res.Read += n
	if err != nil && !errors.As(err, new(*tracefile.SyntaxError)) {
		res.Outcome, res.Err = hashUnreadable, fmt.Errorf("read %s: %w", path, err)
		return res
	}
	h.Sum(res.Hash[:0])
	if err == nil {
		err = v.Close()
	}
	res.Values = v.Values()
	if err != nil {
		res.Outcome, res.Err = hashInvalid, fmt.Errorf("%s: %w", path, err)
		return res
	}
	if err := stillThere(f, id, res.End); err != nil {
		res.Outcome, res.Err = hashChanged, fmt.Errorf("%s %w", path, err)
		return res
	}
	return withPrint(f, path, res)
}

// wrapped is the body of a part: the file's bytes [start, end) in brackets.
func wrapped(f io.ReaderAt, start, end int64) io.Reader {
	return io.MultiReader(bytesReader("["), io.NewSectionReader(f, start, end-start), bytesReader("]"))
}

func bytesReader(s string) io.Reader { return &constReader{s: s} }

// constReader reads a constant string (strings.Reader, without its seeker).
type constReader struct {
	s string
	i int
}

func (r *constReader) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		return 0, io.EOF
	}
	n := copy(p, r.s[r.i:])
	r.i += n
	return n, nil
}

// arrayPart is one part found by cutArray.
type arrayPart struct {
	start, end int64 // the bytes of its elements; start == end: no element left
	more       bool  // elements follow it
	tooLarge   bool  // the element at start alone is over the limit
	read       int64
}

// arrayScanner reads a top-level array byte by byte, following strings and
// nesting only: the part's validation is finishPart's.
type arrayScanner struct {
	r   *bufio.Reader
	pos int64 // the offset of the next byte
}

func (s *arrayScanner) next() (byte, error) {
	c, err := s.r.ReadByte()
	if err == nil {
		s.pos++
	}
	return c, err
}

func (s *arrayScanner) back() {
	_ = s.r.UnreadByte()
	s.pos--
}

func (s *arrayScanner) skipSpace() (byte, error) {
	for {
		c, err := s.next()
		if err != nil {
			return 0, fmt.Errorf("ends before its array does (byte %d)", s.pos)
		}
		if !isJSONSpace(c) {
			return c, nil
		}
	}
}

// skipValue reads past one value whose first byte, c, was just read.
func (s *arrayScanner) skipValue(c byte) error {
	if c != '{' && c != '[' && c != '"' {
		for { // a scalar ends before a delimiter
			c, err := s.next()
			if err != nil {
				return nil
			}
			if c == ',' || c == ']' || c == '}' || isJSONSpace(c) {
				s.back()
				return nil
			}
		}
	}
	depth, inString := 0, false
	for {
		switch {
		case inString:
			switch c {
			case '\\':
				if _, err := s.next(); err != nil {
					return err
				}
			case '"':
				inString = false
				if depth == 0 {
					return nil
				}
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return nil
			}
		}
		var err error
		if c, err = s.next(); err != nil {
			return fmt.Errorf("ends inside an array element (byte %d)", s.pos)
		}
	}
}

// cutArray finds the next part of the top-level array in f: from the
// opening bracket (first) or from the end of the previous part, the
// elements that fit in maxSize with their brackets.
func cutArray(f *os.File, from int64, first bool, maxSize int64) (p arrayPart, err error) {
	s := &arrayScanner{r: bufio.NewReaderSize(io.NewSectionReader(f, from, 1<<62), 64<<10), pos: from}
	defer func() { p.read = s.pos - from }()
	var c byte
	c, err = s.skipSpace()
	if err != nil {
		return p, err
	}
	if first {
		if c != '[' {
			return p, errNotArray
		}
		if c, err = s.skipSpace(); err != nil {
			return p, err
		}
	} else if c == ',' {
		if c, err = s.skipSpace(); err != nil {
			return p, err
		}
	} else if c != ']' {
		return p, fmt.Errorf("invalid character %q after an array element at byte %d", c, s.pos-1)
	}
	if c == ']' {
		p.start, p.end = s.pos, s.pos
		return p, nil
	}
	p.start = s.pos - 1
	p.end = p.start
	for {
		if err := s.skipValue(c); err != nil {
			return p, err
		}
		if s.pos-p.start+2 > maxSize {
			p.tooLarge = p.end == p.start
			p.more = !p.tooLarge
			return p, nil
		}
		p.end = s.pos
		if c, err = s.skipSpace(); err != nil {
			return p, err
		}
		if c == ']' {
			return p, nil
		}
		if c != ',' {
			return p, fmt.Errorf("invalid character %q after an array element at byte %d", c, s.pos-1)
		}
		if c, err = s.skipSpace(); err != nil {
			return p, err
		}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
