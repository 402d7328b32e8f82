package uploader

import (
	"time"

	"github.com/tracesync/tracesync/store"
)

// decide.go owns the rules for a hashed file, and for a tracked file found
// gone: what is known goes in, what to record and do comes out. They read
// and write nothing, so a table test walks every case (decide_test.go), and
// the backfill's dry run asks decide the same questions the engine does.

// known is what the store holds about a hashed path and its bytes.
type known struct {
	path      store.PathRecord // the path's record, if pathFound
	pathFound bool
	// content is the record of the bytes seen now, if contentFound: they
	// were uploaded already (under this or another path).
	content      store.Content
	contentFound bool
	// intent is the upload intent of the bytes seen now, if intentFound.
	intent      store.Intent
	intentFound bool
	// oldContent is the record of the bytes the path held before, if
	// oldContentFound, and oldOtherRefs how many other live paths hold them.
	oldContent      store.Content
	oldContentFound bool
	oldOtherRefs    int
	// from is the record of the name a renamed growing file had (the
	// hash result's From), if fromFound.
	from      store.PathRecord
	fromFound bool
	// baseUploaded: the last segment of the record the hash result was
	// cut on has its traces recorded.
	baseUploaded bool
}

// chainStep is what a verdict does to the path's earlier segments.
type chainStep uint8

const (
	chainKeep    chainStep = iota // as they are (or none)
	chainExtend                   // the base's last segment joins them: a new segment follows it
	chainDrop                     // the file is a new content from byte 0: they are let go (rule 3)
	chainInherit                  // a renamed file takes over the chain of its old name (rule 5)
)

// seen is what hashing found of a path now.
type seen struct {
	path, root string
	name       string // the upload's name at the server (UploadName)
	res        hashResult
	force      bool // `tracesync retry`: a quarantined path with the same bytes is tried again
}

// verdict is what decide concluded for one hashed path.
type verdict struct {
	dec    decision
	record store.PathRecord // the path's record to write
	// newIntent, when set, is the presign-phase intent to write before
	// the upload starts (rule 9); intent is the upload's intent either way.
	newIntent   *store.Intent
	intent      store.Intent
	hasIntent   bool
	lastErr     string    // for a quarantine: the reason kept or found
	attempts    int       // for an upload: the attempts a retrying path already made
	next        time.Time // for an upload: a stored next attempt still ahead
	orphan      store.Hash
	orphanSize  int64 // the content the path left, now without any path (rule 4)
	contentSize int64 // for a link: the size of the content linked to
	chain       chainStep
	base        store.PathRecord // the record the segment was cut on, for chainExtend and chainInherit
}

// baseHolds reports whether the record a segment was cut on still says
// what the hasher read: the same last segment, uploaded if the new one
// follows it. Anything else (a concurrent record, a removal) means hashing
// again.
func baseHolds(k known, r *hashResult) (store.PathRecord, bool) {
	b, ok := k.path, k.pathFound
	if r.From != "" {
		b, ok = k.from, k.fromFound
	}
	if !ok || b.State == store.StateRemoved || b.Hash != r.BaseHash || b.SegEnd() != r.BaseEnd {
		return b, false
	}
	return b, !r.Extends || k.baseUploaded
}

// decide applies rules 2, 3, 9, 10 and 12 to one hashed path.
func decide(k known, s seen, now time.Time) verdict {
	old := k.path
	rec := old
	if !k.pathFound {
		rec = store.PathRecord{Path: s.path, FirstSeen: now}
	}
	var v verdict
	if s.res.Based {
		b, ok := baseHolds(k, &s.res)
		if !ok {
			v.dec = decRehash
			return v
		}
		v.base, v.chain = b, chainKeep
		rec.Prior = b.Prior
		switch {
		case s.res.Extends:
			v.chain, rec.Prior = chainExtend, b.Prior+1
		case s.res.From != "":
			v.chain = chainInherit
		}
		if s.res.Extends && s.res.From != "" {
			v.chain = chainInherit // and the base's last segment joins the chain
		}
	}
	rec.Root = s.root
	rec.Dev, rec.Ino, rec.Size, rec.ModTime = s.res.ID.Dev, s.res.ID.Ino, s.res.ID.Size, s.res.ID.ModTime
	rec.Start, rec.End, rec.Print, rec.More = s.res.Start, s.res.End, s.res.Print, s.res.More
	rec.UpdatedAt = now
	rec.RemovedAt = time.Time{}
	live := k.pathFound && old.State != store.StateRemoved
	if !s.res.Based {
		rec.Prior = 0
		if live && old.Prior > 0 {
			v.chain = chainDrop
		}
	}
	sameBytes := live && old.Hash == s.res.Hash && !s.res.Hash.IsZero() && !s.res.Extends && old.Start == s.res.Start
	if !sameBytes {
		rec.Attempts, rec.NextAttempt, rec.LastError = 0, time.Time{}, ""
	}
	rec.Hash = s.res.Hash
	switch s.res.Outcome {
	case hashEmpty:
		rec.State, rec.LastError = store.StateSkipped, ""
		v.dec = decSkipped
	case hashOK:
		switch {
		case sameBytes && old.State == store.StateUploaded && k.contentFound:
			v.dec = decUnchanged
		case sameBytes && old.State == store.StateQuarantined && !s.force:
			v.dec, v.lastErr = decQuarantined, old.LastError
		case k.contentFound:
			// Rule 2: the bytes were uploaded already: link, no upload.
			rec.State, rec.Attempts, rec.NextAttempt, rec.LastError = store.StateUploaded, 0, time.Time{}, ""
			v.dec, v.contentSize = decLinked, k.content.Size
		default:
			v.dec = decUpload
			if sameBytes && old.State == store.StateRetrying && !s.force {
				v.attempts, v.next = old.Attempts, old.NextAttempt // a restart keeps the schedule
			} else {
				rec.State, rec.Attempts, rec.NextAttempt, rec.LastError = store.StatePending, 0, time.Time{}, ""
			}
			v.hasIntent = true
			if k.intentFound {
				v.intent = k.intent
			} else {
				// Rule 9: the intent exists before presign.
				in := store.Intent{Hash: s.res.Hash, Path: s.path, Filename: s.name, Size: s.res.segSize(), Phase: store.PhasePresign, StartedAt: now}
				v.intent, v.newIntent = in, &in
			}
		}
	default: // rule 10: what can never succeed as it is
		if sameBytes && old.State == store.StateQuarantined && old.LastError != "" && s.res.Err == nil {
			v.lastErr = old.LastError
		} else {
			v.lastErr = errText(s.res.Err)
		}
		rec.State, rec.LastError = store.StateQuarantined, v.lastErr
		v.dec = decQuarantined
	}
	// Rule 3: the old content lost this path's reference (a segment that
	// joins the chain keeps it).
	if live && !old.Hash.IsZero() && old.Hash != rec.Hash && !s.res.Extends && k.oldOtherRefs == 0 && k.oldContentFound {
		v.orphan, v.orphanSize = old.Hash, k.oldContent.Size
	}
	v.record = rec
	return v
}

// removalKind is what removing one tracked path would do.
type removalKind uint8

const (
	removalFree   removalKind = iota + 1 // deletes nothing remote: no traces, or deletes are off
	removalKept                          // another live path holds its content: a rename or a copy
	removalDelete                        // its content's traces would be deleted
	removalMaybe                         // not known yet: perhaps its new name is being read
)

// removalSeen is what is known of a tracked path found gone.
type removalSeen struct {
	hashed         bool // its bytes were hashed: it has a content
	refsUnknown    bool // the other paths of its content could not be read
	otherLive      bool // another path, not itself gone, holds its content
	deleteOnRemove bool
	uploaded       bool // its content's traces are recorded
	busy           bool // an upload of its content runs, or a file of its size is being read
}

// decideRemoval applies rules 4 and 5 to one removal: a rename or a copy
// deletes nothing, and only a content left with no path, uploaded, with
// delete-on-remove, has traces to delete (the guard's budget counts those).
func decideRemoval(s removalSeen) removalKind {
	switch {
	case !s.hashed:
		return removalFree
	case s.refsUnknown && !s.deleteOnRemove:
		return removalFree
	case s.refsUnknown:
		return removalMaybe
	case s.otherLive:
		return removalKept
	case !s.deleteOnRemove, !s.uploaded:
		return removalFree // nothing uploaded yet: nothing to delete now
	case s.busy:
		return removalMaybe
	}
	return removalDelete
}
