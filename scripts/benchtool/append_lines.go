package main

// append_lines.go holds the appending writer and what is counted of its
// lines on the server: which arrived, how many times, and how late.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func salt() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writePrepared writes a valid .jsonl of about size bytes (whole lines of
// prepLine bytes, so size rounded up to a line) and returns its line count.
// One template line is rewritten in place per line: 1 GiB takes seconds.
func writePrepared(path string, size int64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	head := `{"id":"b` + salt() + `-`
	const digits = 9
	tmpl := []byte(head + strings.Repeat("0", digits) + `","pad":"`)
	tmpl = append(tmpl, bytes.Repeat([]byte("x"), prepLine-len(tmpl)-3)...)
	tmpl = append(tmpl, `"}`+"\n"...)
	w := bufio.NewWriterSize(f, 1<<20)
	n := 0
	for written := int64(0); written < size; written += int64(len(tmpl)) {
		id := strconv.Itoa(n)
		copy(tmpl[len(head):len(head)+digits], strings.Repeat("0", digits-len(id))+id)
		if _, err := w.Write(tmpl); err != nil {
			f.Close()
			return 0, err
		}
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

// writtenLine is one appended line: its id and when it was written.
type writtenLine struct {
	id string
	at time.Time
}

// writer appends n lines to a file it keeps open (O_APPEND, one write per
// line, as an agent's logger does), one every `every`, in a goroutine.
type writer struct {
	n     int
	every time.Duration
	mu    sync.Mutex
	lines []writtenLine
	done  bool
	err   error
	fin   chan struct{}
}

func startWriter(path, prefix string, n int, every time.Duration, size int) *writer {
	w := &writer{n: n, every: every, lines: make([]writtenLine, 0, n), fin: make(chan struct{})}
	go func() {
		defer close(w.fin)
		err := w.write(path, prefix, size)
		w.mu.Lock()
		w.done, w.err = true, err
		w.mu.Unlock()
	}()
	return w
}

func (w *writer) write(path, prefix string, size int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	for i := range w.n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * w.every)))
		id := fmt.Sprintf("%s%06d", prefix, i)
		at := time.Now()
		if _, err := f.Write(makeLine(id, at, size)); err != nil {
			return err
		}
		w.mu.Lock()
		w.lines = append(w.lines, writtenLine{id, at})
		w.mu.Unlock()
	}
	return nil
}

// written returns the ids written so far and whether the writer is done.
func (w *writer) written() (bool, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		return false, nil
	}
	return true, ids(w.lines)
}

// result waits for the writer and returns every line it wrote.
func (w *writer) result() ([]writtenLine, error) {
	<-w.fin
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines, w.err
}

// makeLine is one JSON line of about size bytes: its id, its write time
// and padding.
func makeLine(id string, at time.Time, size int) []byte {
	b := fmt.Appendf(nil, `{"id":%q,"written_unix_nano":%d,"pad":"`, id, at.UnixNano())
	if pad := size - len(b) - 3; pad > 0 {
		b = append(b, bytes.Repeat([]byte("x"), pad)...)
	}
	return append(b, `"}`+"\n"...)
}

func ids(lines []writtenLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.id
	}
	return out
}

func allArrived(ids []string, count map[string]int) bool {
	for _, id := range ids {
		if count[id] == 0 {
			return false
		}
	}
	return true
}

// lineTally compares the lines written with the traces on the server.
type lineTally struct {
	written   int      // lines written
	arrived   int      // of those, lines with at least one trace
	dupLines  int      // lines with more than one trace
	dupTraces int      // traces beyond the first of each line
	missing   int      // lines with no trace
	other     int      // traces of no written line (earlier lines sent again, or no id)
	examples  []string // a few missing and duplicated ids
}

func (t lineTally) String() string {
	s := fmt.Sprintf("%d lines written, %d on the server", t.written, t.arrived)
	if t.dupLines == 0 && t.missing == 0 && t.other == 0 {
		return s + ", each exactly once"
	}
	var bad []string
	if t.missing > 0 {
		bad = append(bad, fmt.Sprintf("%d MISSING", t.missing))
	}
	if t.dupLines > 0 {
		bad = append(bad, fmt.Sprintf("%d DUPLICATED (%d extra traces)", t.dupLines, t.dupTraces))
	}
	if t.other > 0 {
		bad = append(bad, fmt.Sprintf("%d OTHER traces (earlier lines sent again)", t.other))
	}
	s += ": " + strings.Join(bad, ", ")
	if len(t.examples) > 0 {
		s += " (e.g. " + strings.Join(t.examples, ", ") + ")"
	}
	return s
}

// tallyLines counts, for the written ids, how many traces the server holds
// of each (count: id -> traces; "" for traces without an id).
func tallyLines(written []string, count map[string]int) lineTally {
	t := lineTally{written: len(written)}
	mine := make(map[string]bool, len(written))
	for _, id := range written {
		mine[id] = true
		switch n := count[id]; {
		case n == 0:
			t.missing++
			if len(t.examples) < 3 {
				t.examples = append(t.examples, id+" missing")
			}
		case n > 1:
			t.arrived++
			t.dupLines++
			t.dupTraces += n - 1
			if len(t.examples) < 3 {
				t.examples = append(t.examples, fmt.Sprintf("%s x%d", id, n))
			}
		default:
			t.arrived++
		}
	}
	for id, n := range count {
		if !mine[id] {
			t.other += n
		}
	}
	return t
}

// lags returns, in ms, each written line's first created_at minus its write
// time, for the lines that arrived.
func lags(written []writtenLine, first map[string]time.Time) []float64 {
	var out []float64
	for _, l := range written {
		if c, ok := first[l.id]; ok {
			out = append(out, float64(c.Sub(l.at).Microseconds())/1000)
		}
	}
	return out
}
