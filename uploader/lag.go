package uploader

// lag.go owns what the metrics say of growing .jsonl files: the bytes
// written and not yet sent, and how long the oldest of them has waited.

import (
	"path/filepath"
	"strings"
	"time"
)

// maxLagMarks bounds the sizes remembered per growing file.
const maxLagMarks = 16

// lagMark is a size a growing file was seen at, and when.
type lagMark struct {
	at   time.Time
	size int64
}

// lagNote is what the loop knows of one growing file's unsent bytes.
type lagNote struct {
	sent  int64     // the end of its recorded segments
	marks []lagMark // sizes seen past sent, oldest first
}

// noteGrowth records that a .jsonl was seen at size.
func (l *loop) noteGrowth(path string, size int64) {
	if !isJSONL(path) {
		return
	}
	n := l.lag[path]
	if n == nil {
		n = &lagNote{sent: -1}
		l.lag[path] = n
	}
	if len(n.marks) > 0 && n.marks[len(n.marks)-1].size >= size {
		return
	}
	if len(n.marks) == maxLagMarks {
		// Keep the oldest (it gives the age) and the newest sizes.
		n.marks = append(n.marks[:1], n.marks[2:]...)
	}
	n.marks = append(n.marks, lagMark{at: l.now(), size: size})
	l.publishLag()
}

// noteSent records that path's lines are recorded up to end.
func (l *loop) noteSent(path string, end int64) {
	n := l.lag[path]
	if n == nil {
		return
	}
	n.sent = max(n.sent, end)
	i := 0
	for i < len(n.marks) && n.marks[i].size <= n.sent {
		i++
	}
	n.marks = n.marks[i:]
	if len(n.marks) == 0 {
		delete(l.lag, path)
	}
	l.publishLag()
}

// forgetGrowth drops a path that is gone, or the paths under a folder that is.
func (l *loop) forgetGrowth(path string) {
	n := len(l.lag)
	for p := range l.lag {
		if p == path || strings.HasPrefix(p, path+string(filepath.Separator)) {
			delete(l.lag, p)
		}
	}
	if len(l.lag) != n {
		l.publishLag()
	}
}

// publishLag sets the gauges from the notes (on change only: an idle
// daemon keeps no timer for them).
func (l *loop) publishLag() {
	var behind int64
	var oldest time.Time
	for _, n := range l.lag {
		if len(n.marks) == 0 || n.sent < 0 {
			continue
		}
		behind += n.marks[len(n.marks)-1].size - n.sent
		if at := n.marks[0].at; oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	l.e.m.setLag(behind, oldest)
}
