// Package logging builds the zerolog logger every tracesync command uses:
// JSON lines when the output is not a terminal (journald, files, pipes), a
// human console format when it is. When the output is the journal stream
// systemd connected (JOURNAL_STREAM), every line starts with its syslog
// priority ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug), which
// journald strips and records, so `journalctl -p err -u tracesync` shows
// the errors and journald's per-priority rate limits keep them apart from
// an info storm.
package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Formats lists the accepted values of --log-format.
var Formats = []string{"auto", "json", "console"}

// New returns a logger writing to w at the named level ("debug", "info",
// "warn", "error") in the named format ("auto", "json", "console"; "" is
// "auto"). Auto picks console when w is a terminal, JSON otherwise.
// When w is the journal stream named by $JOURNAL_STREAM (systemd sets it
// for a service's stdout and stderr), each line carries its priority as an
// sd-daemon prefix, whatever the format.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(level))
		if err != nil || l == zerolog.NoLevel {
			return zerolog.Nop(), fmt.Errorf("unknown --log-level %q: use debug, info, warn or error", level)
		}
		lvl = l
	}
	journal := isJournalStream(w, os.Getenv("JOURNAL_STREAM"))
	var useConsole bool
	switch strings.ToLower(format) {
	case "", "auto":
		useConsole = IsTerminal(w) && !journal
	case "json":
	case "console":
		useConsole = true
	default:
		return zerolog.Nop(), fmt.Errorf("unknown --log-format %q: use auto, json or console", format)
	}
	var out io.Writer = w
	switch {
	case journal && useConsole:
		jw := &journalWriter{out: w}
		jw.console = &zerolog.ConsoleWriter{Out: &jw.buf, TimeFormat: time.TimeOnly, NoColor: true}
		out = jw
	case journal:
		out = &journalWriter{out: w}
	case useConsole:
		out = console(w)
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

func console(w io.Writer) io.Writer {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !IsTerminal(w)}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// isJournalStream reports whether w is the file that journalStream
// ("DEVICE:INODE", the value of $JOURNAL_STREAM) names, as sd_journal_stream
// documents: the variable alone is not enough, since a child may inherit it
// with its output redirected elsewhere.
func isJournalStream(w io.Writer, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	var dev, ino uint64
	if n, err := fmt.Sscanf(journalStream, "%d:%d", &dev, &ino); n != 2 || err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

// priorityPrefix is the sd-daemon(3) prefix journald turns into the
// entry's PRIORITY.
func priorityPrefix(l zerolog.Level) string {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return "<7>" // debug
	case zerolog.WarnLevel:
		return "<4>" // warning
	case zerolog.ErrorLevel:
		return "<3>" // err
	case zerolog.FatalLevel, zerolog.PanicLevel:
		return "<2>" // crit
	}
	return "<6>" // info, and lines without a level
}

// journalWriter prefixes each log line with its priority and writes prefix
// and line in one write, so concurrent lines never interleave.
type journalWriter struct {
	out     io.Writer
	console *zerolog.ConsoleWriter // nil: JSON lines as they are; else formats into buf

	mu  sync.Mutex   // guards buf and orders writes to out
	buf bytes.Buffer // one line being assembled
}

// Write writes a line that has no level (zerolog's Log()) as info.
func (j *journalWriter) Write(p []byte) (int, error) { return j.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel writes one line at level l.
func (j *journalWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	j.buf.WriteString(priorityPrefix(l))
	if j.console != nil {
		if _, err := j.console.Write(p); err != nil {
			return 0, err
		}
	} else {
		j.buf.Write(p)
	}
	if _, err := j.out.Write(j.buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
