package uploader

// ops.go owns the store changes the main loop decides, each applied by
// the writer inside one batched transaction.

import (
	"errors"
	"slices"
	"time"

	"github.com/tracesync/tracesync/store"
)

// An op is one store change decided by the main loop, applied by the
// writer goroutine inside a batched store.Update. apply may run more than
// once (the store retries a failed batch): it resets its outputs first and
// acts only through tx.
type op interface {
	apply(tx *store.Tx, now time.Time) error
}

// decision is what decideOp concluded for one hashed path.
type decision uint8

const (
	decUnchanged   decision = iota + 1 // already uploaded with these bytes
	decLinked                          // the content exists: linked, no upload (rule 2)
	decUpload                          // a new content: upload it
	decSkipped                         // nothing to upload
	decQuarantined                     // quarantined now, or still (same bytes)
	decRehash                          // the record changed since the segment was cut: hash again
)

// decideOp reads what the store knows of one hashed path, lets decide
// conclude, and records the verdict.
type decideOp struct {
	path, root string
	name       string // the upload's name at the server (UploadName)
	res        hashResult
	force      bool   // `tracesync retry`: a quarantined path with the same bytes is tried again
	reason     string // quarantine category, when res says quarantine
	// outputs
	dec         decision
	lastErr     string
	attempts    int
	next        time.Time // a stored NextAttempt still ahead (restart keeps the schedule)
	intent      store.Intent
	hasIntent   bool
	orphans     []orphaned // the contents this path left, now without any path (rule 4)
	prevState   store.State
	contentSize int64
	prev        store.PathRecord // the path's record before, if it had one
}

func (o *decideOp) apply(tx *store.Tx, now time.Time) error {
	o.orphans = nil
	k, err := readKnown(txReader{tx}, o.path, o.res.Hash, o.res.Outcome == hashOK, &o.res)
	if err != nil {
		return err
	}
	v := decide(k, seen{path: o.path, root: o.root, name: o.name, res: o.res, force: o.force}, now)
	o.dec, o.lastErr, o.attempts, o.next = v.dec, v.lastErr, v.attempts, v.next
	o.intent, o.hasIntent = v.intent, v.hasIntent
	o.prevState, o.contentSize, o.prev = k.path.State, v.contentSize, k.path
	if v.dec == decRehash {
		return nil
	}
	if !v.orphan.IsZero() {
		o.orphans = append(o.orphans, orphaned{v.orphan, v.orphanSize, o.path})
	}
	if v.newIntent != nil {
		if err := tx.PutIntent(*v.newIntent); err != nil {
			return err
		}
	}
	if err := tx.PutPath(v.record); err != nil {
		return err
	}
	return o.applyChain(tx, v)
}

// applyChain does what the verdict says to the path's earlier segments.
// It runs after PutPath, which moved the refs of the last segment.
func (o *decideOp) applyChain(tx *store.Tx, v verdict) error {
	b := v.base
	switch v.chain {
	case chainExtend:
		return tx.AppendSegment(o.path, b.Prior, store.Segment{Hash: b.Hash, End: b.SegEnd()})
	case chainInherit:
		segs, err := tx.Chain(b.Path)
		if err != nil {
			return err
		}
		for n, s := range segs {
			if err := tx.AppendSegment(o.path, n, s); err != nil {
				return err
			}
		}
		if v.record.Prior > len(segs) {
			return tx.AppendSegment(o.path, len(segs), store.Segment{Hash: b.Hash, End: b.SegEnd()})
		}
	case chainDrop:
		segs, err := tx.DropChain(o.path)
		if err != nil {
			return err
		}
		for _, s := range segs {
			if tx.RefCount(s.Hash) > 0 || slices.ContainsFunc(o.orphans, func(x orphaned) bool { return x.hash == s.Hash }) {
				continue
			}
			if c, err := tx.GetContent(s.Hash); err == nil {
				o.orphans = append(o.orphans, orphaned{s.Hash, c.Size, o.path})
			}
		}
	}
	return nil
}

// knownReader is what readKnown reads: a store transaction (txReader), or
// the state a dry run plans against (planReader).
type knownReader interface {
	GetPath(path string) (store.PathRecord, error)
	GetContent(h store.Hash) (store.Content, error)
	GetIntent(h store.Hash) (store.Intent, error)
	RefCount(h store.Hash) (int, error)
}

type txReader struct{ *store.Tx }

func (r txReader) RefCount(h store.Hash) (int, error) { return r.Tx.RefCount(h), nil }

// readKnown gathers what decide needs to know of path and its bytes h
// (content and intent only when the bytes are valid, withContent), and of
// from, the old name of a renamed growing file, when set.
func readKnown(tx knownReader, path string, h store.Hash, withContent bool, res *hashResult) (known, error) {
	from := res.From
	var k known
	var err error
	k.path, err = tx.GetPath(path)
	if k.pathFound, err = found(err); err != nil {
		return k, err
	}
	if from != "" {
		k.from, err = tx.GetPath(from)
		if k.fromFound, err = found(err); err != nil {
			return k, err
		}
	}
	if res.Extends {
		_, err = tx.GetContent(res.BaseHash)
		if k.baseUploaded, err = found(err); err != nil {
			return k, err
		}
	}
	if withContent {
		k.content, err = tx.GetContent(h)
		if k.contentFound, err = found(err); err != nil {
			return k, err
		}
		if !k.contentFound {
			k.intent, err = tx.GetIntent(h)
			if k.intentFound, err = found(err); err != nil {
				return k, err
			}
		}
	}
	old := k.path.Hash
	if k.pathFound && k.path.State != store.StateRemoved && !old.IsZero() && old != h {
		k.oldContent, err = tx.GetContent(old)
		if k.oldContentFound, err = found(err); err != nil {
			return k, err
		}
		refs, err := tx.RefCount(old)
		if err != nil {
			return k, err
		}
		k.oldOtherRefs = refs - 1 // the path itself is still among them
	}
	return k, nil
}

// found turns a store lookup's error into whether the record was found,
// keeping only real failures as errors.
func found(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recordOp records an uploaded (or adopted) content, marks every path
// waiting for it uploaded and clears the intent: one transaction (rule 9).
type recordOp struct {
	hash     store.Hash
	filename string
	size     int64
	ids      []string
	attempts int // the attempts the upload took, kept on the paths it uploaded
	// outputs
	paths    []string // paths set to uploaded
	orphaned bool     // no path holds the content any more (removed while it was uploaded)
}

func (o *recordOp) apply(tx *store.Tx, now time.Time) error {
	o.paths, o.orphaned = nil, false
	c := store.Content{Hash: o.hash, Filename: o.filename, Size: o.size, TraceIDs: o.ids, UploadedAt: now}
	if old, err := tx.GetContent(o.hash); err == nil {
		// Never forget trace ids already recorded for these bytes.
		ids := slices.Clone(old.TraceIDs)
		for _, id := range o.ids {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		c.TraceIDs, c.UploadedAt = ids, old.UploadedAt
	}
	if err := tx.PutContent(c); err != nil {
		return err
	}
	for _, p := range tx.Refs(o.hash) {
		rec, err := tx.GetPath(p)
		if err != nil {
			return err
		}
		if rec.State != store.StatePending && rec.State != store.StateRetrying || rec.Hash != o.hash {
			continue // done already, or the bytes are an earlier segment of its chain
		}
		rec.State, rec.Attempts, rec.NextAttempt, rec.LastError, rec.UpdatedAt = store.StateUploaded, o.attempts, time.Time{}, "", now
		if err := tx.PutPath(rec); err != nil {
			return err
		}
		o.paths = append(o.paths, p)
	}
	// Every path of these bytes went while the upload (or the resolution
	// of a lost create) ran: the removal found no content to orphan then,
	// so the traces recorded now must be orphaned here (rule 4).
	o.orphaned = tx.RefCount(o.hash) == 0
	return tx.DeleteIntent(o.hash)
}

// failOp records a failed upload on every path waiting for the content:
// retrying with the next attempt time, or quarantined with the reason.
type failOp struct {
	hash         store.Hash
	state        store.State // StateRetrying, StateQuarantined or StatePending (back to settling)
	only         string      // when set, only this path
	attempts     int
	next         time.Time
	lastErr      string
	deleteIntent bool
	// outputs
	paths []string
}

func (o *failOp) apply(tx *store.Tx, now time.Time) error {
	o.paths = nil
	refs := tx.Refs(o.hash)
	if o.only != "" {
		refs = []string{o.only}
	}
	for _, p := range refs {
		rec, err := tx.GetPath(p)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.Hash != o.hash || (rec.State != store.StatePending && rec.State != store.StateRetrying) {
			continue
		}
		rec.State, rec.Attempts, rec.NextAttempt, rec.LastError, rec.UpdatedAt = o.state, o.attempts, o.next, o.lastErr, now
		if o.state == store.StatePending {
			rec.NextAttempt = time.Time{}
		}
		if err := tx.PutPath(rec); err != nil {
			return err
		}
		o.paths = append(o.paths, p)
	}
	if o.deleteIntent {
		return tx.DeleteIntent(o.hash)
	}
	return nil
}

// quarantineOp quarantines one path whatever its content (settle timeout,
// unreadable source).
type quarantineOp struct {
	path, root, reason string
}

func (o *quarantineOp) apply(tx *store.Tx, now time.Time) error {
	rec, err := tx.GetPath(o.path)
	if errors.Is(err, store.ErrNotFound) {
		rec = store.PathRecord{Path: o.path, Root: o.root, FirstSeen: now}
	} else if err != nil {
		return err
	}
	if rec.State == store.StateRemoved {
		return nil
	}
	rec.State, rec.LastError, rec.UpdatedAt, rec.NextAttempt = store.StateQuarantined, o.reason, now, time.Time{}
	return tx.PutPath(rec)
}

// orphaned is a content that lost its last path.
type orphaned struct {
	hash store.Hash
	size int64
	path string // the removed path that held it last
}

// removeOp marks paths removed (after the guard of rule 6 let them through)
// and reports the contents left without any path.
type removeOp struct {
	paths []string
	// outputs
	removed int
	orphans []orphaned
	moved   []store.PathRecord // the records removed, to look for a rotated file's new name
}

func (o *removeOp) apply(tx *store.Tx, now time.Time) error {
	o.removed, o.orphans, o.moved = 0, nil, nil
	var hashes []store.Hash
	last := map[store.Hash]string{}
	for _, p := range o.paths {
		segs, err := tx.Chain(p) // RemovePath lets go of them
		if err != nil {
			return err
		}
		old, err := tx.RemovePath(p, now)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if old.State == store.StateRemoved {
			continue
		}
		o.removed++
		held := make([]store.Hash, 0, len(segs)+1)
		for _, s := range segs {
			held = append(held, s.Hash)
		}
		if !old.Hash.IsZero() {
			held = append(held, old.Hash)
		}
		if len(held) > 0 && (old.Dev != 0 || old.Ino != 0) {
			o.moved = append(o.moved, old)
		}
		for _, h := range held {
			if !slices.Contains(hashes, h) {
				hashes = append(hashes, h)
			}
			last[h] = p
		}
	}
	for _, h := range hashes {
		if tx.RefCount(h) > 0 {
			continue
		}
		if c, err := tx.GetContent(h); err == nil {
			o.orphans = append(o.orphans, orphaned{h, c.Size, last[h]})
		}
	}
	return nil
}

// orphanOp turns an orphaned content into pending remote deletes, after a
// last check that no path references it (rule 4).
type orphanOp struct {
	hash store.Hash
	from string // the path that held it last, for the log; "" if unknown
	// outputs
	deletes []store.Delete
}

func (o *orphanOp) apply(tx *store.Tx, now time.Time) error {
	o.deletes = nil
	if tx.RefCount(o.hash) > 0 {
		return nil
	}
	c, err := tx.GetContent(o.hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, id := range c.TraceIDs {
		d := store.Delete{TraceID: id, Hash: o.hash, QueuedAt: now}
		if err := tx.PutDelete(d); err != nil {
			return err
		}
		o.deletes = append(o.deletes, d)
	}
	return tx.DeleteContent(o.hash)
}

// deleteDoneOp clears a remote delete that succeeded (or found the trace gone).
type deleteDoneOp struct{ id string }

func (o *deleteDoneOp) apply(tx *store.Tx, _ time.Time) error { return tx.DeleteDelete(o.id) }

// deleteFailOp records a failed remote delete and when it is tried again.
type deleteFailOp struct {
	id       string
	attempts int
	next     time.Time
	lastErr  string
}

func (o *deleteFailOp) apply(tx *store.Tx, _ time.Time) error {
	d, err := tx.GetDelete(o.id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d.Attempts, d.NextAttempt, d.LastError = o.attempts, o.next, o.lastErr
	return tx.PutDelete(d)
}

// requeueOp makes paths eligible now (`tracesync retry`): quarantined and
// retrying paths go back to pending with no next attempt time.
type requeueOp struct {
	paths []string
	// outputs
	recs []store.PathRecord // the records that exist and are not removed
}

func (o *requeueOp) apply(tx *store.Tx, now time.Time) error {
	o.recs = nil
	for _, p := range o.paths {
		rec, err := tx.GetPath(p)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.State == store.StateRemoved {
			continue
		}
		if rec.State == store.StateQuarantined || rec.State == store.StateRetrying {
			rec.State, rec.NextAttempt, rec.Attempts, rec.UpdatedAt = store.StatePending, time.Time{}, 0, now
			if err := tx.PutPath(rec); err != nil {
				return err
			}
		}
		o.recs = append(o.recs, rec)
	}
	return nil
}

// stageOp writes the create-phase intent of a job staged ahead of its
// dispatch (loop.stageMore).
type stageOp struct {
	u      *upload
	intent store.Intent
}

func (o *stageOp) apply(tx *store.Tx, _ time.Time) error { return tx.PutIntent(o.intent) }

// unstageOp puts a staged job's intent back in the presign phase when the
// job was dropped before a worker took it (no create ran). It changes only
// that intent: another job of the same bytes (under another basename) may
// have written its own since.
type unstageOp struct {
	u    *upload
	hash store.Hash
	at   time.Time
}

func (o *unstageOp) apply(tx *store.Tx, _ time.Time) error {
	in, err := tx.GetIntent(o.hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if in.Phase != store.PhaseCreate || !in.StartedAt.Equal(o.at) {
		return nil
	}
	in.Phase = store.PhasePresign
	return tx.PutIntent(in)
}

// intentOp writes or clears one intent.
type intentOp struct {
	intent store.Intent
	clear  bool
	// unlessAfter, when set with clear, keeps an intent started after it:
	// one written since by the next upload of the content (its worker
	// writes it, while this op waits in the loop's queue of writes).
	unlessAfter time.Time
}

func (o *intentOp) apply(tx *store.Tx, _ time.Time) error {
	if !o.clear {
		return tx.PutIntent(o.intent)
	}
	if !o.unlessAfter.IsZero() {
		in, err := tx.GetIntent(o.intent.Hash)
		if err == nil && in.StartedAt.After(o.unlessAfter) {
			return nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return tx.DeleteIntent(o.intent.Hash)
}
