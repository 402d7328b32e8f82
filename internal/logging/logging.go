// Package logging builds the zerolog logger every tracesync command uses:
// JSON lines when the output is not a terminal (journald, files, pipes), a
// human console format when it is.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// Formats lists the accepted values of --log-format.
var Formats = []string{"auto", "json", "console"}

// New returns a logger writing to w at the named level ("debug", "info",
// "warn", "error") in the named format ("auto", "json", "console"; "" is
// "auto"). Auto picks console when w is a terminal, JSON otherwise.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(level))
		if err != nil || l == zerolog.NoLevel {
			return zerolog.Nop(), fmt.Errorf("unknown --log-level %q: use debug, info, warn or error", level)
		}
		lvl = l
	}
	var out io.Writer
	switch strings.ToLower(format) {
	case "", "auto":
		if IsTerminal(w) {
			out = console(w)
		} else {
			out = w
		}
	case "json":
		out = w
	case "console":
		out = console(w)
	default:
		return zerolog.Nop(), fmt.Errorf("unknown --log-format %q: use auto, json or console", format)
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
