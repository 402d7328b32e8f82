package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressSnapshot is what a backfill has done so far, as the progress
// display and the summary show it. Done counts every file that reached a
// final state (uploaded, linked, skipped, quarantined, failed).
type progressSnapshot struct {
	FilesTotal int
	FilesDone  int
	BytesTotal int64
	BytesDone  int64

	Uploaded    int
	Linked      int
	Skipped     int
	Quarantined int
	Failed      int
	Retrying    int
}

// progressPrinter draws backfill progress: a bar redrawn in place on a
// terminal, a plain line every interval otherwise. Time comes from the
// caller, so the output is a pure function of its inputs.
type progressPrinter struct {
	w        io.Writer
	terminal bool
	width    int // bar width in characters on a terminal
	start    time.Time

	lastLine time.Time // when the last plain line was written
	interval time.Duration
	drawn    bool    // a bar is on screen (terminal) and must be cleared before other output
	last     *string // the bar last drawn, to redraw it after a log line

	// mu serializes writes to w when log lines share it (barLogWriter);
	// callers of Update and Clear hold it then.
	mu sync.Mutex
}

func newProgressPrinter(w io.Writer, terminal bool, start time.Time, interval time.Duration) *progressPrinter {
	return &progressPrinter{w: w, terminal: terminal, width: 24, start: start, interval: interval}
}

// Update shows snap as of now. On a terminal it redraws the bar; otherwise
// it prints a line when interval has passed since the last one.
func (p *progressPrinter) Update(snap progressSnapshot, now time.Time) {
	if p.terminal {
		line := p.barLine(snap, now)
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.drawn = true
		p.last = &line
		return
	}
	if !p.lastLine.IsZero() && now.Sub(p.lastLine) < p.interval {
		return
	}
	p.lastLine = now
	fmt.Fprintln(p.w, p.plainLine(snap, now))
}

// Clear removes the bar from a terminal line so a summary can follow.
func (p *progressPrinter) Clear() {
	if p.terminal && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progressPrinter) barLine(s progressSnapshot, now time.Time) string {
	frac := fraction(s)
	filled := int(frac * float64(p.width))
	bar := strings.Repeat("=", filled)
	if filled < p.width {
		bar += ">" + strings.Repeat(" ", p.width-filled-1)
	}
	return fmt.Sprintf("[%s] %3.0f%% %s/%s files  %s/%s  %s  ETA %s",
		bar, frac*100, count(s.FilesDone), count(s.FilesTotal), humanBytes(s.BytesDone), humanBytes(s.BytesTotal),
		p.rate(s, now), p.eta(s, now))
}

func (p *progressPrinter) plainLine(s progressSnapshot, now time.Time) string {
	line := fmt.Sprintf("progress: %d/%d files, %s/%s, %s, ETA %s (uploaded %d, linked %d, skipped %d, quarantined %d",
		s.FilesDone, s.FilesTotal, humanBytes(s.BytesDone), humanBytes(s.BytesTotal), p.rate(s, now), p.eta(s, now),
		s.Uploaded, s.Linked, s.Skipped, s.Quarantined)
	if s.Failed > 0 {
		line += fmt.Sprintf(", failed %d", s.Failed)
	}
	if s.Retrying > 0 {
		line += fmt.Sprintf(", retrying %d", s.Retrying)
	}
	return line + ")"
}

// rate is files and bytes per second since start.
func (p *progressPrinter) rate(s progressSnapshot, now time.Time) string {
	el := now.Sub(p.start).Seconds()
	if el <= 0 {
		return "0 files/s"
	}
	return fmt.Sprintf("%.0f files/s %s/s", float64(s.FilesDone)/el, humanBytes(int64(float64(s.BytesDone)/el)))
}

// eta estimates the time left from the bytes rate (files rate when no
// bytes are known), or "?" before anything is done.
func (p *progressPrinter) eta(s progressSnapshot, now time.Time) string {
	el := now.Sub(p.start)
	frac := fraction(s)
	if frac <= 0 || el <= 0 {
		return "?"
	}
	if frac >= 1 {
		return "0s"
	}
	left := time.Duration(float64(el) * (1 - frac) / frac)
	return left.Round(time.Second).String()
}

// fraction is how much of the work is done, by bytes when sizes are known,
// by files otherwise.
func fraction(s progressSnapshot) float64 {
	var f float64
	switch {
	case s.BytesTotal > 0:
		f = float64(s.BytesDone) / float64(s.BytesTotal)
	case s.FilesTotal > 0:
		f = float64(s.FilesDone) / float64(s.FilesTotal)
	}
	if f > 1 {
		f = 1
	}
	return f
}

// count formats n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// countOf formats n with thousands separators and the noun that agrees
// with it: countOf(1, "file", "files") is "1 file". Every count printed
// next to a noun goes through it.
func countOf(n int, one, many string) string {
	return count(n) + " " + pluralize(n, one, many)
}

// humanBytes formats n in binary units (KiB, MiB, GiB).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
