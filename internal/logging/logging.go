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
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Formats lists the accepted values of --log-format.
var Formats = []string{"auto", "json", "console"}

// DurationFields are the names of the duration fields tracesync logs
// (zerolog's Dur). In JSON lines they are integer milliseconds; the console
// format prints them for people instead ("546ms", "1.5s", "10m"). A test
// checks that every Dur field in the repository is listed here.
var DurationFields = []string{
	"duration",         // one upload attempt (presign, PUT, create)
	"retry_in",         // wait before the next attempt
	"probe_every",      // interval of the paused pool's probe
	"every",            // polling interval
	"took",             // how long a scan took
	"shutdown_timeout", // --shutdown-timeout
	"retention",        // --retention
	"latency",          // stratix-fake's injected latency
}

// durationsOnce sets zerolog's process-wide duration encoding once, before
// the first logger exists: Dur fields are integer milliseconds in JSON
// (zerolog's default is a float, e.g. 546.588233).
var durationsOnce sync.Once

func setDurationEncoding() {
	durationsOnce.Do(func() {
		zerolog.DurationFieldUnit = time.Millisecond
		zerolog.DurationFieldFormat = zerolog.DurationFormatInt
	})
}

// Roots is the set of watched folders a console log shortens paths
// against. Commands know their folders only after the logger exists, so
// they hand one in at once and Set it later. The zero value knows no root.
type Roots struct {
	mu   sync.RWMutex // guards dirs: set by the command, read by every console line
	dirs []string
}

// Set records the watched folders (absolute, clean). On a nil Roots it
// does nothing, as a logger without roots keeps paths whole.
func (r *Roots) Set(dirs []string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append([]string(nil), dirs...)
}

// shorten makes paths under a root relative to it in s: "x.json" under the
// only root, "drop/x.json" (the root's base name first) when there are
// several, so two roots' files stay apart.
func (r *Roots) shorten(s string) string {
	if r == nil || !strings.Contains(s, string(filepath.Separator)) {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, dir := range r.dirs {
		prefix := dir + string(filepath.Separator)
		if dir == string(filepath.Separator) || !strings.Contains(s, prefix) {
			continue
		}
		repl := ""
		if len(r.dirs) > 1 {
			repl = filepath.Base(dir) + string(filepath.Separator)
		}
		s = strings.ReplaceAll(s, prefix, repl)
	}
	return s
}

// Options are what a logger may know beyond level and format.
type Options struct {
	// Roots, when not nil, are the watched folders: console lines show
	// the paths under them relative to them. JSON lines keep every path
	// whole. Nil: paths as logged.
	Roots *Roots
}

// New returns a logger writing to w at the named level ("debug", "info",
// "warn", "error") in the named format ("auto", "json", "console"; "" is
// "auto"). Auto picks console when w is a terminal, JSON otherwise.
// When w is the journal stream named by $JOURNAL_STREAM (systemd sets it
// for a service's stdout and stderr), each line carries its priority as an
// sd-daemon prefix, whatever the format.
//
// Duration fields (DurationFields) are integer milliseconds in JSON and
// readable durations in the console format.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	return NewWithOptions(w, level, format, Options{})
}

// NewWithOptions is New with opts. The console format shows the first 12
// hex digits of a content hash and paths under opts.Roots relative to
// them, so a line fits a terminal; JSON lines keep everything.
func NewWithOptions(w io.Writer, level, format string, opts Options) (zerolog.Logger, error) {
	setDurationEncoding()
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
		jw.console = &zerolog.ConsoleWriter{Out: &jw.buf, TimeFormat: time.TimeOnly, NoColor: true, FormatPrepare: forPeople(opts.Roots)}
		out = jw
	case journal:
		out = &journalWriter{out: w}
	case useConsole:
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !IsTerminal(w), FormatPrepare: forPeople(opts.Roots)}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

// forPeople prepares a console line's fields: readable durations, short
// hashes, paths relative to roots, and no field that only repeats what the
// message says (a path the message names).
func forPeople(roots *Roots) func(map[string]any) error {
	return func(fields map[string]any) error {
		if err := readableDurations(fields); err != nil {
			return err
		}
		for k, v := range fields {
			switch v := v.(type) {
			case string:
				fields[k] = shortText(v, roots)
			case []any:
				for i, e := range v {
					if s, ok := e.(string); ok {
						v[i] = shortText(s, roots)
					}
				}
			}
		}
		msg, _ := fields[zerolog.MessageFieldName].(string)
		for k, v := range fields {
			s, ok := v.(string)
			if ok && saysMore(s) && k != zerolog.MessageFieldName && k != zerolog.LevelFieldName &&
				k != zerolog.TimestampFieldName && strings.Contains(msg, s) {
				delete(fields, k)
			}
		}
		return nil
	}
}

// saysMore reports whether a field value is one a message cannot contain by
// chance: a file name or path, or a long text such as an error. A short
// word ("invalid", "ok") may just be a word of the message.
func saysMore(s string) bool {
	return len(s) >= 12 || (len(s) >= 3 && strings.ContainsAny(s, "./"))
}

// fullHash matches a SHA-256 in hex, as content hashes are logged.
var fullHash = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// shortHashDigits is how many hex digits of a hash a console line shows:
// enough to tell contents apart by eye and to grep the JSON logs.
const shortHashDigits = 12

func shortText(s string, roots *Roots) string {
	if len(s) >= 64 {
		s = fullHash.ReplaceAllStringFunc(s, func(h string) string { return h[:shortHashDigits] })
	}
	return roots.shorten(s)
}

// readableDurations replaces, in a console line's fields, the duration
// fields' milliseconds by a readable duration.
func readableDurations(fields map[string]any) error {
	for _, k := range DurationFields {
		n, ok := fields[k].(json.Number)
		if !ok {
			continue
		}
		if ms, err := n.Int64(); err == nil {
			fields[k] = Duration(time.Duration(ms) * time.Millisecond)
		} else if f, err := n.Float64(); err == nil {
			fields[k] = Duration(time.Duration(f * float64(time.Millisecond)))
		}
	}
	return nil
}

// Duration formats d for people: "0ms", "546ms", "1.5s", "42s", "10m",
// "1h30m", "720h".
func Duration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		s = strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		s = strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + "s"
	default:
		s = d.Round(time.Second).String() // 10m0s, 1h30m0s, 720h0m0s
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	if neg {
		s = "-" + s
	}
	return s
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
