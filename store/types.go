// Package store is tracesync's memory: one bbolt file that records, per
// target (base URL + organization + project), what each local path holds,
// which traces each content became, the upload intents that make a crash
// safe, and the remote deletes still to do.
//
// It knows nothing of HTTP, fsnotify or the rules of syncing: the uploader
// decides, the store keeps what was decided, durably and consistently.
package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Hash is the SHA-256 of a content's exact bytes (design.md rule 1).
type Hash [32]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether the hash is unset (a path not hashed yet).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses a 64-character hex SHA-256.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("parse hash %q: want 64 hex characters", s)
	}
	copy(h[:], b)
	return h, nil
}

// State is where a path stands. The names are user-facing: they appear in
// `tracesync status`, `tracesync files --state` and the metrics.
type State string

const (
	// StatePending: seen and not yet uploaded (settling, queued, hashing or in flight).
	StatePending State = "pending"
	// StateRetrying: a transient failure happened; NextAttempt says when the next try is.
	StateRetrying State = "retrying"
	// StateUploaded: the path's content has traces (uploaded, or linked to an earlier upload).
	StateUploaded State = "uploaded"
	// StateQuarantined: it can never succeed as it is; LastError says why.
	// It is retried when its bytes change or on `tracesync retry`.
	StateQuarantined State = "quarantined"
	// StateIncomplete: a backfill, which waits for nothing, found the file
	// not whole (a .json cut mid-value); the next run or backfill reads it again.
	StateIncomplete State = "incomplete"
	// StateSkipped: nothing to upload (an empty file).
	StateSkipped State = "skipped"
	// StateRemoved: the file is gone; the record is kept for the retention period, then pruned.
	StateRemoved State = "removed"
)

// States lists every state in display order.
var States = []State{StatePending, StateRetrying, StateUploaded, StateQuarantined, StateIncomplete, StateSkipped, StateRemoved}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// PathRecord is what the store knows of one local path.
type PathRecord struct {
	Path string // absolute and cleaned; the key
	Root string // the watched root the path was found under

	Hash    Hash // zero until the path has been hashed
	Size    int64
	ModTime time.Time
	Dev     uint64
	Ino     uint64

	State       State
	Attempts    int       // upload attempts for the current content; reset when the content changes
	NextAttempt time.Time // zero means as soon as possible
	LastError   string    // the last failure, user-facing: what happened and what to do

	FirstSeen time.Time
	UpdatedAt time.Time
	RemovedAt time.Time // set when State is StateRemoved

	// A growing .jsonl is a chain of segments (design.md, appended files):
	// Hash is then the last segment, the bytes [Start, End) of the file,
	// and Prior counts the segments before it, all uploaded (Tx.Chain
	// lists them). A whole file has Start 0 and End 0 (it ends at Size)
	// and no Prior.
	Prior int
	Start int64
	End   int64
	// Print fingerprints the file's bytes up to End, so an append is
	// checked without reading the file again; zero when not taken.
	Print Print
	// More: the last segment was cut at the size limit and more of the
	// file follows, so the file is not done even if it has not changed.
	More bool
}

// Segment is one uploaded part of a growing file: the content Hash holds
// the file's bytes from the previous segment's End (or 0) up to End.
type Segment struct {
	Hash Hash
	End  int64
}

// Print is what a growing file must still hold for an append to continue
// its chain: the SHA-256 (first 16 bytes) of its first bytes and of the
// bytes just before the recorded end, up to PrintSpan each.
type Print struct {
	Head [16]byte
	Tail [16]byte
}

// PrintSpan is how many bytes each half of a Print covers at most.
const PrintSpan = 4096

// IsZero reports whether no print was taken.
func (p Print) IsZero() bool { return p == Print{} }

// SegEnd is where the path's last segment ends: End, or Size for a whole file.
func (r PathRecord) SegEnd() int64 {
	if r.End == 0 && r.Start == 0 {
		return r.Size
	}
	return r.End
}

// chained reports whether the record was read as a chain of segments.
func (r *PathRecord) chained() bool {
	return r.Prior > 0 || r.Start != 0 || r.End != 0 || !r.Print.IsZero() || r.More
}

// Segments is how many segments the path's chain holds (1 for a whole file).
func (r PathRecord) Segments() int {
	if r.Hash.IsZero() {
		return 0
	}
	return r.Prior + 1
}

// Content is one distinct content (by hash) that has been uploaded.
type Content struct {
	Hash       Hash
	Filename   string // the basename it was uploaded as
	Size       int64
	TraceIDs   []string
	UploadedAt time.Time
}

// Phase is how far an upload intent got.
type Phase uint8

const (
	// PhasePresign: presign or PUT may have run, create has not been called.
	// Redoing the upload from the start is safe.
	PhasePresign Phase = 1
	// PhaseCreate: create may have run. Before any new upload of this
	// content, the project's traces must be listed and adopted (rule 9).
	PhaseCreate Phase = 2
)

// Intent is written before presign and cleared in the same transaction that
// records the traces (design.md rule 9). Keyed by Hash.
type Intent struct {
	Hash      Hash
	Path      string // the path being uploaded
	Filename  string // the basename sent to presign and create
	Size      int64
	Phase     Phase
	StartedAt time.Time // when this phase began; traces created before it are not ours
}

// Delete is one remote trace delete still to do (design.md rule 4).
// Keyed by TraceID.
type Delete struct {
	TraceID     string
	Hash        Hash // the content the trace belonged to
	Attempts    int
	NextAttempt time.Time // zero means as soon as possible
	LastError   string
	QueuedAt    time.Time
}

// Counts is the number of paths in each state, plus the totals
// `tracesync status` shows.
type Counts struct {
	Files          map[State]int
	Contents       int // distinct uploaded contents
	Traces         int // trace ids recorded across contents
	DeletesPending int
	Intents        int
	Chained        int // live paths uploaded in more than one segment (growing .jsonl)
	Segments       int // the segments of those paths
}

// ErrNotFound is returned when a path, content, intent or delete has no record.
var ErrNotFound = errors.New("store: not found")
