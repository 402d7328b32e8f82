package uploader_test

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
)

// writeCompressed writes data to root/rel compressed as rel's suffix says.
func (h *harness) writeCompressed(rel, data string) string {
	h.t.Helper()
	var b bytes.Buffer
	if strings.HasSuffix(rel, ".zst") {
		w, err := zstd.NewWriter(&b)
		if err != nil {
			h.t.Fatal(err)
		}
		w.Write([]byte(data))
		w.Close()
	} else {
		w := gzip.NewWriter(&b)
		w.Write([]byte(data))
		w.Close()
	}
	return h.write(rel, b.String())
}

// Compressed files go up decompressed, under the name without the suffix;
// the same traces compressed and plain are one content: one create, the
// other paths linked.
func TestCompressedUploadsDecompressed(t *testing.T) {
	cfg := fastConfig()
	h := newHarness(t, cfg, stratixtest.Options{})
	data := lines(0, 5)
	gz := h.writeCompressed("agent.jsonl.gz", data)
	h.ready(gz)
	h.waitState(gz, store.StateUploaded)
	zs := h.writeCompressed("other.jsonl.zst", lines(10, 12))
	h.ready(zs)
	h.waitState(zs, store.StateUploaded)
	js := h.writeCompressed("one.json.gz", traceA)
	h.ready(js)
	h.waitState(js, store.StateUploaded)
	h.idle()
	checkLines(t, h.srv, append(append(wantLines(0, 5), wantLines(10, 12)...), traceA)...)
	names := h.srv.CreatesByFilename()
	for _, c := range []struct{ path, data, inner string }{{gz, data, "agent.jsonl"}, {zs, lines(10, 12), "other.jsonl"}, {js, traceA, "one.json"}} {
		want := nameOf(cfg, filepath.Join(h.root, c.inner), c.data)
		if names[want] != 1 {
			t.Errorf("%s: created under %v, want once as %s (the decompressed bytes' name, without .gz/.zst)", filepath.Base(c.path), names, want)
		}
	}
	// The same traces, plain and in another archive: linked, not sent again.
	plain := h.write("agent.jsonl", data)
	h.ready(plain)
	again := h.writeCompressed("copy/agent.jsonl.zst", data)
	h.ready(again)
	h.waitState(plain, store.StateUploaded)
	h.waitState(again, store.StateUploaded)
	h.idle()
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 3 {
		t.Errorf("creates: %d, want 3 (the copies of agent's traces are linked)", n)
	}
	if p := h.eng.Progress(); p.Linked != 2 {
		t.Errorf("linked: %d, want 2", p.Linked)
	}
	if a, b := h.rec(gz).Hash, h.rec(plain).Hash; a != b || a.String() != hexHash(data) {
		t.Errorf("agent.jsonl.gz holds %s, agent.jsonl %s: want both the SHA-256 of the decompressed bytes", a, b)
	}
}

// A .jsonl.gz over the size limit uploads in segments of at most the
// limit, cut at line boundaries of its decompressed bytes: each line once.
func TestCompressedJSONLInSegments(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFileSize = 300
	h := newHarness(t, cfg, stratixtest.Options{})
	data := lines(0, 40)
	p := h.writeCompressed("big.jsonl.gz", data)
	h.ready(p)
	h.checkSegments(p, data, 300)
	for name := range h.srv.CreatesByFilename() {
		if !strings.HasSuffix(name, ".jsonl") || !strings.HasPrefix(name, "big.") {
			t.Errorf("segment uploaded as %s, want big.<hash>.jsonl", name)
		}
	}
	// A restart with the archive unchanged uploads nothing more.
	creates := h.srv.Calls(stratixtest.EndpointCreate)
	h.restart()
	h.ready(p)
	h.idle()
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != creates {
		t.Errorf("creates after a restart: %d, want %d", n, creates)
	}
	checkLines(t, h.srv, wantLines(0, 40)...)
}

// A corrupt archive, a truncated one and a bomb are quarantined with the
// reason, and nothing of them reaches the server.
func TestCompressedQuarantined(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxInflate = 2000
	h := newHarness(t, cfg, stratixtest.Options{})
	good := h.writeCompressed("good.jsonl.gz", lines(0, 3))
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	h.ready(good)
	bad := h.write("bad.jsonl.gz", string(b[:len(b)/2]))
	h.ready(bad)
	garbage := h.write("garbage.json.gz", "\x1f\x8b\x08\x00 this is not deflate data at all")
	h.ready(garbage)
	bomb := h.writeCompressed("bomb.jsonl.zst", strings.Repeat(`{"x":1}`+"\n", 1000))
	h.ready(bomb)
	for p, says := range map[string]string{bad: "truncated", garbage: "corrupt", bomb: "--max-inflate"} {
		r := h.waitState(p, store.StateQuarantined)
		if !strings.Contains(r.LastError, says) || !strings.Contains(r.LastError, p) {
			t.Errorf("%s: reason %q, want it to name the file and say %q", filepath.Base(p), r.LastError, says)
		}
	}
	h.waitState(good, store.StateUploaded)
	h.idle()
	checkLines(t, h.srv, wantLines(0, 3)...)
	if got := h.eng.Progress().QuarantineReasons; got["invalid"] != 2 || got["too-large"] != 1 {
		t.Errorf("quarantine reasons %v, want 2 invalid, 1 too-large", got)
	}
}

// The dry run reads archives as the engine does.
func TestPlannerReadsArchives(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.writeCompressed("plan.jsonl.gz", lines(0, 3))
	bomb := h.writeCompressed("bomb.jsonl.gz", strings.Repeat("{}\n", 500))
	pl := uploader.NewPlanner(nil, 0, uploader.RemoteNameUnique)
	pl.MaxInflate = 1000
	if got, err := pl.Plan(p, h.root); err != nil || got.Action != "upload" {
		t.Errorf("plan.jsonl.gz: %+v, %v; want upload", got, err)
	}
	if got, err := pl.Plan(bomb, h.root); err != nil || got.Action != "quarantine" || !strings.Contains(got.Detail, "--max-inflate") {
		t.Errorf("bomb.jsonl.gz: %+v, %v; want quarantine past --max-inflate", got, err)
	}
}

// The re-hash of what is sent covers the decompressed stream: an archive
// rewritten (other traces) or corrupted between its hash and its PUT is
// not created; it settles again, and its new bytes decide.
func TestCompressedChangedBeforePut(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	swap := h.writeCompressed("swap.jsonl.gz", lines(0, 3))
	h.hooks.once(&h.hooks.put, func() { h.writeCompressed("swap.jsonl.gz", lines(5, 8)) })
	h.ready(swap)
	h.waitFor("the rewritten archive to settle again", func() bool { return h.rs.has(swap) })
	h.ready(swap)
	h.waitState(swap, store.StateUploaded) // (not idle: the Ready sent back to settling is never done)
	checkLines(t, h.srv, wantLines(5, 8)...)

	bad := h.writeCompressed("bad.jsonl.zst", lines(10, 13))
	h.hooks.once(&h.hooks.put, func() { h.write("bad.jsonl.zst", "\x28\xb5\x2f\xfd garbage, not a frame") })
	h.ready(bad)
	h.waitFor("the corrupted archive to settle again", func() bool { return h.rs.has(bad) })
	h.ready(bad)
	if r := h.waitState(bad, store.StateQuarantined); !strings.Contains(r.LastError, "corrupt") {
		t.Errorf("bad.jsonl.zst: reason %q, want corrupt", r.LastError)
	}
	checkLines(t, h.srv, wantLines(5, 8)...)
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 1 {
		t.Errorf("creates: %d, want 1 (the changed archives' first bytes never created)", n)
	}
}
