package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSlopePerMinute(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 4}
	for _, tc := range []struct {
		name string
		ys   []float64
		want float64
	}{
		{"flat", []float64{7, 7, 7, 7, 7}, 0},
		{"growing", []float64{10, 12, 14, 16, 18}, 2},
		{"noisy flat", []float64{10, 11, 10, 11, 10}, 0},
		{"shrinking", []float64{5, 4, 3, 2, 1}, -1},
	} {
		if got := slopePerMinute(xs, tc.ys); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: slope %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := slopePerMinute([]float64{1}, []float64{3}); got != 0 {
		t.Errorf("one sample: slope %v, want 0", got)
	}
}

// TestProducerReplays checks what -seed promises: the same seed makes the
// same operations, the same files and the same bytes.
func TestProducerReplays(t *testing.T) {
	run := func(dir string) (*producer, map[string]string) {
		p := newProducer(dir, 42, 1000, 40, 2)
		if err := p.setup(); err != nil {
			t.Fatal(err)
		}
		for range 400 {
			p.tick++
			if err := p.advanceSlow(); err != nil {
				t.Fatal(err)
			}
			if err := p.step(); err != nil {
				t.Fatalf("tick %d: %v", p.tick, err)
			}
		}
		return p, readTree(t, dir)
	}
	a, treeA := run(t.TempDir())
	b, treeB := run(t.TempDir())
	if a.did != b.did {
		t.Fatalf("same seed, different operations: %+v vs %+v", a.did, b.did)
	}
	if len(treeA) != len(treeB) {
		t.Fatalf("same seed: %d files vs %d", len(treeA), len(treeB))
	}
	for name, data := range treeA {
		if treeB[name] != data {
			t.Fatalf("same seed: %s differs between runs", name)
		}
	}
	d := a.did
	if d.written == 0 || d.renamed == 0 || d.moved == 0 || d.rewritten == 0 || d.duplicated == 0 || d.deleted == 0 {
		t.Fatalf("400 operations did not do every kind: %+v", d)
	}
}

// readTree returns every non-temporary file under dir (relative path →
// bytes); files being slowly written are included as they are.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("temporary file left behind: %s", rel)
		}
		b, err := os.ReadFile(path)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestProducerBookkeeping checks that the producer's record of which path
// holds which content matches the folder, and that the record's trace
// count is what the server will make of the bytes.
func TestProducerBookkeeping(t *testing.T) {
	dir := t.TempDir()
	p := newProducer(dir, 7, 1000, 30, 2)
	if err := p.setup(); err != nil {
		t.Fatal(err)
	}
	for range 600 {
		p.tick++
		if err := p.advanceSlow(); err != nil {
			t.Fatal(err)
		}
		if err := p.step(); err != nil {
			t.Fatalf("tick %d: %v", p.tick, err)
		}
	}
	tree := readTree(t, dir)
	for rel := range p.slowAt {
		delete(tree, rel)
	}
	if len(tree) != len(p.holds) {
		t.Fatalf("folder has %d files, the producer thinks %d", len(tree), len(p.holds))
	}
	refs := map[*content]int{}
	for rel, c := range p.holds {
		refs[c]++
		data, ok := tree[rel]
		if !ok {
			t.Fatalf("%s: recorded, not on disk", rel)
		}
		if got := tracesIn(t, rel, []byte(data), c.id); got != c.traces {
			t.Fatalf("%s: %d traces of %s in the file, recorded %d", rel, got, c.id, c.traces)
		}
	}
	for _, c := range p.all {
		if c.refs != refs[c] {
			t.Fatalf("content %s: refs %d, held by %d paths", c.id, c.refs, refs[c])
		}
	}
}

// tracesIn checks that data holds traces of content id only, numbered
// from 0, and returns how many.
func tracesIn(t *testing.T, name string, data []byte, id string) int {
	t.Helper()
	keys, err := parseTraces(name, data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if keys[0].content != id {
		t.Fatalf("%s: traces of %s, want %s", name, keys[0].content, id)
	}
	return len(keys)
}

// TestSlowWriteNeverLooksWhole checks that no chunk boundary of a slow
// write leaves a file that a reader would take as complete.
func TestSlowWriteNeverLooksWhole(t *testing.T) {
	dir := t.TempDir()
	p := newProducer(dir, 3, 1000, 10, 50)
	if err := p.setup(); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if err := p.startSlow(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sw := range p.slow {
		for _, cut := range sw.cuts[:len(sw.cuts)-1] {
			part := sw.data[:cut]
			if strings.HasSuffix(sw.path, ".jsonl") {
				if part[len(part)-1] == '\n' {
					t.Fatalf("%s: a chunk ends after a newline at %d of %d", sw.path, cut, len(sw.data))
				}
			} else if json.Valid(part) {
				t.Fatalf("%s: the first %d of %d bytes are valid JSON", sw.path, cut, len(sw.data))
			}
		}
		if !slices.IsSorted(sw.cuts) || sw.cuts[len(sw.cuts)-1] != len(sw.data) {
			t.Fatalf("%s: cuts %v for %d bytes", sw.path, sw.cuts, len(sw.data))
		}
	}
}

func TestJudge(t *testing.T) {
	present := &content{id: "c1", traces: 2, refs: 1}
	gone := &content{id: "c2", traces: 1}
	neverUp := &content{id: "c3", traces: 1}
	all := []*content{present, gone, neverUp}
	good := serverView{
		live:    map[string]map[int]int{"c1": {0: 1, 1: 1}},
		creates: map[string]int{"c1": 1, "c2": 1},
		created: map[string]int{"c1": 2, "c2": 1},
		deleted: map[string]int{"c2": 1},
	}
	if v := judge(all, good); !v.ok() || v.present != 1 || v.retired != 2 || v.remoteDeleted != 1 || v.creates != 2 {
		t.Fatalf("a clean server judged %+v", v)
	}
	for _, tc := range []struct {
		name   string
		change func(*serverView)
		check  func(verdict) bool
	}{
		{"created twice, one live", func(s *serverView) { s.creates["c1"] = 2 }, func(v verdict) bool { return v.duplicates == 1 && v.liveTwice == 0 }},
		{"live twice", func(s *serverView) { s.live["c1"][0] = 2 }, func(v verdict) bool { return v.duplicates == 1 && v.liveTwice == 1 }},
		{"lost", func(s *serverView) { delete(s.live, "c1") }, func(v verdict) bool { return v.lost == 1 }},
		{"partial", func(s *serverView) { delete(s.live["c1"], 1) }, func(v verdict) bool { return v.lost == 1 }},
		{"undeleted", func(s *serverView) { s.live["c2"] = map[int]int{0: 1} }, func(v verdict) bool { return v.undeleted == 1 }},
		{"stranger", func(s *serverView) { s.created["c9"] = 1 }, func(v verdict) bool { return v.unexpected == 1 }},
		{"foreign trace", func(s *serverView) { s.foreignLive = 1; s.foreignEver = 1 }, func(v verdict) bool { return v.unexpected == 1 }},
	} {
		sv := serverView{
			live:    map[string]map[int]int{"c1": {0: 1, 1: 1}},
			creates: map[string]int{"c1": 1, "c2": 1},
			created: map[string]int{"c1": 2, "c2": 1},
			deleted: map[string]int{"c2": 1},
		}
		tc.change(&sv)
		v := judge(all, sv)
		if v.ok() || !tc.check(v) {
			t.Errorf("%s: judged %+v", tc.name, v)
		}
	}
}

// TestProxyForwardsAndCuts checks the proxy passes bytes through untouched
// at drop rate 0 and cuts every connection at drop rate ~1.
func TestProxyForwardsAndCuts(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	roundTrip := func(p *chaosProxy) ([]byte, error) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return nil, err
		}
		defer c.Close()
		msg := bytes.Repeat([]byte("0123456789"), 1000)
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return nil, err
		}
		return io.ReadAll(c)
	}

	clean, err := startProxy(echo.Addr().String(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(clean)
	if err != nil || len(got) != 10000 {
		t.Fatalf("drop rate 0: got %d bytes, err %v; want the 10000 sent", len(got), err)
	}
	clean.Close()

	cutting, err := startProxy(echo.Addr().String(), 0.999999, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		got, _ := roundTrip(cutting)
		if len(got) == 10000 {
			t.Fatalf("drop rate ~1: all 10000 bytes came back")
		}
	}
	cutting.Close()
	if cutting.drops.Load() < 5 {
		t.Fatalf("drop rate ~1: %d cuts in 5 connections", cutting.drops.Load())
	}
}

// TestCompareFolder checks the read-back: a store that matches the folder
// passes; a missed removal, a stale hash and a file the store never saw
// are each reported.
func TestCompareFolder(t *testing.T) {
	dir := t.TempDir()
	p := newProducer(dir, 11, 1000, 20, 0)
	if err := p.setup(); err != nil {
		t.Fatal(err)
	}
	for range 80 {
		p.tick++
		if err := p.step(); err != nil {
			t.Fatal(err)
		}
	}
	stored := map[string]storedFile{}
	for rel := range p.holds {
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		stored[filepath.Join(dir, rel)] = storedFile{Path: filepath.Join(dir, rel), State: "uploaded", Hash: hex.EncodeToString(sum[:])}
	}
	stored[filepath.Join(dir, "gone-long-ago.json")] = storedFile{State: "removed"}
	if m, n, err := compareFolder(dir, p, stored); err != nil || len(m) != 0 || n != len(p.holds) {
		t.Fatalf("matching store: %d files, mismatches %q, err %v", n, m, err)
	}
	files := slices.Sorted(maps.Keys(stored))
	stale, untracked := files[0], files[1]
	stored[stale] = storedFile{Path: stale, State: "uploaded", Hash: strings.Repeat("0", 64)}
	delete(stored, untracked)
	stored[filepath.Join(dir, "missed-removal.jsonl")] = storedFile{State: "uploaded"}
	m, _, err := compareFolder(dir, p, stored)
	if err != nil || len(m) != 3 {
		t.Fatalf("three faults: got %d mismatches %q, err %v", len(m), m, err)
	}
}
