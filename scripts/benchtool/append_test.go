package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if !slices.Equal(v, []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}) {
		t.Errorf("percentile sorted its argument in place: %v", v)
	}
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3,1,2) = %v, want 2", got)
	}
}

func TestTallyLines(t *testing.T) {
	written := []string{"a1", "a2", "a3", "a4"}
	count := map[string]int{"a1": 1, "a2": 3, "a4": 1, "b7": 2, "": 1}
	got := tallyLines(written, count)
	want := lineTally{written: 4, arrived: 3, dupLines: 1, dupTraces: 2, missing: 1, other: 3}
	if !equalTally(got, want) {
		t.Errorf("tallyLines = %+v, want %+v", got, want)
	}
	s := tallyLines(written, count).String()
	for _, part := range []string{"1 MISSING", "1 DUPLICATED (2 extra traces)", "3 OTHER", "a2 x3", "a3 missing"} {
		if !strings.Contains(s, part) {
			t.Errorf("tally %q lacks %q", s, part)
		}
	}
	exact := tallyLines([]string{"a1", "a2"}, map[string]int{"a1": 1, "a2": 1})
	if !strings.HasSuffix(exact.String(), "each exactly once") {
		t.Errorf("exact tally = %q", exact)
	}
}

func equalTally(a, b lineTally) bool {
	a.examples, b.examples = nil, nil
	return a.written == b.written && a.arrived == b.arrived && a.dupLines == b.dupLines &&
		a.dupTraces == b.dupTraces && a.missing == b.missing && a.other == b.other
}

func TestLags(t *testing.T) {
	t0 := time.Unix(1000, 0)
	written := []writtenLine{{"a", t0}, {"b", t0.Add(time.Second)}, {"c", t0}}
	first := map[string]time.Time{"a": t0.Add(1500 * time.Millisecond), "b": t0.Add(1250 * time.Millisecond)}
	if got := lags(written, first); !slices.Equal(got, []float64{1500, 250}) {
		t.Errorf("lags = %v, want [1500 250] (c never arrived)", got)
	}
}

func TestMakeLine(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	b := makeLine("l00ab-000042", at, 1024)
	if len(b) != 1024 || b[len(b)-1] != '\n' {
		t.Fatalf("line of %d bytes, ending %q; want 1024 ending in a newline", len(b), b[len(b)-1])
	}
	var v struct {
		ID      string `json:"id"`
		Written int64  `json:"written_unix_nano"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.ID != "l00ab-000042" || v.Written != at.UnixNano() {
		t.Errorf("line %.80q: id %q, written %d, err %v", b, v.ID, v.Written, err)
	}
}

func TestWritePrepared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.jsonl")
	n, err := writePrepared(path, 10*prepLine+1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if n != 11 || len(lines) != n || len(b) != n*prepLine {
		t.Fatalf("%d lines reported, %d in a file of %d bytes; want 11 lines of %d bytes", n, len(lines), len(b), prepLine)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(l), &v); err != nil || seen[v.ID] {
			t.Fatalf("line %.60q: err %v, id %q seen before: %v", l, err, v.ID, seen[v.ID])
		}
		seen[v.ID] = true
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "64MiB": 64 << 20, "512KiB": 512 << 10, "4096": 4096, "2M": 2 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "lots"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
	if got := humanSize(1 << 30); got != "1 GiB" {
		t.Errorf("humanSize(1<<30) = %q", got)
	}
}

func TestLogWatch(t *testing.T) {
	l := &logWatch{msgs: map[string]int{}}
	_, _ = l.Write([]byte(`{"level":"warn","path":"/d/agent.jsonl","error":"too big","message":"quarantined: /d/agent.jsonl: too big"}` + "\n" + `panic: x`))
	_, _ = l.Write([]byte("\n"))
	if why, ok := l.quarantined("agent.jsonl"); !ok || why != "too big" {
		t.Errorf("quarantined = %q, %v", why, ok)
	}
	if n, why := l.lastQuarantine(); n != 1 || why != "too big" {
		t.Errorf("lastQuarantine = %d, %q; want 1, too big", n, why)
	}
	if tail := l.tail(); !strings.Contains(tail, "1x warn: quarantined") || !strings.Contains(tail, "panic: x") {
		t.Errorf("tail = %q", tail)
	}
}
