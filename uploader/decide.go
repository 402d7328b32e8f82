package uploader

import (
	"time"

	"github.com/tracesync/tracesync/store"
)

// decide.go owns the rules for a hashed file: what the store knows and what
// the file is now go in, what to record and do comes out. It reads and
// writes nothing, so a table test walks every case (decide_test.go), and
// the backfill's dry run asks it the same questions the engine does.

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
}

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
}

// decide applies rules 2, 3, 9 and 10 to one hashed path.
func decide(k known, s seen, now time.Time) verdict {
	old := k.path
	rec := old
	if !k.pathFound {
		rec = store.PathRecord{Path: s.path, FirstSeen: now}
	}
	rec.Root = s.root
	rec.Dev, rec.Ino, rec.Size, rec.ModTime = s.res.ID.Dev, s.res.ID.Ino, s.res.ID.Size, s.res.ID.ModTime
	rec.UpdatedAt = now
	rec.RemovedAt = time.Time{}
	live := k.pathFound && old.State != store.StateRemoved
	sameBytes := live && old.Hash == s.res.Hash && !s.res.Hash.IsZero()
	if !sameBytes {
		rec.Attempts, rec.NextAttempt, rec.LastError = 0, time.Time{}, ""
	}
	rec.Hash = s.res.Hash
	var v verdict
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
				in := store.Intent{Hash: s.res.Hash, Path: s.path, Filename: s.name, Size: s.res.ID.Size, Phase: store.PhasePresign, StartedAt: now}
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
	// Rule 3: the old content lost this path's reference.
	if live && !old.Hash.IsZero() && old.Hash != rec.Hash && k.oldOtherRefs == 0 && k.oldContentFound {
		v.orphan, v.orphanSize = old.Hash, k.oldContent.Size
	}
	v.record = rec
	return v
}
