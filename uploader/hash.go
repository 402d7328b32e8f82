package uploader

// hash.go owns reading a file once to hash and validate it, and telling
// what it found: valid, empty, incomplete, invalid, too large, unreadable.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// hashBufSize is the read size of one hashing pass; memory per hash worker
// is this buffer plus the validator's nesting stack.
const hashBufSize = 256 << 10

var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// fileID is what the store keeps of a file's identity.
type fileID struct {
	Dev, Ino uint64
	Size     int64
	ModTime  time.Time
}

func (a fileID) same(b fileID) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.ModTime.Equal(b.ModTime)
}

// hashOutcome is the verdict on one file's bytes.
type hashOutcome uint8

const (
	hashOK          hashOutcome = iota + 1 // valid: Hash is the content
	hashEmpty                              // zero bytes, or only whitespace: nothing to upload (skipped)
	hashIncomplete                         // ends in the middle of a value: back to settling
	hashInvalid                            // a real syntax error: quarantine
	hashTooLarge                           // larger than the limit: quarantine (not read)
	hashUnreadable                         // open or read failed (not ENOENT): quarantine
	hashVanished                           // gone before it could be read: nothing to do
	hashChanged                            // the file changed while it was read: back to settling
	hashUnsupported                        // neither .json nor .jsonl: quarantine
)

// hashResult is what hashing one file found.
type hashResult struct {
	Outcome hashOutcome
	Hash    store.Hash
	ID      fileID
	Values  int64
	Read    int64 // bytes read: 0 for a file refused unread (too large, unsupported, unopenable)
	Err     error // the reason, for every outcome but hashOK and hashEmpty

	// A .jsonl is read as a chain of segments (segment.go): Hash is then
	// the bytes [Start, End), and Print fingerprints the file up to End.
	// A whole file has Start 0 and End its size.
	Start, End int64
	Print      store.Print
	// Based: the segment was cut on a record (the path's, or From's: the
	// name the file had before a rename) whose last segment was BaseHash,
	// ending at BaseEnd; decide checks the record still says so. Extends:
	// the segment follows that one (it was uploaded).
	Based    bool
	Extends  bool
	More     bool // the segment was cut at the size limit: more follows at once
	Partial  bool // the file is quiet and ends in a line not finished: back to settling for it
	Wrap     bool // a part of a .json array: uploaded as [Start, End) in brackets
	From     string
	BaseHash store.Hash
	BaseEnd  int64
}

// segSize is how many bytes the hashed content holds.
func (r *hashResult) segSize() int64 {
	if r.End == 0 && r.Start == 0 {
		return r.ID.Size
	}
	if r.Wrap {
		return r.End - r.Start + 2
	}
	return r.End - r.Start
}

func hashFile(path string, maxSize int64) hashResult {
	format, ok := tracefile.FormatOf(path)
	if !ok {
		return hashResult{Outcome: hashUnsupported, Err: fmt.Errorf("%s: only .json and .jsonl files are uploaded", path)}
	}
	f, id, failed := openToHash(path)
	if f == nil {
		return failed
	}
	defer f.Close()
	if id.Size > maxSize {
		return hashResult{Outcome: hashTooLarge, ID: id,
			Err: fmt.Errorf("%s is %d bytes, larger than the limit of %d bytes (the API accepts at most 50 MiB): split it into smaller files", path, id.Size, maxSize)}
	}
	c, over, err := readChecked(f, format, maxSize)
	n := c.n
	if over {
		return hashResult{Outcome: hashChanged, ID: id, Read: n, Err: fmt.Errorf("%s grew while it was read", path)}
	}
	if err != nil {
		return hashResult{Outcome: hashUnreadable, ID: id, Read: n, Err: fmt.Errorf("read %s: %w (check the disk and the file's permissions)", path, err)}
	}
	after, err := f.Stat()
	if err != nil {
		return hashResult{Outcome: hashUnreadable, ID: id, Read: n, Err: fmt.Errorf("stat %s: %w", path, err)}
	}
	if a := identity(after); !a.same(id) || n != id.Size {
		return hashResult{Outcome: hashChanged, ID: a, Read: n, Err: fmt.Errorf("%s changed while it was read", path)}
	}
	res := hashResult{Hash: c.sum, ID: id, Read: n, Values: c.values}
	syntaxErr := c.syntax
	switch {
	case n == 0 || errors.Is(syntaxErr, tracefile.ErrNoValues):
		res.Outcome = hashEmpty
	case errors.Is(syntaxErr, tracefile.ErrIncomplete):
		res.Outcome = hashIncomplete
		res.Err = fmt.Errorf("%s: %w", path, syntaxErr)
	case syntaxErr != nil:
		res.Outcome = hashInvalid
		res.Err = fmt.Errorf("%s: %w", path, syntaxErr) // the advice is the quarantine line's (countQuarantine)
	default:
		res.Outcome = hashOK
	}
	return res
}

// checked is what readChecked found of a whole value: its hash, its size,
// its values, and the validator's verdict (nil: valid).
type checked struct {
	sum    store.Hash
	n      int64
	values int64
	syntax error
}

// readChecked hashes and validates r to its end in one pass. over reports
// that r held more than maxSize bytes (reading stops there); err is a read
// error.
func readChecked(r io.Reader, format tracefile.Format, maxSize int64) (c checked, over bool, err error) {
	h := sha256.New()
	v := tracefile.NewValidator(format)
	bufp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bufp)
	buf := *bufp
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			c.n += int64(k)
			if c.n > maxSize {
				return c, true, nil
			}
			feed(h, v, &c.syntax, buf[:k])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return c, false, rerr
		}
	}
	h.Sum(c.sum[:0])
	if c.syntax == nil {
		c.syntax = v.Close()
	}
	c.values = v.Values()
	return c, false, nil
}

// feed hashes p and validates it, keeping the first syntax error: the
// hash goes on, as it identifies the bad bytes.
func feed(h hash.Hash, v *tracefile.Validator, syntax *error, p []byte) {
	h.Write(p)
	if *syntax == nil {
		if _, err := v.Write(p); err != nil {
			*syntax = err
		}
	}
}

// ErrNotRegular is returned (wrapped) by OpenSource for a path that is not
// a regular file (a FIFO, socket or device swapped in under a trace's name).
var ErrNotRegular = errors.New("not a regular file")

// OpenSource opens the trace file at path for reading without ever
// blocking: the open is non-blocking (a FIFO without a writer would
// otherwise block open(2) forever, beyond any context), never makes a
// terminal the controlling one, and anything but a regular file is closed
// again and refused with ErrNotRegular. Reads of a regular file are not
// affected by the non-blocking flag. Every open of a source file (hashing,
// the PUT) must go through it.
func OpenSource(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s (%s): %w: only regular files are uploaded", path, fi.Mode().Type(), ErrNotRegular)
	}
	return f, nil
}

// openToHash opens path (OpenSource) and takes its identity; f is nil when
// that failed, and failed then says why, as a hash outcome.
func openToHash(path string) (f *os.File, id fileID, failed hashResult) {
	f, err := OpenSource(path)
	if err != nil {
		if errors.Is(err, ErrNotRegular) {
			return nil, id, hashResult{Outcome: hashUnreadable, Err: err}
		}
		return nil, id, openFailure(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, id, hashResult{Outcome: hashUnreadable, Err: fmt.Errorf("stat %s: %w", path, err)}
	}
	return f, identity(fi), hashResult{}
}

func openFailure(path string, err error) hashResult {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return hashResult{Outcome: hashVanished, Err: err}
	case errors.Is(err, fs.ErrPermission):
		return hashResult{Outcome: hashUnreadable, Err: fmt.Errorf("cannot read %s: %w: give the tracesync user read permission (e.g. chmod o+r, or add it to the file's group)", path, err)}
	}
	return hashResult{Outcome: hashUnreadable, Err: fmt.Errorf("cannot read %s: %w", path, err)}
}
