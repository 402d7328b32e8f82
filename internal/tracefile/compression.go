package tracefile

// compression.go owns compressed trace files (x.jsonl.gz, x.json.zst): the
// name they stand for, and a reader of their decompressed bytes whose
// errors say whether the archive is corrupt, truncated or too large.

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Compression is how a trace file's bytes are compressed, decided by its
// last extension.
type Compression uint8

const (
	// Uncompressed is a plain .json or .jsonl file.
	Uncompressed Compression = iota
	// Gzip is a .json.gz or .jsonl.gz file (one or more gzip members).
	Gzip
	// Zstd is a .json.zst or .jsonl.zst file (one or more zstd frames).
	Zstd
)

// String returns the compression's name: "gzip", "zstd" or "none".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "none"
}

// CompressionOf returns the compression of name and the name it stands
// for without its compression suffix (x.jsonl for x.jsonl.gz). A name that
// is not a compressed .json or .jsonl is Uncompressed and returned as is.
func CompressionOf(name string) (Compression, string) {
	ext := filepath.Ext(name)
	var c Compression
	switch strings.ToLower(ext) {
	case ".gz":
		c = Gzip
	case ".zst":
		c = Zstd
	default:
		return Uncompressed, name
	}
	inner := name[:len(name)-len(ext)]
	switch strings.ToLower(filepath.Ext(inner)) {
	case ".json", ".jsonl":
		return c, inner
	}
	return Uncompressed, name
}

// Sentinels of the archive errors; errors.Is(err, ErrArchive) holds for
// every *ArchiveError.
var (
	// ErrArchive is returned (wrapped) when a compressed file's stream
	// cannot be read to its end: corrupt, truncated or past the limit.
	ErrArchive = errors.New("archive cannot be read")
	// ErrTruncated is returned (wrapped) when a compressed stream ends
	// before its last block or checksum: the file was cut short.
	ErrTruncated = errors.New("archive is truncated")
	// ErrInflateLimit is returned (wrapped) when a compressed stream holds
	// more decompressed bytes than the reader's limit (a decompression
	// bomb, or an archive larger than allowed).
	ErrInflateLimit = errors.New("archive inflates past the limit")
)

// ArchiveError says why the decompressed stream of a compressed file
// ended in an error. Kind is ErrTruncated, ErrInflateLimit, or ErrArchive
// for a corrupt stream; Err is the decompressor's own error, if any.
type ArchiveError struct {
	Compression Compression
	Kind        error
	Limit       int64 // for ErrInflateLimit: the limit in bytes
	Err         error
}

// Error says what is wrong with the archive.
func (e *ArchiveError) Error() string {
	switch e.Kind {
	case ErrTruncated:
		return fmt.Sprintf("the %s archive is truncated (%v)", e.Compression, e.Err)
	case ErrInflateLimit:
		return fmt.Sprintf("the %s archive decompresses to more than %d bytes", e.Compression, e.Limit)
	}
	return fmt.Sprintf("the %s archive is corrupt (%v)", e.Compression, e.Err)
}

// Is makes errors.Is(err, ErrArchive) true for every archive error, and
// errors.Is(err, e.Kind) for its kind.
func (e *ArchiveError) Is(target error) bool { return target == ErrArchive || target == e.Kind }

// Unwrap returns the decompressor's error.
func (e *ArchiveError) Unwrap() error { return e.Err }

// zstdMaxWindow bounds the memory a zstd frame may ask for: 128 MiB, what
// the reference decoder accepts without --memory.
const zstdMaxWindow = 128 << 20

// NewReader returns the decompressed bytes of r, compressed with c, and
// fails with an *ArchiveError once more than limit bytes came out (limit
// <= 0: no limit) or the stream is corrupt or truncated. An empty r is a
// truncated archive. Close releases the decompressor (not r).
func NewReader(r io.Reader, c Compression, limit int64) (io.ReadCloser, error) {
	ar := &archiveReader{c: c, limit: limit}
	br := bufio.NewReaderSize(r, 64<<10)
	switch c {
	case Gzip:
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, ar.wrap(err)
		}
		ar.r, ar.close = z, z.Close
	case Zstd:
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, ar.wrap(err)
		}
		ar.r, ar.close = z, func() error { z.Close(); return nil }
	default:
		return nil, fmt.Errorf("tracefile: NewReader: compression %d is not an archive", c)
	}
	return ar, nil
}

// archiveReader is NewReader's reader: it counts what comes out and turns
// the decompressor's errors into *ArchiveError.
type archiveReader struct {
	c     Compression
	r     io.Reader
	close func() error
	limit int64
	n     int64
	err   error // sticky: the first error, returned again
}

func (a *archiveReader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	if a.limit > 0 && int64(len(p)) > a.limit-a.n+1 {
		p = p[:a.limit-a.n+1] // one byte past the limit is enough to know
	}
	k, err := a.r.Read(p)
	a.n += int64(k)
	if a.limit > 0 && a.n > a.limit {
		a.err = &ArchiveError{Compression: a.c, Kind: ErrInflateLimit, Limit: a.limit}
		return k - int(a.n-a.limit), a.err
	}
	if err != nil && err != io.EOF {
		a.err = a.wrap(err)
		return k, a.err
	}
	return k, err
}

func (a *archiveReader) Close() error { return a.close() }

// wrap classifies a decompressor's error.
func (a *archiveReader) wrap(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &ArchiveError{Compression: a.c, Kind: ErrTruncated, Err: io.ErrUnexpectedEOF}
	}
	return &ArchiveError{Compression: a.c, Kind: ErrArchive, Err: err}
}
