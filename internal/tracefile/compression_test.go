package tracefile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestCompressionOf(t *testing.T) {
	for _, tc := range []struct {
		name, inner string
		c           Compression
		format      Format
	}{
		{"a.jsonl.gz", "a.jsonl", Gzip, FormatJSONL},
		{"a.json.gz", "a.json", Gzip, FormatJSON},
		{"dir/a.jsonl.zst", "dir/a.jsonl", Zstd, FormatJSONL},
		{"A.JSON.ZST", "A.JSON", Zstd, FormatJSON},
		{"a.jsonl", "a.jsonl", Uncompressed, FormatJSONL},
		{"a.tar.gz", "a.tar.gz", Uncompressed, 0},
		{"a.gz", "a.gz", Uncompressed, 0},
		{"a.jsonl.gz.zst", "a.jsonl.gz.zst", Uncompressed, 0},
	} {
		c, inner := CompressionOf(tc.name)
		f, ok := FormatOf(tc.name)
		if c != tc.c || inner != tc.inner || f != tc.format || ok != (tc.format != 0) {
			t.Errorf("%s: %s %q format %v %v; want %s %q %v", tc.name, c, inner, f, ok, tc.c, tc.inner, tc.format)
		}
	}
}

func gz(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func zs(data []byte) []byte {
	w, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer w.Close()
	return w.EncodeAll(data, nil)
}

// readAll reads r through NewReader, checking what any archive reader
// must do: at most limit bytes out, every error an *ArchiveError.
func readAll(t *testing.T, data []byte, c Compression, limit int64) ([]byte, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), c, limit)
	if err != nil {
		if !errors.Is(err, ErrArchive) {
			t.Fatalf("NewReader: %v is not an archive error", err)
		}
		return nil, err
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if limit > 0 && int64(len(out)) > limit {
		t.Fatalf("%d bytes out past the limit of %d", len(out), limit)
	}
	if err != nil && !errors.Is(err, ErrArchive) {
		t.Fatalf("read: %v is not an archive error", err)
	}
	return out, err
}

func TestNewReader(t *testing.T) {
	data := bytes.Repeat([]byte(`{"a":1}`+"\n"), 500)
	for _, c := range []Compression{Gzip, Zstd} {
		packed := gz(data)
		if c == Zstd {
			packed = zs(data)
		}
		two := append(bytes.Clone(packed), packed...) // concatenated members and frames are one stream
		if out, err := readAll(t, two, c, 0); err != nil || !bytes.Equal(out, append(bytes.Clone(data), data...)) {
			t.Errorf("%s, two members: %d bytes, %v", c, len(out), err)
		}
		if out, err := readAll(t, packed, c, int64(len(data))); err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s at exactly the limit: %d bytes, %v", c, len(out), err)
		}
		if _, err := readAll(t, packed, c, int64(len(data))-1); !errors.Is(err, ErrInflateLimit) {
			t.Errorf("%s one byte past the limit: %v, want ErrInflateLimit", c, err)
		}
		if _, err := readAll(t, packed[:len(packed)-5], c, 0); !errors.Is(err, ErrTruncated) {
			t.Errorf("%s cut short: %v, want ErrTruncated", c, err)
		}
		if _, err := readAll(t, []byte("not an archive at all"), c, 0); err == nil || errors.Is(err, ErrTruncated) {
			t.Errorf("%s of plain text: %v, want a corrupt archive", c, err)
		}
	}
}

// FuzzNewReader: whatever the bytes, the archive reader never panics, never
// gives more than its limit, and fails only with an *ArchiveError.
func FuzzNewReader(f *testing.F) {
	data := []byte(`{"a":1}` + "\n" + `{"b":[1,2]}` + "\n")
	f.Add(gz(data), false)
	f.Add(zs(data), true)
	f.Add(gz(bytes.Repeat([]byte{'\n'}, 10000)), false)
	f.Add([]byte{0x1f, 0x8b, 8, 0}, false)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, true)
	f.Fuzz(func(t *testing.T, b []byte, zstdInput bool) {
		c := Gzip
		if zstdInput {
			c = Zstd
		}
		readAll(t, b, c, 4096)
	})
}
