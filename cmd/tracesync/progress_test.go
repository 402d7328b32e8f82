package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressPlainLinesAreThrottled(t *testing.T) {
	var out bytes.Buffer
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgressPrinter(&out, false, start, 5*time.Second)
	snap := progressSnapshot{FilesTotal: 100, FilesDone: 10, BytesTotal: 100 << 20, BytesDone: 10 << 20, Uploaded: 8, Linked: 1, Skipped: 1}
	p.Update(snap, start.Add(1*time.Second))
	p.Update(snap, start.Add(3*time.Second)) // within the interval: no line
	snap.FilesDone, snap.BytesDone, snap.Quarantined = 50, 50<<20, 2
	p.Update(snap, start.Add(10*time.Second))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2 (one per 5s interval):\n%s", len(lines), out.String())
	}
	want := "progress: 50/100 files, 50.0 MiB/100.0 MiB, 5 files/s 5.0 MiB/s, ETA 10s (uploaded 8, linked 1, skipped 1, quarantined 2)"
	if lines[1] != want {
		t.Errorf("line:\n got %q\nwant %q", lines[1], want)
	}
	if strings.Contains(out.String(), "\r") {
		t.Errorf("plain output has carriage returns: %q", out.String())
	}
}

func TestProgressBarOnTerminal(t *testing.T) {
	var out bytes.Buffer
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgressPrinter(&out, true, start, time.Second)
	p.width = 10
	p.Update(progressSnapshot{FilesTotal: 4, FilesDone: 1, BytesTotal: 4000, BytesDone: 1000}, start.Add(2*time.Second))
	want := "\r\x1b[K[==>       ]  25% 1/4 files  1000 B/3.9 KiB  0 files/s 500 B/s  ETA 6s"
	if out.String() != want {
		t.Fatalf("bar:\n got %q\nwant %q", out.String(), want)
	}
	out.Reset()
	p.Clear()
	if out.String() != "\r\x1b[K" {
		t.Fatalf("Clear wrote %q, want the line erased", out.String())
	}
	out.Reset()
	p.Clear()
	if out.Len() != 0 {
		t.Fatalf("second Clear wrote %q, want nothing", out.String())
	}
}

func TestProgressETAUnknownBeforeAnyWork(t *testing.T) {
	start := time.Now()
	p := newProgressPrinter(&bytes.Buffer{}, false, start, time.Second)
	if got := p.eta(progressSnapshot{FilesTotal: 10}, start.Add(time.Second)); got != "?" {
		t.Fatalf("eta with nothing done = %q, want ?", got)
	}
	if got := p.eta(progressSnapshot{FilesTotal: 10, FilesDone: 10}, start.Add(time.Second)); got != "0s" {
		t.Fatalf("eta when done = %q, want 0s", got)
	}
}

func TestCountAndHumanBytes(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 50 << 20: "50.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// The summary's "read" and rate count the files and bytes read, not a file
// refused unread for its size, and every count agrees with its noun.
func TestBackfillSummaryCountsWhatWasRead(t *testing.T) {
	s := &backfillSummary{elapsed: time.Second, uploaded: 1, bytesUploaded: 1024, filesDone: 2, filesRead: 1, bytesDone: 1024, quarantined: 1}
	var b strings.Builder
	s.write(&b)
	out := b.String()
	for _, want := range []string{"1 file read, 1.0 KiB; 1 file refused unread", "rate         1 files/s, 1.0 KiB/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestCountOf(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 files"}, {1, "1 file"}, {2, "2 files"}, {3013, "3,013 files"}} {
		if got := countOf(tc.n, "file", "files"); got != tc.want {
			t.Errorf("countOf(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
