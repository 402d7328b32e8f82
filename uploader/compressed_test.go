package uploader

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tracesync/tracesync/store"
)

// gzipped and zstded compress data as the gzip and zstd tools would.
func gzipped(t testing.TB, data string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstded(t testing.TB, data string) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll([]byte(data), nil)
}

// compressFor compresses data as name's suffix says.
func compressFor(t testing.TB, name, data string) []byte {
	t.Helper()
	if strings.HasSuffix(name, ".zst") {
		return zstded(t, data)
	}
	return gzipped(t, data)
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// jsonLines is n JSON lines of about width bytes each.
func jsonLines(n, width int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"i":%d,"pad":"%s"}`+"\n", i, strings.Repeat("p", i%width))
	}
	return b.String()
}

// A valid archive of each kind is read as the bytes it holds: its content
// is the SHA-256 of the decompressed bytes, the same as the plain file's.
func TestCompressedValid(t *testing.T) {
	dir := t.TempDir()
	jsonl := jsonLines(20, 9)
	json := `{"trace": {"spans": [1, 2, 3]}}`
	for _, tc := range []struct{ name, data string }{
		{"a.jsonl.gz", jsonl}, {"a.jsonl.zst", jsonl}, {"a.json.gz", json}, {"a.json.zst", json},
		{"UPPER.JSONL.GZ", jsonl}, {"joined.jsonl.gz", strings.TrimSuffix(jsonl, "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, tc.name, compressFor(t, strings.ToLower(tc.name), tc.data))
			plainName := strings.TrimSuffix(strings.TrimSuffix(tc.name, ".gz"), ".GZ")
			plainName = strings.TrimSuffix(plainName, ".zst")
			plain := writeFile(t, t.TempDir(), plainName, []byte(tc.data))
			want := readSource(plain, 1<<20, 0, nil, false)
			got := readSource(p, 1<<20, 0, nil, false)
			if got.Outcome != hashOK || got.Err != nil {
				t.Fatalf("%s: outcome %d (%v), want ok", tc.name, got.Outcome, got.Err)
			}
			if got.Hash != store.Hash(sha256.Sum256([]byte(tc.data))) || got.Hash != want.Hash {
				t.Errorf("%s: hash %s, want %s (the decompressed bytes', as the plain file's)", tc.name, got.Hash, want.Hash)
			}
			if got.Start != 0 || got.End != int64(len(tc.data)) || got.segSize() != int64(len(tc.data)) {
				t.Errorf("%s: content [%d, %d), want [0, %d)", tc.name, got.Start, got.End, len(tc.data))
			}
			if got.Values != want.Values || got.More || got.Partial {
				t.Errorf("%s: values %d more %v partial %v, want %d, false, false", tc.name, got.Values, got.More, got.Partial, want.Values)
			}
		})
	}
}

// The upload name and content type are those of the name without the
// compression suffix.
func TestCompressedUploadName(t *testing.T) {
	var h store.Hash
	h[0] = 0xab
	for in, want := range map[string]string{
		"/d/agent.jsonl.gz":  "agent.ab00000000000000.jsonl",
		"/d/agent.json.zst":  "agent.ab00000000000000.json",
		"/d/agent.jsonl":     "agent.ab00000000000000.jsonl",
		"/d/agent.tar.gz":    "agent.tar.ab00000000000000.gz",
		"/d/Agent.JSONL.GZ":  "Agent.ab00000000000000.JSONL",
		"/d/x.jsonl.gz.json": "x.jsonl.gz.ab00000000000000.json",
	} {
		if got := UploadName(in, h, RemoteNameUnique); got != want {
			t.Errorf("UploadName(%s) = %s, want %s", in, got, want)
		}
	}
	if got := UploadName("/d/agent.jsonl.gz", h, RemoteNameBasename); got != "agent.jsonl" {
		t.Errorf("basename naming of agent.jsonl.gz: %s, want agent.jsonl", got)
	}
}

// A corrupt or truncated archive, and one that inflates past the bound,
// is refused with a reason that names the file and the fix.
func TestCompressedBad(t *testing.T) {
	dir := t.TempDir()
	jsonl := jsonLines(400, 30)
	corrupt := func(b []byte) []byte {
		b = bytes.Clone(b)
		for i := len(b) / 3; i < len(b)/3+16; i++ {
			b[i] ^= 0x5a
		}
		return b
	}
	gz, zs := gzipped(t, jsonl), zstded(t, jsonl)
	for _, tc := range []struct {
		name       string
		data       []byte
		maxInflate int64
		want       hashOutcome
		says       []string
	}{
		{"corrupt.jsonl.gz", corrupt(gz), 0, hashInvalid, []string{"gzip archive is corrupt", "gzip -t"}},
		{"corrupt.json.gz", corrupt(gzipped(t, `{"a":"`+strings.Repeat("b", 5000)+`"}`)), 0, hashInvalid, []string{"corrupt"}},
		{"corrupt.jsonl.zst", corrupt(zs), 0, hashInvalid, []string{"zstd archive is corrupt", "zstd -t"}},
		{"nogzip.jsonl.gz", []byte(jsonl), 0, hashInvalid, []string{"corrupt"}},
		{"truncated.jsonl.gz", gz[:len(gz)/2], 0, hashInvalid, []string{"gzip archive is truncated", "copy it again"}},
		{"truncated.jsonl.zst", zs[:len(zs)/2], 0, hashInvalid, []string{"truncated"}},
		{"notrailer.json.gz", gzipped(t, `{"a":1}`)[:15], 0, hashInvalid, []string{"truncated"}},
		{"cutline.jsonl.gz", gzipped(t, jsonl+`{"cut":`), 0, hashInvalid, []string{"ends in the middle of a line", "compress the finished file again"}},
		{"onlycut.jsonl.zst", zstded(t, `{"cut":`), 0, hashInvalid, []string{"ends in the middle of a line"}},
		{"cut.json.gz", gzipped(t, `{"a": [1, 2`), 0, hashInvalid, []string{"compress the finished file again"}},
		{"bomb.jsonl.gz", gz, 1000, hashTooLarge, []string{"more than 1000 bytes (--max-inflate)", "decompression bomb", "TRACESYNC_MAX_INFLATE"}},
		{"bomb.jsonl.zst", zs, 1000, hashTooLarge, []string{"--max-inflate"}},
		{"bomb.json.gz", gzipped(t, `["`+strings.Repeat("x", 5000)+`"]`), 1000, hashTooLarge, []string{"--max-inflate"}},
	} {
		p := writeFile(t, dir, tc.name, tc.data)
		r := readSource(p, 1<<20, tc.maxInflate, nil, false)
		if r.Outcome != tc.want {
			t.Errorf("%s: outcome %d (%v), want %d", tc.name, r.Outcome, r.Err, tc.want)
			continue
		}
		msg := errText(r.Err)
		if !strings.Contains(msg, p) {
			t.Errorf("%s: reason %q does not name the file", tc.name, msg)
		}
		for _, s := range tc.says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s: reason %q does not say %q", tc.name, msg, s)
			}
		}
	}
}

// A decompression bomb: a few hundred KiB that inflate to 100 MiB of
// blank lines. The first segment's read finds it before anything is sent,
// though every segment on its own would fit.
func TestCompressedBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 100 MiB")
	}
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte(`{}`+"\n"), 1<<16)
	for range (100 << 20) / len(block) {
		w.Write(block)
	}
	w.Close()
	p := writeFile(t, t.TempDir(), "bomb.jsonl.gz", b.Bytes())
	r := readSource(p, 50<<20, 64<<20, nil, false)
	if r.Outcome != hashTooLarge || !strings.Contains(errText(r.Err), "--max-inflate") {
		t.Fatalf("a %d-byte archive of 100 MiB under --max-inflate 64MiB: outcome %d (%v), want too large", b.Len(), r.Outcome, r.Err)
	}
	// A .json.gz meets the upload limit first.
	p = writeFile(t, t.TempDir(), "bomb.json.gz", b.Bytes())
	if r := readSource(p, 50<<20, 64<<20, nil, false); r.Outcome != hashTooLarge || !strings.Contains(errText(r.Err), "decompresses to more than the limit of 52428800 bytes") {
		t.Fatalf("bomb.json.gz: outcome %d (%v), want too large for the upload limit", r.Outcome, r.Err)
	}
}

// An empty file, or an archive of nothing, has nothing to upload.
func TestCompressedEmpty(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"zero.jsonl.gz": nil, "zero.json.zst": nil,
		"nothing.jsonl.gz": gzipped(t, ""), "blank.jsonl.zst": zstded(t, "\n \n"), "nothing.json.gz": gzipped(t, " "),
	} {
		p := writeFile(t, dir, name, data)
		if r := readSource(p, 1<<20, 0, nil, false); r.Outcome != hashEmpty {
			t.Errorf("%s: outcome %d (%v), want empty", name, r.Outcome, r.Err)
		}
	}
}

// cutStream cuts a decompressed stream where cutSegment cuts the same
// bytes in a file, whatever the limit: same end, hash, value count and
// verdicts.
func TestCutStreamMatchesCutSegment(t *testing.T) {
	long := `{"long":"` + strings.Repeat("L", 300) + `"}` + "\n"
	inputs := map[string]string{
		"lines":         jsonLines(60, 13),
		"no newline":    strings.TrimSuffix(jsonLines(30, 5), "\n"),
		"cut last line": jsonLines(30, 5) + `{"cut":`,
		"blank tail":    jsonLines(10, 5) + "  \n \t",
		"invalid line":  jsonLines(10, 5) + "{nope}\n" + jsonLines(10, 5),
		"long line":     jsonLines(5, 3) + long + jsonLines(5, 3),
		"only long":     long,
		"blank":         "\n\n  \n",
	}
	dir := t.TempDir()
	for name, data := range inputs {
		p := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".jsonl", []byte(data))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, maxSize := range []int64{50, 100, 299, 333, 1000, 1 << 20} {
			for start := int64(0); start < int64(len(data)); {
				want, err := cutSegment(f, start, int64(len(data)), maxSize, true)
				if err != nil {
					t.Fatal(err)
				}
				got, err := cutStream(strings.NewReader(data[start:]), start, maxSize)
				if err != nil {
					t.Fatalf("%s at %d, limit %d: %v", name, start, maxSize, err)
				}
				where := fmt.Sprintf("%s from %d, limit %d", name, start, maxSize)
				if got.end != want.end || got.limited != want.limited || got.tooLarge != want.tooLarge || (got.syntax != nil) != (want.syntax != nil) {
					t.Fatalf("%s: end %d limited %v too large %v syntax %v; cutSegment: %d %v %v %v", where, got.end, got.limited, got.tooLarge, got.syntax, want.end, want.limited, want.tooLarge, want.syntax)
				}
				if got.end > start && (got.sum != want.sum || got.values != want.values) {
					t.Errorf("%s: hash %s, %d values; cutSegment: %s, %d", where, got.sum, got.values, want.sum, want.values)
				}
				if !want.limited && got.partial != want.partial {
					t.Errorf("%s: partial %v, cutSegment %v", where, got.partial, want.partial)
				}
				if got.end == start {
					break
				}
				start = got.end
			}
		}
		f.Close()
	}
}

// A .jsonl.gz over the size limit is read in segments of at most the
// limit, cut at line boundaries of its decompressed bytes, each following
// the one recorded before it: together they are the whole stream, once.
func TestCompressedSegments(t *testing.T) {
	data := jsonLines(200, 40)
	p := writeFile(t, t.TempDir(), "big.jsonl.gz", gzipped(t, data))
	const limit = 1000
	rec := store.PathRecord{}
	uploaded := false
	lookup := func(string, fileID) *segBase {
		if rec.Hash.IsZero() {
			return nil
		}
		return &segBase{rec: rec, uploaded: uploaded}
	}
	var got strings.Builder
	for n := 0; ; n++ {
		if n > len(data)/100 {
			t.Fatal("too many segments")
		}
		r := readSource(p, limit, 0, lookup, false)
		if r.Outcome != hashOK {
			t.Fatalf("segment %d: outcome %d (%v)", n, r.Outcome, r.Err)
		}
		if r.Based && !r.Extends {
			t.Fatalf("segment %d: not after the uploaded one", n)
		}
		if r.End-r.Start > limit || data[r.End-1] != '\n' || r.Start != int64(got.Len()) {
			t.Fatalf("segment %d [%d, %d): over the limit, not at a line's end, or not after the last", n, r.Start, r.End)
		}
		if r.Hash != store.Hash(sha256.Sum256([]byte(data[r.Start:r.End]))) {
			t.Fatalf("segment %d: hash is not of its bytes", n)
		}
		// Pending, it is read again as it was cut.
		rec = store.PathRecord{Hash: r.Hash, Start: r.Start, End: r.End, Dev: r.ID.Dev, Ino: r.ID.Ino, Size: r.ID.Size, State: store.StatePending}
		uploaded = false
		if again := readSource(p, limit, 0, lookup, false); again.Hash != r.Hash || again.Start != r.Start || again.End != r.End || !again.Based || again.Extends {
			t.Fatalf("segment %d, pending, read again: [%d, %d) %s, want the same segment", n, again.Start, again.End, again.Hash)
		}
		got.WriteString(data[r.Start:r.End])
		uploaded = true
		if !r.More {
			break
		}
	}
	if got.String() != data {
		t.Fatalf("segments hold %d bytes, want the %d of the stream", got.Len(), len(data))
	}
	// After the last one nothing new: the chain stands.
	if r := readSource(p, limit, 0, lookup, false); r.Outcome != hashOK || r.Extends || r.Hash != rec.Hash {
		t.Errorf("after the last segment: outcome %d extends %v, want the chain as it is", r.Outcome, r.Extends)
	}
	// An archive whose last line is cut: its last segment is quarantined,
	// keeping the bytes of its complete lines as its content.
	cutData := data + `{"cut":`
	cp := writeFile(t, t.TempDir(), "cut.jsonl.gz", gzipped(t, cutData))
	cutRec := store.PathRecord{Hash: store.Hash(sha256.Sum256([]byte(data[rec.Start:rec.End]))), Start: rec.Start, End: rec.End}
	if st, err := os.Stat(cp); err == nil {
		id := identity(st)
		cutRec.Dev, cutRec.Ino = id.Dev, id.Ino
	}
	cutLookup := func(string, fileID) *segBase { return &segBase{rec: cutRec, uploaded: true} }
	if r := readSource(cp, limit, 0, cutLookup, false); r.Outcome != hashInvalid || !strings.Contains(errText(r.Err), "middle of a line") || r.Hash != cutRec.Hash {
		t.Errorf("after the last whole segment, a cut line: outcome %d (%v) hash %s; want invalid, keeping the last segment's content", r.Outcome, r.Err, r.Hash)
	}
	// A record another archive left (other bytes at that range) is not
	// continued: the file is a new content from byte 0.
	rec.Hash[0] ^= 1
	if r := readSource(p, limit, 0, lookup, false); r.Based || r.Start != 0 {
		t.Errorf("a record whose bytes the archive does not hold: based %v from %d, want a new content from 0", r.Based, r.Start)
	}
}

// The PUT body of a compressed file is its decompressed bytes in the
// range decided, and a corrupt archive fails it with ErrArchive.
func TestInflatedBody(t *testing.T) {
	data := jsonLines(100, 20)
	dir := t.TempDir()
	for _, name := range []string{"b.jsonl.gz", "b.jsonl.zst"} {
		p := writeFile(t, dir, name, compressFor(t, name, data))
		for _, rg := range [][2]int64{{0, int64(len(data))}, {100, 500}, {int64(len(data)) - 7, 7}} {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := newInflatedBody(f, p, rg[0], rg[1])
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(b)
			if err != nil || string(got) != data[rg[0]:rg[0]+rg[1]] {
				t.Errorf("%s [%d, +%d): %d bytes, err %v; want the decompressed range", name, rg[0], rg[1], len(got), err)
			}
			b.Close()
			if _, err := b.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s: a read after Close succeeded", name)
			}
			f.Close()
		}
	}
}
