package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// CheckFile reports whether the file this DB has open is still the state
// file at its path (design.md rule 15): a *FileGoneError when it was
// deleted, moved away or replaced by another file (another inode at its
// path), or when its state directory is gone; nil otherwise. A check that
// cannot tell (a stat error other than "not found", a closed or read-only
// DB) is nil, so that a passing fault does not stop a sync.
func (db *DB) CheckFile() error {
	if db.handle == nil {
		return nil
	}
	open, err := db.handle.Stat()
	if err != nil {
		return nil // closed meanwhile
	}
	atPath, err := os.Stat(db.file)
	switch {
	case err == nil && os.SameFile(open, atPath):
		return nil
	case err == nil:
		return &FileGoneError{File: db.file, What: "was replaced by another file (a different inode is at its path now: restored from a backup, or written by another program)"}
	case !errors.Is(err, fs.ErrNotExist):
		return nil
	}
	if _, err := os.Stat(db.dir); errors.Is(err, fs.ErrNotExist) {
		return &FileGoneError{File: db.file, What: "is gone: its state directory " + db.dir + " was removed or moved"}
	}
	if st, ok := open.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return &FileGoneError{File: db.file, What: "was deleted"}
	}
	return &FileGoneError{File: db.file, What: "was moved away from its path"}
}
