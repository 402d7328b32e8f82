package main

// The drain of `run --drain-on-exit`: on SIGTERM the daemon does not stop
// at once. It rescans every folder, lets the files found there settle and
// uploads them, all within --shutdown-timeout, and only then stops taking
// work. A sidecar's emptyDir is lost with its pod: what a producer wrote
// just before the pod was told to stop must be sent before it goes.

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tracesync/tracesync/store"
)

// drainPoll is how often the drain looks whether every file it took is done.
const drainPoll = 100 * time.Millisecond

// drainSet is what a drain waits for: the roots whose rescan has not
// finished, and the files those rescans found not yet uploaded. The zero
// value is an idle set that records nothing.
type drainSet struct {
	mu    sync.Mutex
	on    bool
	scans map[string]bool // roots whose drain rescan is not done yet
	files map[string]bool // files the drain rescan found the store not vouching for
}

// begin starts recording for a drain of roots.
func (d *drainSet) begin(roots []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.on = true
	d.scans = make(map[string]bool, len(roots))
	for _, r := range roots {
		d.scans[r] = true
	}
	d.files = map[string]bool{}
}

// found records a file a scan met that the store does not vouch for.
func (d *drainSet) found(path string) {
	d.mu.Lock()
	if d.on {
		d.files[path] = true
	}
	d.mu.Unlock()
}

// recording reports whether a drain is recording what scans find.
func (d *drainSet) recording() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}

// scanned records that root's scan finished (or that it is gone).
func (d *drainSet) scanned(root string) {
	d.mu.Lock()
	if d.on {
		delete(d.scans, root)
	}
	d.mu.Unlock()
}

// left returns how many roots are still scanning, and drops from the set
// the files done says are done, returning how many are not.
func (d *drainSet) left(done func(path string) bool) (scans, files int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.scans) > 0 {
		return len(d.scans), len(d.files)
	}
	for p := range d.files {
		if done(p) {
			delete(d.files, p)
		}
	}
	return 0, len(d.files)
}

// drainBeforeStop takes what is on disk in every folder now and waits
// until each such file is uploaded (or quarantined, or skipped, or gone),
// or ctx ends. It returns how many files were left.
func (s *syncer) drainBeforeStop(ctx context.Context) int {
	start := time.Now()
	s.drain.begin(s.dirs)
	s.w.Rescan()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		scans, files := s.drain.left(s.drainedFile)
		if scans == 0 && files == 0 {
			s.g.log.Info().Dur("took", time.Since(start)).Msg("drained: every file on disk at the signal is uploaded")
			return 0
		}
		select {
		case <-ctx.Done():
			s.g.log.Warn().Int("files_left", files).Int("folders_not_scanned", scans).
				Msg("drain: --shutdown-timeout reached before every file on disk was uploaded; they are uploaded on the next start")
			return files + scans
		case <-tick.C:
		}
	}
}

// drainedFile reports whether the drain is done with path: it is gone, or
// the store records its present bytes in a final state.
func (s *syncer) drainedFile(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return true
	}
	rec, err := s.db.GetPath(path)
	if err != nil {
		return false
	}
	switch rec.State {
	case store.StatePending, store.StateRetrying, store.StateRemoved:
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	// The record must be of the file as it is now, not of earlier bytes.
	return rec.Dev == uint64(st.Dev) && rec.Ino == st.Ino && rec.Size == fi.Size() && rec.ModTime.Equal(fi.ModTime())
}
