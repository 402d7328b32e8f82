package main

// logscan.go owns reading the daemon's JSON log after a soak: counts of
// each message and the causes of errors.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

type msgCount struct {
	msg string
	n   int
}

// logStats is what the daemon's log says: lines by level, the most frequent
// warnings and errors, the retried failures by cause, and the rule-9
// recoveries.
type logStats struct {
	levels                       string
	top                          []msgCount
	causes                       map[string]int // "503", "429", "cut" (no HTTP answer), "changed", "other"
	uploadRetries, deleteRetries int
	recovered                    int // lost create answers resolved by adopting the traces
	changed                      int // uploads stopped before create: the file changed under them (rule 7)
	pauses                       int // the pool paused (rule 11)
}

// causeOf classifies the error of a retried failure by the fault that made it.
func causeOf(msg string) string {
	switch {
	case strings.Contains(msg, "HTTP 503"):
		return "503"
	case strings.Contains(msg, "HTTP 429"):
		return "429"
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"),
		strings.Contains(msg, "connection refused"), strings.Contains(msg, `: Post "`), strings.Contains(msg, `: Put "`),
		strings.Contains(msg, `: Delete "`), strings.Contains(msg, `: Get "`):
		return "cut"
	case strings.Contains(msg, "changed"), strings.Contains(msg, "differs from the declared size"):
		return "changed"
	}
	return "other"
}

// perPathHeads are the messages that go on to name their path or folder
// ("quarantined: PATH: why"): they count by their head, or each path would
// be a message of its own.
var perPathHeads = []string{"quarantined: ", "held back: "}

// msgKind is what a warning or error counts as: its message, or the head
// of one that names a path.
func msgKind(msg string) string {
	for _, h := range perPathHeads {
		if strings.HasPrefix(msg, h) {
			return strings.TrimSuffix(h, ": ")
		}
	}
	return msg
}

// scanLog reads the daemon's JSON log.
func scanLog(name string) logStats {
	ls := logStats{causes: map[string]int{}}
	f, err := os.Open(name)
	if err != nil {
		ls.levels = err.Error()
		return ls
	}
	defer f.Close()
	byLevel := map[string]int{}
	byMsg := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l struct {
			Level   string `json:"level"`
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			byLevel["non-JSON"]++
			continue
		}
		byLevel[l.Level]++
		if l.Level == "warn" || l.Level == "error" {
			byMsg[l.Level+": "+msgKind(l.Message)]++
		}
		switch {
		case strings.HasPrefix(l.Message, "upload failed; will retry"):
			ls.uploadRetries++
			ls.causes[causeOf(l.Error)]++
		case strings.HasPrefix(l.Message, "remote delete failed; will retry"):
			ls.deleteRetries++
			ls.causes[causeOf(l.Error)]++
		case strings.HasPrefix(l.Message, "recovered:"):
			ls.recovered++
		case strings.HasPrefix(l.Message, "file changed during its upload"):
			ls.changed++
		case strings.HasPrefix(l.Message, "uploads paused"):
			ls.pauses++
		}
	}
	var parts []string
	for k, v := range byLevel {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	ls.levels = strings.Join(parts, ", ")
	for k, v := range byMsg {
		ls.top = append(ls.top, msgCount{k, v})
	}
	slices.SortFunc(ls.top, func(a, b msgCount) int { return b.n - a.n })
	ls.top = ls.top[:min(6, len(ls.top))]
	return ls
}
