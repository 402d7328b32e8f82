package logging

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestDurationsAreIntegerMillisecondsInJSON(t *testing.T) {
	var buf strings.Builder
	log, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Warn().Dur("retry_in", 546588233*time.Nanosecond).Dur("duration", 1500*time.Millisecond).Msg("upload failed; will retry")
	d := json.NewDecoder(strings.NewReader(buf.String()))
	d.UseNumber()
	var rec map[string]any
	if err := d.Decode(&rec); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	for k, want := range map[string]string{"retry_in": "546", "duration": "1500"} {
		if got := fmt.Sprint(rec[k]); got != want {
			t.Errorf("JSON %s = %s, want %s (integer milliseconds) in %s", k, got, want, buf.String())
		}
	}
}

func TestDurationsAreReadableInConsole(t *testing.T) {
	var buf strings.Builder
	log, err := New(&buf, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Warn().Dur("retry_in", 546588233*time.Nanosecond).Dur("duration", 1500*time.Millisecond).
		Dur("took", 10*time.Minute).Int("attempt", 1).Msg("upload failed; will retry")
	line := buf.String()
	for _, want := range []string{"retry_in=546ms", "duration=1.5s", "took=10m", "attempt=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("console line lacks %q: %q", want, line)
		}
	}
}

func TestJournalConsoleDurationsKeepPriority(t *testing.T) {
	f, stream := journalFile(t, "journal")
	t.Setenv("JOURNAL_STREAM", stream)
	log, err := New(f, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Error().Dur("retry_in", 2500*time.Millisecond).Msg("cannot start syncing yet; retrying")
	lines := readLines(t, f)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "<3>") || !strings.Contains(lines[0], "retry_in=2.5s") {
		t.Fatalf("journald console line: got %q, want <3> and retry_in=2.5s", lines)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                            "0ms",
		400 * time.Microsecond:       "0ms",
		546588233:                    "546ms",
		time.Second:                  "1s",
		1549 * time.Millisecond:      "1.5s",
		42 * time.Second:             "42s",
		10 * time.Minute:             "10m",
		90*time.Minute + time.Second: "1h30m1s",
		90 * time.Minute:             "1h30m",
		720 * time.Hour:              "720h",
		-2 * time.Second:             "-2s",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", time.Duration(d), got, want)
		}
	}
}

// Every duration field logged anywhere in the module must be listed in
// DurationFields, or the console prints it as bare milliseconds.
func TestEveryDurFieldIsListed(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	listed := map[string]bool{}
	for _, k := range DurationFields {
		listed[k] = true
	}
	durField := regexp.MustCompile(`\.Durs?\("([^"]+)"`)
	found := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "depstmp") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range durField.FindAllSubmatch(src, -1) {
			found++
			if !listed[string(m[1])] {
				t.Errorf("%s logs the duration field %q, which DurationFields does not list", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatalf("no Dur field found under %s: the scan is broken", root)
	}
}

// A console line shows 12 hex digits of a hash and paths relative to their
// watched root; the JSON line of the same event keeps both whole.
func TestConsoleShortensHashesAndPaths(t *testing.T) {
	const hash = "559c70c406bb84cf2d5f08ab8e2332a8b3d4945d6da90dd77280d2f7de74f94a"
	root := filepath.Join(string(filepath.Separator), "srv", "traces", "drop")
	path := filepath.Join(root, "team", "eval.jsonl")
	emit := func(format string, dirs ...string) string {
		var buf strings.Builder
		roots := &Roots{}
		log, err := NewWithOptions(&buf, "info", format, Options{Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		roots.Set(dirs)
		log.Warn().Str("path", path).Str("hash", hash).Strs("paths", []string{path}).Str("root", root).
			Str("error", "read "+path+": permission denied").Msg("cannot read")
		return buf.String()
	}

	line := emit("console", root)
	for _, want := range []string{"path=team/eval.jsonl", "hash=559c70c406bb ", "paths=[\"team/eval.jsonl\"]", "error=\"read team/eval.jsonl: permission denied\"", "root=" + root} {
		if !strings.Contains(line, want) {
			t.Errorf("console line lacks %q: %q", want, line)
		}
	}
	if strings.Contains(line, hash) {
		t.Errorf("console line shows the whole hash: %q", line)
	}

	two := emit("console", root, filepath.Join(string(filepath.Separator), "srv", "other"))
	if !strings.Contains(two, "path=drop/team/eval.jsonl") {
		t.Errorf("with two roots, the console line should name the root's folder: %q", two)
	}

	js := emit("json", root)
	for _, want := range []string{`"path":"` + path + `"`, `"hash":"` + hash + `"`} {
		if !strings.Contains(js, want) {
			t.Errorf("JSON line lacks %s: %s", want, js)
		}
	}
}

// A console line names a path once: a field whose value the message already
// says is left out; JSON keeps the field.
func TestConsoleDropsFieldsTheMessageSays(t *testing.T) {
	root := filepath.Join(string(filepath.Separator), "srv", "drop")
	for _, format := range []string{"console", "json"} {
		var buf strings.Builder
		roots := &Roots{}
		roots.Set([]string{root})
		log, err := NewWithOptions(&buf, "info", format, Options{Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Str("path", filepath.Join(root, "b.json")).Str("result", "ok").Str("reason", "renamed").
			Msg("renamed: " + filepath.Join(root, "a.json") + " -> " + filepath.Join(root, "b.json"))
		line := buf.String()
		switch format {
		case "console":
			if strings.Contains(line, "path=") || !strings.Contains(line, "renamed: a.json -> b.json") || !strings.Contains(line, "result=ok") || !strings.Contains(line, "reason=renamed") {
				t.Errorf("console: want the message with short paths, no path field, result=ok, reason=renamed (a word, not a repeat): %q", line)
			}
		case "json":
			if !strings.Contains(line, `"path":"`+filepath.Join(root, "b.json")+`"`) {
				t.Errorf("json: want the path field whole: %q", line)
			}
		}
	}
}
