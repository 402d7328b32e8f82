package logging

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// journalFile creates a file and returns it with the JOURNAL_STREAM value
// ("dev:ino") systemd would set if it were the service's journal stream.
func journalFile(t *testing.T, name string) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func readLines(t *testing.T, f *os.File) []string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestJournalLinesCarryPriority(t *testing.T) {
	f, stream := journalFile(t, "journal")
	t.Setenv("JOURNAL_STREAM", stream)
	for _, format := range []string{"auto", "json"} {
		t.Run(format, func(t *testing.T) {
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			log, err := New(f, "debug", format)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug().Msg("d")
			log.Info().Msg("i")
			log.Warn().Msg("w")
			log.Error().Str("path", "/x/a.json").Msg("e")
			log.Log().Msg("nolevel")

			want := []struct{ prefix, msg string }{{"<7>", "d"}, {"<6>", "i"}, {"<4>", "w"}, {"<3>", "e"}, {"<6>", "nolevel"}}
			lines := readLines(t, f)
			if len(lines) != len(want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
			}
			for i, w := range want {
				rest, ok := strings.CutPrefix(lines[i], w.prefix)
				if !ok {
					t.Fatalf("line %d %q: want priority prefix %s (journald strips it and records the priority)", i, lines[i], w.prefix)
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(rest), &rec); err != nil {
					t.Fatalf("line %d after the prefix is not one JSON object: %q: %v", i, rest, err)
				}
				if rec["message"] != w.msg {
					t.Fatalf("line %d: message %v, want %q", i, rec["message"], w.msg)
				}
			}
		})
	}
}

func TestJournalConsoleFormatCarriesPriority(t *testing.T) {
	f, stream := journalFile(t, "journal")
	t.Setenv("JOURNAL_STREAM", stream)
	log, err := New(f, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("dropped at info")
	log.Error().Msg("upload failed")
	lines := readLines(t, f)
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (debug is below --log-level info): %q", len(lines), lines)
	}
	if !strings.HasPrefix(lines[0], "<3>") || !strings.Contains(lines[0], "upload failed") || strings.Contains(lines[0], `"message"`) {
		t.Fatalf("console line under journald: got %q, want <3> then a human line", lines[0])
	}
}

func TestNoPrefixUnlessWritingToTheJournalStream(t *testing.T) {
	f, _ := journalFile(t, "plain")
	_, otherStream := journalFile(t, "journal")
	for name, stream := range map[string]string{
		"unset":                   "",
		"inherited, other stream": otherStream, // a child whose stderr was redirected
		"garbage":                 "not-a-stream",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", stream)
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			log, err := New(f, "info", "auto")
			if err != nil {
				t.Fatal(err)
			}
			log.Error().Msg("e")
			lines := readLines(t, f)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "{") {
				t.Fatalf("JOURNAL_STREAM=%q not naming the output: got %q, want one plain JSON line", stream, lines)
			}
		})
	}
}

func TestJournalLinesDoNotInterleave(t *testing.T) {
	f, stream := journalFile(t, "journal")
	t.Setenv("JOURNAL_STREAM", stream)
	log, err := New(f, "info", "auto")
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%2 == 0 {
					log.Error().Int("g", g).Int("i", i).Msg("e")
				} else {
					log.Info().Int("g", g).Int("i", i).Msg("i")
				}
			}
		}()
	}
	wg.Wait()
	lines := readLines(t, f)
	if len(lines) != goroutines*each {
		t.Fatalf("got %d lines, want %d", len(lines), goroutines*each)
	}
	for n, l := range lines {
		var rec map[string]any
		prefix, rest := l[:3], l[3:]
		if err := json.Unmarshal([]byte(rest), &rec); err != nil {
			t.Fatalf("line %d is torn: %q", n, l)
		}
		want := map[string]string{"error": "<3>", "info": "<6>"}[rec["level"].(string)]
		if prefix != want {
			t.Fatalf("line %d: level %v with prefix %s, want %s", n, rec["level"], prefix, want)
		}
	}
}

func TestNewRejectsUnknownLevelAndFormat(t *testing.T) {
	if _, err := New(os.Stderr, "loud", "auto"); err == nil || !strings.Contains(err.Error(), "debug, info, warn or error") {
		t.Fatalf("unknown level: got %v, want an error listing the levels", err)
	}
	if _, err := New(os.Stderr, "info", "xml"); err == nil || !strings.Contains(err.Error(), "auto, json or console") {
		t.Fatalf("unknown format: got %v, want an error listing the formats", err)
	}
}
