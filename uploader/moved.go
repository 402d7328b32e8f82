package uploader

// moved.go owns telling a file moved to a name the include patterns skip
// (log rotation: app.jsonl to app.jsonl.1) from a file removed: a move
// deletes nothing remotely.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tracesync/tracesync/store"
)

// maxMoveChecks bounds the names looked at for one file.
const maxMoveChecks = 64

// dirListTTL is how long a folder's listing is reused: a burst of
// removals in one folder lists it once.
const dirListTTL = time.Second

// dirList is a folder's names, sorted, and when they were read.
type dirList struct {
	at    time.Time
	names []string
}

// movedAway reports whether the file prev described, no longer at path
// (removed, or replaced by another file), is still in the same folder
// under another name that starts with its stem; it logs the move. now is
// the identity of the file at path now (zero: none).
func (l *loop) movedAway(path string, prev store.PathRecord, now fileID) bool {
	if !l.e.cfg.DeleteOnRemove || prev.Path == "" || prev.State == store.StateRemoved || (prev.Dev == 0 && prev.Ino == 0) {
		return false
	}
	if now.Dev == prev.Dev && now.Ino == prev.Ino {
		return false // the same file, rewritten
	}
	to, ok := l.findMoved(path, prev.Dev, prev.Ino)
	if ok {
		l.e.log.Info().Str("path", path).Str("to", to).Msg("rotated: " + path + " -> " + to + " (moved, not gone: nothing deleted)")
	}
	return ok
}

// findMoved looks in path's folder, among the names that start with its
// stem, for the file dev/ino.
func (l *loop) findMoved(path string, dev, ino uint64) (string, bool) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	names := l.listDir(dir)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	i, _ := slices.BinarySearch(names, stem)
	for checked := 0; i < len(names) && strings.HasPrefix(names[i], stem) && checked < maxMoveChecks; i++ {
		if names[i] == base {
			continue
		}
		checked++
		p := filepath.Join(dir, names[i])
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if id := identity(fi); id.Dev == dev && id.Ino == ino {
			return p, true
		}
	}
	return "", false
}

// listDir returns dir's names, sorted, reading it at most once a dirListTTL.
func (l *loop) listDir(dir string) []string {
	now := time.Now()
	if d, ok := l.dirs[dir]; ok && now.Sub(d.at) < dirListTTL {
		return d.names
	}
	if len(l.dirs) >= 64 {
		clear(l.dirs)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	slices.Sort(names)
	l.dirs[dir] = dirList{at: now, names: names}
	return names
}
