package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// jsonMessages decodes the messages of JSON log lines with their levels.
func jsonMessages(t *testing.T, logs string) (msgs []string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec struct{ Level, Message string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		msgs = append(msgs, rec.Level+" "+rec.Message)
	}
	return msgs
}

func countPrefix(msgs []string, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// The daemon says what it watches after the first scan, one line when it
// is asked to stop and one when it has stopped; a prune that pruned
// nothing says so at debug level only.
func TestRunTellsWatchingStoppingStopped(t *testing.T) {
	w := newCheckConfigWorld(t)
	writeFile(t, w.folder, "a.json", traceJSON("a"))
	logged := runUntil(t, w.env, []string{"--log-level", "debug", "--settle", "50ms", w.folder}, func(stderr string) bool {
		return strings.Contains(stderr, `"message":"nothing to prune"`) && strings.Contains(stderr, `"message":"uploaded"`)
	})
	msgs := jsonMessages(t, logged)
	for _, want := range []struct {
		prefix string
		n      int
	}{
		{"info watching 1 folder, 1 file", 1},
		{"info stopping:", 1},
		{"info stopped", 1},
		{"info pruned", 0},
	} {
		if got := countPrefix(msgs, want.prefix); got != want.n {
			t.Errorf("%d lines %q, want %d in:\n%s", got, want.prefix, want.n, strings.Join(msgs, "\n"))
		}
	}
}
