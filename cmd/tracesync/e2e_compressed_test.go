package main

import (
	"bytes"
	"compress/gzip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tracesync/tracesync/client/stratixtest"
)

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdOf(t *testing.T, data []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(data, nil)
}

// A backfill of a folder holding the same traces plain and compressed
// (.jsonl.gz, .jsonl.zst, .json.gz) uploads each content once, decompressed
// and under the name without the suffix, and links the other copies; a
// .jsonl.gz over the size limit goes up in segments; a corrupt and a
// truncated archive and a decompression bomb are quarantined with the
// reason, which `files` shows. A re-run uploads nothing.
func TestE2EBackfillCompressed(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	var want []string
	var logs strings.Builder
	for i := range 20 {
		l := logLine("gz", i)
		logs.WriteString(l + "\n")
		want = append(want, l)
	}
	jsonl := []byte(logs.String())
	single := traceJSON("single")
	want = append(want, strings.TrimSpace(string(single)))
	var big strings.Builder
	for i := 0; big.Len() < 3<<20; i++ {
		l := logLine("big", i)
		big.WriteString(l + "\n")
		want = append(want, l)
	}
	writeFile(t, root, "plain/agent.jsonl", jsonl)
	writeFile(t, root, "gz/agent.jsonl.gz", gzipOf(t, jsonl))
	writeFile(t, root, "zst/agent.jsonl.zst", zstdOf(t, jsonl))
	writeFile(t, root, "plain/single.json", single)
	writeFile(t, root, "gz/single.json.gz", gzipOf(t, single))
	writeFile(t, root, "gz/big.jsonl.gz", gzipOf(t, []byte(big.String())))
	good := gzipOf(t, traceJSONL("cut", 50))
	writeFile(t, root, "bad/truncated.jsonl.gz", good[:len(good)/2])
	corrupt := bytes.Clone(good)
	for i := 20; i < 40; i++ {
		corrupt[i] ^= 0xff
	}
	writeFile(t, root, "bad/corrupt.jsonl.gz", corrupt)
	writeFile(t, root, "bad/cutline.jsonl.gz", gzipOf(t, append(traceJSONL("cutline", 3), `{"trace_id":"tr-cut`...)))
	writeFile(t, root, "bad/bomb.jsonl.zst", zstdOf(t, bytes.Repeat([]byte("{}\n"), 3<<20))) // 9 MiB of lines

	args := []string{"backfill", "--max-file-size", "1MiB", "--max-inflate", "8MiB", root}
	res := e.run(args...)
	if res.code != 1 {
		t.Fatalf("backfill: exit %d, want 1 (four files quarantined)\n%s", res.code, tail(res.stderr, 4000))
	}
	if d := missingOrExtra(e.srv, want); d != "" {
		t.Fatalf("after the backfill: %s", d)
	}
	names := e.srv.CreatesByFilename()
	for name, n := range names {
		if n != 1 {
			t.Errorf("%s: created %d times, want once", name, n)
		}
		if strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".zst") {
			t.Errorf("uploaded as %s: want the name without the compression suffix", name)
		}
	}
	files := e.files()
	agentHash := hashOf(jsonl)
	for _, rel := range []string{"plain/agent.jsonl", "gz/agent.jsonl.gz", "zst/agent.jsonl.zst"} {
		r := files[filepath.Join(root, rel)]
		if r.State != "uploaded" || r.Hash != agentHash {
			t.Errorf("%s: %s with content %s, want uploaded with %s (the decompressed bytes')", rel, r.State, r.Hash, agentHash)
		}
	}
	if a, b := files[filepath.Join(root, "plain/single.json")], files[filepath.Join(root, "gz/single.json.gz")]; a.Hash != b.Hash || b.State != "uploaded" {
		t.Errorf("single.json.gz: %s %s, want uploaded with single.json's content %s", b.State, b.Hash, a.Hash)
	}
	if r := files[filepath.Join(root, "gz/big.jsonl.gz")]; r.State != "uploaded" || r.Segments < 3 {
		t.Errorf("big.jsonl.gz (3 MiB decompressed at a 1 MiB limit): %s in %d segments, want uploaded in at least 3", r.State, r.Segments)
	}
	for rel, says := range map[string]string{
		"bad/truncated.jsonl.gz": "truncated",
		"bad/corrupt.jsonl.gz":   "corrupt",
		"bad/bomb.jsonl.zst":     "--max-inflate",
		"bad/cutline.jsonl.gz":   "middle of a line",
	} {
		p := filepath.Join(root, rel)
		r := files[p]
		if r.State != "quarantined" || !strings.Contains(r.LastError, says) || !strings.Contains(r.LastError, p) {
			t.Errorf("%s: %s, reason %q; want quarantined, naming the file and saying %q", rel, r.State, r.LastError, says)
		}
	}
	creates := e.srv.Calls(stratixtest.EndpointCreate)
	if res := e.run(args...); res.code != 1 {
		t.Fatalf("re-run: exit %d\n%s", res.code, tail(res.stderr, 4000))
	}
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != creates {
		t.Errorf("re-run made %d creates, want none", n-creates)
	}
	if d := missingOrExtra(e.srv, want); d != "" {
		t.Fatalf("after the re-run: %s", d)
	}
}
