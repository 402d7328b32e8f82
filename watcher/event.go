// Package watcher turns folders into a stream of events: this path is ready
// (settled and stable), this path is gone, a scan finished, a root vanished.
//
// It knows nothing of uploads, hashes or the store: the engine tells it what
// it already knows through Config.Known, and sends paths back to settling
// with Resettle.
package watcher

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"
)

// Stat is the identity of a file's bytes as the restart fast path sees it.
type Stat struct {
	Dev     uint64
	Ino     uint64
	Size    int64
	ModTime time.Time
	Mode    fs.FileMode
}

// Kind says what an Event means.
type Kind uint8

const (
	// Ready: Path has settled (no event for the settle time, size and mtime
	// stable across two stats). Stat is the second stat. A growing .jsonl
	// is also Ready, with Growing set, once it has changed for MaxLag
	// without settling: its complete lines may be taken.
	Ready Kind = iota + 1
	// Removed: Path (a file, or a directory and everything under it) has
	// been gone for the removal grace period. The consumer verifies with
	// lstat before acting.
	Removed
	// Incomplete: Path has been sent back to settling by Resettle for
	// longer than the settle timeout.
	Incomplete
	// ScanDone: a full scan of Root finished (initial, periodic, overflow or
	// requested). Scan says what it met.
	ScanDone
	// RootGone: Root is missing, not a directory, on another device than
	// when first seen, or lacks its marker file. Reason says which. The
	// consumer must not treat its files as removed.
	RootGone
	// RootBack: Root is usable again; a full scan follows.
	RootBack
)

func (k Kind) String() string {
	switch k {
	case Ready:
		return "ready"
	case Removed:
		return "removed"
	case Incomplete:
		return "incomplete"
	case ScanDone:
		return "scan-done"
	case RootGone:
		return "root-gone"
	case RootBack:
		return "root-back"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ScanSummary describes one finished full scan of a root.
type ScanSummary struct {
	Files     int    // files matched by the include/exclude rules
	Unchanged int    // of those, answered "unchanged" by Config.Known (not reported Ready)
	Errors    int    // I/O errors met (permission denied, EIO, ...); >0 means the scan is not trustworthy for removals
	FirstErr  string // the first error, for the log
	RootDev   uint64 // the device the root is on
	Started   time.Time
	// Keyed: Seen holds the PathKey under Seed of every file the scan
	// matched, sorted, so the consumer finds the tracked paths it did not
	// meet without touching the file system (4 bytes a file while the
	// scan lasts).
	Keyed bool
	Seed  uint64
	Seen  []uint32
}

// PathKey is the key of path in ScanSummary.Seen under seed: its 64-bit
// FNV-1a hash from a seeded basis, mixed and cut to 32 bits. Two paths
// share a key now and then (a few pairs among a million): the consumer
// then takes a gone path for present, and a later scan, under another
// seed, finds it gone; never the reverse.
func PathKey[P ~string | ~[]byte](seed uint64, path P) uint32 {
	return finishKey(fnvAdd(fnvOffset^seed, path))
}

const fnvOffset = 14695981039346656037

func fnvAdd[P ~string | ~[]byte](h uint64, s P) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// finishKey mixes a hash's bits (murmur3's finalizer) and keeps 32.
func finishKey(h uint64) uint32 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h >> 32)
}

// dirKey is PathKey's hash after dir and a separator: pathKeyIn finishes
// it with a name, so a scan keys a directory's files without building
// their paths.
func dirKey(seed uint64, dir string) uint64 {
	if dir == string(filepath.Separator) {
		return fnvAdd(fnvOffset^seed, dir)
	}
	return fnvAdd(fnvAdd(fnvOffset^seed, dir), string(filepath.Separator))
}

// pathKeyIn is PathKey(seed, joinName(dir, name)) from dirKey(seed, dir).
func pathKeyIn(dirKey uint64, name string) uint32 { return finishKey(fnvAdd(dirKey, name)) }

// File is a regular file a scan met: its name in its directory, and its Stat.
type File struct {
	Name string
	Stat Stat
}

// Saw reports whether a scan with keys met path.
func (s *ScanSummary) Saw(path string) bool { return s.SawKey(PathKey(s.Seed, path)) }

// SawKey reports whether a scan with keys met a path of this key
// (PathKey under the scan's Seed).
func (s *ScanSummary) SawKey(key uint32) bool {
	_, ok := slices.BinarySearch(s.Seen, key)
	return ok
}

// Event is one thing the watcher tells its consumer.
type Event struct {
	Kind   Kind
	Root   string // the configured root (absolute, cleaned) the event belongs to
	Path   string // absolute; empty for ScanDone, RootGone, RootBack
	Stat   Stat   // for Ready
	Scan   ScanSummary
	Reason string // for RootGone and Incomplete: human-readable why
	// Growing: a Ready for a .jsonl still being written (MaxLag passed):
	// only its complete lines may be taken, not a last line without a
	// newline.
	Growing bool
}
