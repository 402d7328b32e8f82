package store

import (
	"errors"
	"fmt"
)

// ErrLocked is returned (as a *LockedError) by Open and Compact when another
// process holds the state file.
var ErrLocked = errors.New("store: state file is locked by another process")

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("store: closed")

// ErrNoTarget is returned by Update when the store was opened without a
// Target and no target has ever used this state file: there is no
// namespace to write to.
var ErrNoTarget = errors.New("store: no target: this state file has never been used by a sync")

// ErrSchemaTooNew is returned (as a *SchemaError) by Open when the file was
// written by a newer tracesync than this one.
var ErrSchemaTooNew = errors.New("store: state file written by a newer schema")

// ErrNotStateFile is returned by Open when the file is a valid bbolt
// database that tracesync did not write. It is left untouched.
var ErrNotStateFile = errors.New("store: not a tracesync state file")

// ErrNoMigration is returned (wrapped) by Open when the file's schema is
// older than this build can migrate from. It is left untouched.
var ErrNoMigration = errors.New("store: no migration from the state file's schema")

// ErrNoStateFile is returned (wrapped) by Compact when the state directory
// holds no state file.
var ErrNoStateFile = errors.New("store: no state file")

// ErrCorrupt is returned when a stored value cannot be decoded, and wraps
// the reason a file was moved aside on open (see DB.Recovered).
var ErrCorrupt = errors.New("store: corrupt record")

// LockedError says which state file is held and, when the pid file beside it
// names one, by which process.
type LockedError struct {
	File string // the state file
	PID  int    // the holder's pid from the pid file; 0 if unknown
}

// Error says what happened and what to do.
func (e *LockedError) Error() string {
	holder := "another tracesync"
	if e.PID > 0 {
		holder = fmt.Sprintf("another tracesync (pid %d)", e.PID)
	}
	return fmt.Sprintf("cannot open state %s: held by %s; stop it", e.File, holder)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// SchemaError is returned when the file's schema version is newer than this
// build knows.
type SchemaError struct {
	File  string
	Found uint32 // the version in the file
	Known uint32 // the newest version this build knows
}

// Error says what happened and what to do.
func (e *SchemaError) Error() string {
	return fmt.Sprintf("cannot open state %s: it was written by a newer tracesync (schema %d, this build knows up to %d); upgrade tracesync", e.File, e.Found, e.Known)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaTooNew }

// corruptError marks a file that cannot be read as a bbolt database, or
// that made bbolt panic; Open moves such a file aside.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return "corrupt state file: " + e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }

// ErrFileGone is returned (as a *FileGoneError) by CheckFile when the state
// file this DB has open is no longer the file at its path.
var ErrFileGone = errors.New("store: state file gone from its path")

// FileGoneError says what became of the open state file. What this DB
// records from then on goes to a file that no later Open reads.
type FileGoneError struct {
	File string // the state file's path
	What string // what happened to it: "was deleted", "was replaced by another file", ...
}

// Error says what happened and what it means; the caller says what it does
// about it.
func (e *FileGoneError) Error() string {
	return fmt.Sprintf("state file %s %s while this process had it open: what it records from now on would be lost", e.File, e.What)
}

// Is makes errors.Is(err, ErrFileGone) true.
func (e *FileGoneError) Is(target error) bool { return target == ErrFileGone }
