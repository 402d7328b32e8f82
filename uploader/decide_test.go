package uploader

import (
	"errors"
	"testing"
	"time"

	"github.com/tracesync/tracesync/store"
)

// TestDecide walks the rules for a hashed file, one row per case.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Hour)
	hA, hB := store.Hash{0xa}, store.Hash{0xb}
	const path, root, name = "/r/x.json", "/r", "x.0b00000000000000.json"
	ok := func(h store.Hash) hashResult {
		return hashResult{Outcome: hashOK, Hash: h, ID: fileID{Dev: 1, Ino: 2, Size: 10, ModTime: earlier}}
	}
	rec := func(st store.State, h store.Hash) store.PathRecord {
		return store.PathRecord{Path: path, Root: root, State: st, Hash: h, FirstSeen: earlier}
	}
	retrying := rec(store.StateRetrying, hB)
	retrying.Attempts, retrying.NextAttempt = 3, now.Add(time.Minute)
	quarantined := rec(store.StateQuarantined, hB)
	quarantined.LastError = "rejected by the API (create): 422"
	createIntent := store.Intent{Hash: hB, Path: path, Filename: name, Size: 10, Phase: store.PhaseCreate, StartedAt: earlier}
	presignIntent := createIntent
	presignIntent.Phase = store.PhasePresign

	type want struct {
		dec          decision
		state        store.State
		newIntent    bool
		intentPhase  store.Phase // when the verdict carries an intent
		attempts     int
		next         time.Time
		orphan       store.Hash
		lastErr      string
		recAttempts  int
		keepsLastErr bool
	}
	rows := []struct {
		name  string
		k     known
		s     seen
		force bool
		want  want
	}{
		{name: "new path, new bytes: upload, intent written before presign",
			k: known{}, s: seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StatePending, newIntent: true, intentPhase: store.PhasePresign}},
		{name: "new path, bytes uploaded under another path: linked, no upload",
			k: known{content: store.Content{Hash: hB, Size: 10}, contentFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decLinked, state: store.StateUploaded}},
		{name: "same path, same bytes, uploaded: unchanged",
			k: known{path: rec(store.StateUploaded, hB), pathFound: true, content: store.Content{Hash: hB}, contentFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decUnchanged, state: store.StateUploaded}},
		{name: "changed bytes, the old ones held by no other path: upload, old content orphaned",
			k:    known{path: rec(store.StateUploaded, hA), pathFound: true, oldContent: store.Content{Hash: hA, Size: 5}, oldContentFound: true},
			s:    seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StatePending, newIntent: true, intentPhase: store.PhasePresign, orphan: hA}},
		{name: "changed bytes, the old ones still held by another path: upload, nothing orphaned",
			k:    known{path: rec(store.StateUploaded, hA), pathFound: true, oldContent: store.Content{Hash: hA}, oldContentFound: true, oldOtherRefs: 1},
			s:    seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StatePending, newIntent: true, intentPhase: store.PhasePresign}},
		{name: "a removed path back with bytes already uploaded (a rename back): linked",
			k: known{path: rec(store.StateRemoved, hB), pathFound: true, content: store.Content{Hash: hB}, contentFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decLinked, state: store.StateUploaded}},
		{name: "a removed path back with other bytes: upload, the removed bytes not orphaned again",
			k: known{path: rec(store.StateRemoved, hA), pathFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StatePending, newIntent: true, intentPhase: store.PhasePresign}},
		{name: "invalid bytes: quarantined with the reason",
			k: known{}, s: seen{res: hashResult{Outcome: hashInvalid, Hash: hB, Err: errors.New("x.json: invalid JSON at byte 3")}},
			want: want{dec: decQuarantined, state: store.StateQuarantined, lastErr: "x.json: invalid JSON at byte 3"}},
		{name: "invalid bytes replacing uploaded ones held by no other path: quarantined, old content orphaned",
			k:    known{path: rec(store.StateUploaded, hA), pathFound: true, oldContent: store.Content{Hash: hA}, oldContentFound: true},
			s:    seen{res: hashResult{Outcome: hashTooLarge, Hash: hB, Err: errors.New("too large")}},
			want: want{dec: decQuarantined, state: store.StateQuarantined, lastErr: "too large", orphan: hA}},
		{name: "quarantined by the API, same bytes again: still quarantined, reason kept",
			k: known{path: quarantined, pathFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decQuarantined, state: store.StateQuarantined, lastErr: quarantined.LastError, keepsLastErr: true}},
		{name: "quarantined, same bytes, `tracesync retry`: uploaded again",
			k: known{path: quarantined, pathFound: true}, s: seen{res: ok(hB)}, force: true,
			want: want{dec: decUpload, state: store.StatePending, newIntent: true, intentPhase: store.PhasePresign}},
		{name: "retrying, same bytes (a restart): upload keeps its attempts and schedule",
			k: known{path: retrying, pathFound: true, intent: presignIntent, intentFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StateRetrying, intentPhase: store.PhasePresign, attempts: 3, next: retrying.NextAttempt, recAttempts: 3, keepsLastErr: true}},
		{name: "retrying, same bytes, `tracesync retry`: attempts reset, now",
			k: known{path: retrying, pathFound: true, intent: presignIntent, intentFound: true}, s: seen{res: ok(hB)}, force: true,
			want: want{dec: decUpload, state: store.StatePending, intentPhase: store.PhasePresign, recAttempts: 3}},
		{name: "a leftover intent from a create that may have run: upload resolves it, no new intent",
			k: known{path: rec(store.StatePending, hB), pathFound: true, intent: createIntent, intentFound: true}, s: seen{res: ok(hB)},
			want: want{dec: decUpload, state: store.StatePending, intentPhase: store.PhaseCreate}},
		{name: "empty file: skipped",
			k: known{}, s: seen{res: hashResult{Outcome: hashEmpty}},
			want: want{dec: decSkipped, state: store.StateSkipped}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			s := r.s
			s.path, s.root, s.name, s.force = path, root, name, r.force
			v := decide(r.k, s, now)
			w := r.want
			if v.dec != w.dec {
				t.Fatalf("decision %d, want %d", v.dec, w.dec)
			}
			if v.record.State != w.state {
				t.Fatalf("recorded state %s, want %s", v.record.State, w.state)
			}
			if v.record.Path != path || v.record.Root != root || v.record.Hash != s.res.Hash || v.record.UpdatedAt != now || !v.record.RemovedAt.IsZero() {
				t.Fatalf("record %+v: want path, root, hash and update time of what was seen, not removed", v.record)
			}
			if got := v.newIntent != nil; got != w.newIntent {
				t.Fatalf("new intent written: %v, want %v", got, w.newIntent)
			}
			if v.newIntent != nil && (v.newIntent.Filename != name || v.newIntent.StartedAt != now || v.newIntent.Hash != s.res.Hash) {
				t.Fatalf("new intent %+v: want the upload's name, now, the bytes seen", *v.newIntent)
			}
			if w.dec == decUpload && (!v.hasIntent || v.intent.Phase != w.intentPhase) {
				t.Fatalf("upload with intent %+v (has %v), want phase %d", v.intent, v.hasIntent, w.intentPhase)
			}
			if w.dec != decUpload && (v.hasIntent || v.newIntent != nil) {
				t.Fatalf("%d carries an intent %+v", w.dec, v.intent)
			}
			if v.attempts != w.attempts || !v.next.Equal(w.next) {
				t.Fatalf("attempts %d next %v, want %d %v", v.attempts, v.next, w.attempts, w.next)
			}
			if v.record.Attempts != w.recAttempts && !(w.recAttempts == 3 && r.force) {
				t.Fatalf("recorded attempts %d, want %d", v.record.Attempts, w.recAttempts)
			}
			if r.force && w.dec == decUpload && v.record.Attempts != 0 {
				t.Fatalf("retry asked: recorded attempts %d, want 0", v.record.Attempts)
			}
			if v.orphan != w.orphan {
				t.Fatalf("orphaned %x, want %x", v.orphan[:1], w.orphan[:1])
			}
			if v.lastErr != w.lastErr {
				t.Fatalf("reason %q, want %q", v.lastErr, w.lastErr)
			}
			if w.keepsLastErr && v.record.LastError != r.k.path.LastError {
				t.Fatalf("recorded error %q, want the one kept %q", v.record.LastError, r.k.path.LastError)
			}
		})
	}
}

// TestDecideRemoval walks what removing a tracked file does, one row per
// case: a rename or a copy deletes nothing; a removal deletes traces only
// with delete-on-remove and an uploaded content left with no path.
func TestDecideRemoval(t *testing.T) {
	for _, r := range []struct {
		name string
		s    removalSeen
		want removalKind
	}{
		{"never hashed (empty, or quarantined before hashing): nothing to delete",
			removalSeen{deleteOnRemove: true}, removalFree},
		{"a rename: its new name holds the content",
			removalSeen{hashed: true, otherLive: true, deleteOnRemove: true, uploaded: true}, removalKept},
		{"a copy removed: another file keeps the traces",
			removalSeen{hashed: true, otherLive: true, uploaded: true}, removalKept},
		{"removal without delete-on-remove: nothing remote",
			removalSeen{hashed: true, uploaded: true}, removalFree},
		{"removal with delete-on-remove: its traces go (the guard counts it)",
			removalSeen{hashed: true, deleteOnRemove: true, uploaded: true}, removalDelete},
		{"removed before its upload finished: nothing recorded to delete now",
			removalSeen{hashed: true, deleteOnRemove: true}, removalFree},
		{"a file of its size is being read: perhaps its new name, wait",
			removalSeen{hashed: true, deleteOnRemove: true, uploaded: true, busy: true}, removalMaybe},
		{"its other paths could not be read: wait",
			removalSeen{hashed: true, refsUnknown: true, deleteOnRemove: true, uploaded: true}, removalMaybe},
		{"its other paths could not be read, deletes off: nothing remote anyway",
			removalSeen{hashed: true, refsUnknown: true, uploaded: true}, removalFree},
	} {
		if got := decideRemoval(r.s); got != r.want {
			t.Errorf("%s: %d, want %d", r.name, got, r.want)
		}
	}
}

// TestDecideChain walks the rules for a growing .jsonl (a chain of
// segments), one row per case.
func TestDecideChain(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	hOld, hNew, hPrev := store.Hash{0x1}, store.Hash{0x2}, store.Hash{0x3}
	const path, root, name = "/r/app.jsonl", "/r", "app.0200000000000000.jsonl"
	base := store.PathRecord{Path: path, Root: root, State: store.StateUploaded, Hash: hOld, Start: 100, End: 200, Prior: 2, Dev: 1, Ino: 2}
	pending := base
	pending.State = store.StatePending
	seg := func(h store.Hash, start, end int64, extends bool) hashResult {
		return hashResult{Outcome: hashOK, Hash: h, ID: fileID{Dev: 1, Ino: 2, Size: end}, Start: start, End: end,
			Based: true, Extends: extends, BaseHash: hOld, BaseEnd: 200}
	}
	rows := []struct {
		name      string
		k         known
		res       hashResult
		dec       decision
		chain     chainStep
		prior     int
		start     int64
		orphan    store.Hash
		newIntent bool
	}{
		{name: "lines appended after an uploaded segment: the next segment, the last joins the chain",
			k: known{path: base, pathFound: true, baseUploaded: true}, res: seg(hNew, 200, 300, true),
			dec: decUpload, chain: chainExtend, prior: 3, start: 200, newIntent: true},
		{name: "appended lines whose bytes are uploaded already (the same line again): linked, the chain grows",
			k: known{path: base, pathFound: true, baseUploaded: true, content: store.Content{Hash: hNew}, contentFound: true}, res: seg(hNew, 200, 300, true),
			dec: decLinked, chain: chainExtend, prior: 3, start: 200},
		{name: "nothing new after an uploaded segment: unchanged",
			k: known{path: base, pathFound: true, content: store.Content{Hash: hOld}, contentFound: true}, res: seg(hOld, 100, 200, false),
			dec: decUnchanged, chain: chainKeep, prior: 2, start: 100},
		{name: "a pending segment read again (a restart): the same upload, not cut anew",
			k: known{path: pending, pathFound: true, intent: store.Intent{Hash: hOld, Phase: store.PhaseCreate}, intentFound: true}, res: seg(hOld, 100, 200, false),
			dec: decUpload, chain: chainKeep, prior: 2, start: 100},
		{name: "the record moved on since the segment was cut: hash again",
			k: known{path: store.PathRecord{Path: path, State: store.StateUploaded, Hash: hPrev, End: 250, Prior: 3}, pathFound: true, baseUploaded: true}, res: seg(hNew, 200, 300, true),
			dec: decRehash},
		{name: "cut after a segment whose traces are not recorded: hash again",
			k: known{path: base, pathFound: true}, res: seg(hNew, 200, 300, true),
			dec: decRehash},
		{name: "a renamed growing file with new lines: it takes its old name's chain and adds a segment",
			k:   known{from: store.PathRecord{Path: "/r/old.jsonl", State: store.StateUploaded, Hash: hOld, Start: 100, End: 200, Prior: 2}, fromFound: true, baseUploaded: true},
			res: func() hashResult { r := seg(hNew, 200, 300, true); r.From = "/r/old.jsonl"; return r }(),
			dec: decUpload, chain: chainInherit, prior: 3, start: 200, newIntent: true},
		{name: "rewritten from byte 0 (truncated, copytruncate): a new chain, the old one let go",
			k:   known{path: base, pathFound: true, oldContent: store.Content{Hash: hOld}, oldContentFound: true},
			res: hashResult{Outcome: hashOK, Hash: hNew, ID: fileID{Dev: 1, Ino: 2, Size: 50}, End: 50},
			dec: decUpload, chain: chainDrop, prior: 0, start: 0, orphan: hOld, newIntent: true},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			v := decide(r.k, seen{path: path, root: root, name: name, res: r.res}, now)
			if v.dec != r.dec {
				t.Fatalf("decision %d, want %d", v.dec, r.dec)
			}
			if r.dec == decRehash {
				return
			}
			if v.chain != r.chain || v.record.Prior != r.prior || v.record.Start != r.start {
				t.Fatalf("chain step %d, prior %d, start %d; want %d, %d, %d", v.chain, v.record.Prior, v.record.Start, r.chain, r.prior, r.start)
			}
			if v.orphan != r.orphan {
				t.Fatalf("orphaned %x, want %x", v.orphan[:1], r.orphan[:1])
			}
			if got := v.newIntent != nil; got != r.newIntent {
				t.Fatalf("new intent: %v, want %v", got, r.newIntent)
			}
			if v.newIntent != nil && v.newIntent.Size != r.res.End-r.res.Start {
				t.Fatalf("intent size %d, want the segment's %d", v.newIntent.Size, r.res.End-r.res.Start)
			}
		})
	}
}
