// The DataDir log that keeps traces across a restart.

package stratixtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// persistLog is the DataDir's append-only log of creates and deletes, one
// JSON object a line. Writes go to a buffer under Server.mu; a goroutine
// flushes it every flushInterval, and Close flushes and syncs it.
type persistLog struct {
	f    *os.File
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
	err  error // first write error, reported by Close
}

const flushInterval = 200 * time.Millisecond

// logRecord is one line of the log.
type logRecord struct {
	Op        string          `json:"op"` // "create" or "delete"
	ID        string          `json:"id"`
	ProjectID string          `json:"project_id,omitempty"`
	CreatedAt string          `json:"created_at,omitempty"`
	Filename  string          `json:"filename,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// openPersist loads DataDir/traces.jsonl and opens it for appending.
func (s *Server) openPersist(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("stratixtest: data dir: %w", err)
	}
	name := filepath.Join(dir, "traces.jsonl")
	if err := s.load(name); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("stratixtest: open data log: %w", err)
	}
	p := &persistLog{f: f, w: bufio.NewWriterSize(f, 256<<10), stop: make(chan struct{}), done: make(chan struct{})}
	s.persist = p
	go func() {
		defer close(p.done)
		t := time.NewTicker(flushInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.mu.Lock()
				if err := p.w.Flush(); err != nil && p.err == nil {
					p.err = err
				}
				s.mu.Unlock()
			case <-p.stop:
				return
			}
		}
	}()
	return nil
}

// load replays the log. A torn last line (a crash mid-write) is skipped.
func (s *Server) load(name string) error {
	b, err := os.ReadFile(name)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stratixtest: read data log: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	skipped := 0
	for lineNo, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec logRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			skipped++
			s.log.Warn().Int("line", lineNo+1).Err(err).Msg("stratixtest: skipping unreadable line of the data log")
			continue
		}
		switch rec.Op {
		case "create":
			created, err := time.Parse(time.RFC3339Nano, rec.CreatedAt)
			if err != nil {
				skipped++
				continue
			}
			t := &trace{id: rec.ID, project: rec.ProjectID, createdAt: created.UTC(), filename: rec.Filename, data: []byte(rec.Data)}
			s.addTraceLocked(t)
			if created.After(s.lastCreated) {
				s.lastCreated = created
			}
			if rest, ok := strings.CutPrefix(rec.ID, s.idPrefix); ok {
				if n, err := strconv.ParseUint(rest, 36, 64); err == nil && n > s.seq {
					s.seq = n
				}
			}
		case "delete":
			if t := s.byID.get(rec.ID); t != nil {
				s.deleteLocked(t)
			}
		}
	}
	s.deleted = nil // deletions of earlier runs are not this run's
	s.log.Info().Int("traces", s.byID.len()).Int("skipped_lines", skipped).Str("file", name).Msg("stratixtest: loaded data log")
	return nil
}

func (s *Server) appendLocked(rec logRecord) {
	p := s.persist
	if p == nil {
		return
	}
	b, err := json.Marshal(rec)
	if err == nil {
		b = append(b, '\n')
		_, err = p.w.Write(b)
	}
	if err != nil && p.err == nil {
		p.err = err
		s.log.Error().Err(err).Msg("stratixtest: write data log")
	}
}

func (s *Server) persistCreateLocked(t *trace) {
	if s.persist == nil {
		return
	}
	s.appendLocked(logRecord{Op: "create", ID: t.id, ProjectID: t.project, CreatedAt: t.createdAt.Format(timeLayout), Filename: t.filename, Data: t.data})
}

func (s *Server) persistDeleteLocked(id string) {
	if s.persist == nil {
		return
	}
	s.appendLocked(logRecord{Op: "delete", ID: id})
}

// closePersist stops the flusher, flushes, syncs and closes the log.
func (s *Server) closePersist() {
	p := s.persist
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	s.mu.Lock()
	defer s.mu.Unlock()
	err := p.w.Flush()
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.err
	}
	if err != nil {
		s.log.Error().Err(err).Msg("stratixtest: closing data log; recent traces may be lost")
	}
	s.persist = nil
}
