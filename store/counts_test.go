package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// indexState is what a namespace's counters and indexes hold, read raw.
type indexState struct {
	counts  map[string]int64 // zero counters left out
	byState []string
	errs    []string
}

// readIndexes reads the stored counters and indexes of t's namespace.
func readIndexes(t *Tx) (indexState, error) {
	s := indexState{counts: map[string]int64{}}
	if t.ix.counts == nil || t.ix.byState == nil || t.ix.errs == nil {
		return s, errors.New("the namespace has no counters or indexes")
	}
	err := t.ix.counts.ForEach(func(k, v []byte) error {
		if n := int64(binary.BigEndian.Uint64(v)); n != 0 {
			s.counts[string(k)] = n
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	_ = t.ix.byState.ForEach(func(k, _ []byte) error { s.byState = append(s.byState, string(k)); return nil })
	_ = t.ix.errs.ForEach(func(k, _ []byte) error { s.errs = append(s.errs, string(k)); return nil })
	return s, nil
}

// walkIndexes computes, by a walk of every record, what the counters and
// indexes of t's namespace must hold.
func walkIndexes(t *Tx) (indexState, error) {
	s := indexState{counts: map[string]int64{}}
	m, err := t.recount(func(byState, errKey []byte) error {
		if byState != nil {
			s.byState = append(s.byState, string(byState))
		}
		if errKey != nil {
			s.errs = append(s.errs, string(errKey))
		}
		return nil
	})
	for c, n := range m {
		if n != 0 {
			s.counts[string(counterNames[c])] = n
		}
	}
	slices.Sort(s.byState)
	slices.Sort(s.errs)
	return s, err
}

// checkCounts fails the test when db's counters and indexes differ from
// what a full walk of its records computes.
func checkCounts(t *testing.T, db *DB) {
	t.Helper()
	var got, want indexState
	err := db.view(func(tx *Tx) error {
		if tx.paths == nil {
			return nil
		}
		var err error
		if got, err = readIndexes(tx); err != nil {
			return err
		}
		want, err = walkIndexes(tx)
		return err
	})
	if err != nil {
		t.Fatalf("check counts: %v", err)
	}
	if !maps.Equal(got.counts, want.counts) {
		t.Errorf("counters %v, a walk counts %v", got.counts, want.counts)
	}
	for _, d := range diffKeys(got.byState, want.byState, 1) {
		t.Errorf("bystate index: %s", d)
	}
	for _, d := range diffKeys(got.errs, want.errs, errTimeLen) {
		t.Errorf("errors index: %s", d)
	}
}

// diffKeys says which index keys (both lists sorted) are stored but not
// walked and walked but not stored, naming the path after the prefix.
func diffKeys(stored, walked []string, prefix int) []string {
	var out []string
	for _, k := range stored {
		if _, found := slices.BinarySearch(walked, k); !found {
			out = append(out, fmt.Sprintf("holds %s (prefix %x), which a walk does not find", fmt.Sprintf("key %q", k[prefix:]), k[:prefix]))
		}
	}
	for _, k := range walked {
		if _, found := slices.BinarySearch(stored, k); !found {
			out = append(out, fmt.Sprintf("misses %s (prefix %x)", fmt.Sprintf("key %q", k[prefix:]), k[:prefix]))
		}
	}
	return out
}

// countsSeed is the environment variable that reruns
// TestCountsFollowRandomChanges with a given seed.
const countsSeed = "TRACESYNC_COUNTS_SEED"

// After every transaction of a random sequence of changes (each kind of
// write the store has, a rolled back transaction among them), the counters
// and indexes equal what a walk computes, and the reads that use them
// answer as a walk does; so do they after a reopen.
func TestCountsFollowRandomChanges(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(countsSeed); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", countsSeed, s, err)
		}
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, countsSeed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	now := t0.Add(60 * 24 * time.Hour)
	db, err := Open(dir, Options{Target: targetA, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &randomChanges{rng: rng, now: now}
	for round := range 150 {
		ops := make([]string, 0, 8)
		err := db.Update(context.Background(), func(tx *Tx) error {
			ops = ops[:0]
			for range 1 + rng.IntN(8) {
				op, err := r.apply(tx)
				ops = append(ops, op)
				if err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
			}
			if rng.IntN(10) == 0 {
				return errRolledBack
			}
			return nil
		})
		if err != nil && !errors.Is(err, errRolledBack) {
			t.Fatalf("round %d %v: %v", round, ops, err)
		}
		if rng.IntN(15) == 0 {
			if _, err := db.Prune(context.Background(), time.Duration(rng.IntN(40))*24*time.Hour); err != nil {
				t.Fatalf("round %d: prune: %v", round, err)
			}
			ops = append(ops, "Prune")
		}
		checkCounts(t, db)
		checkReads(t, db)
		checkConsistent(t, db)
		if t.Failed() {
			t.Fatalf("round %d (%v) left the counters or indexes wrong", round, ops)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, dir, "")
	checkConsistent(t, db)
	checkReads(t, db)
}

var errRolledBack = errors.New("rolled back on purpose")

// randomChanges makes random writes over a few paths and contents, so that
// they meet: the same path changes state, content and chain, contents are
// shared, forgotten and pruned under paths.
type randomChanges struct {
	rng *rand.Rand
	now time.Time
}

func (r *randomChanges) path() string {
	return fmt.Sprintf("/r/d%d/f%d.jsonl", r.rng.IntN(3), r.rng.IntN(12))
}
func (r *randomChanges) content() Hash   { return hashOf("c" + strconv.Itoa(r.rng.IntN(10))) }
func (r *randomChanges) traceID() string { return "t" + strconv.Itoa(r.rng.IntN(20)) }

// at is one of a few times, so that records share an UpdatedAt.
func (r *randomChanges) at() time.Time {
	return r.now.Add(-time.Duration(r.rng.IntN(4)) * 10 * 24 * time.Hour)
}

// apply makes one random write in tx and names it.
func (r *randomChanges) apply(tx *Tx) (string, error) {
	p := r.path()
	switch r.rng.IntN(12) {
	case 0, 1, 2: // a new record, or a change of state, content, error, time
		rec, err := tx.GetPath(p)
		if errors.Is(err, ErrNotFound) {
			rec = PathRecord{Path: p, Root: "/r", FirstSeen: r.at()}
		} else if err != nil {
			return "PutPath", err
		}
		if rec.State == StateRemoved || rec.Prior == 0 && r.rng.IntN(2) == 0 {
			rec.Hash = Hash{}
			if r.rng.IntN(4) > 0 {
				rec.Hash = r.content()
			}
		}
		live := []State{StatePending, StateRetrying, StateUploaded, StateQuarantined, StateIncomplete, StateSkipped}
		rec.State = live[r.rng.IntN(len(live))]
		rec.LastError = ""
		if r.rng.IntN(2) == 0 {
			rec.LastError = "failed at " + strconv.Itoa(r.rng.IntN(100)) // any state may carry one
		}
		rec.UpdatedAt, rec.RemovedAt = r.at(), time.Time{}
		return "PutPath " + p, tx.PutPath(rec)
	case 3: // a growing file: its current bytes become an earlier segment
		rec, err := tx.GetPath(p)
		if err != nil || rec.State == StateRemoved || rec.Hash.IsZero() {
			return "AppendSegment (none)", nil
		}
		seg := Segment{Hash: rec.Hash, End: int64(rec.Prior+1) * 10}
		rec.Prior++
		rec.Hash, rec.Start, rec.End = r.content(), seg.End, seg.End+5
		if err := tx.PutPath(rec); err != nil { // the engine's order: the record, then its chain
			return "AppendSegment " + p, err
		}
		return "AppendSegment " + p, tx.AppendSegment(p, rec.Prior-1, seg)
	case 4: // a rewritten growing file drops its chain
		rec, err := tx.GetPath(p)
		if err != nil || rec.State == StateRemoved || rec.Prior == 0 {
			return "DropChain (none)", nil
		}
		rec.Prior, rec.Start, rec.End = 0, 0, 0
		if err := tx.PutPath(rec); err != nil {
			return "DropChain " + p, err
		}
		_, err = tx.DropChain(p)
		return "DropChain " + p, err
	case 5:
		_, err := tx.RemovePath(p, r.at())
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return "RemovePath " + p, err
	case 6:
		err := tx.ForgetPath(p)
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return "ForgetPath " + p, err
	case 7:
		ids := make([]string, r.rng.IntN(4))
		for i := range ids {
			ids[i] = r.traceID()
		}
		return "PutContent", tx.PutContent(Content{Hash: r.content(), Filename: "f.jsonl", TraceIDs: ids, UploadedAt: r.at()})
	case 8:
		return "DeleteContent", tx.DeleteContent(r.content())
	case 9:
		_, _, err := tx.ForgetContent(r.content())
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return "ForgetContent", err
	case 10:
		if r.rng.IntN(2) == 0 {
			return "PutIntent", tx.PutIntent(Intent{Hash: r.content(), Path: p, Phase: PhasePresign})
		}
		return "DeleteIntent", tx.DeleteIntent(r.content())
	default:
		if r.rng.IntN(2) == 0 {
			return "PutDelete", tx.PutDelete(Delete{TraceID: r.traceID(), Hash: r.content()})
		}
		return "DeleteDelete", tx.DeleteDelete(r.traceID())
	}
}

// checkReads fails the test when Counts, RecentErrors or ForEachPathIn
// answer otherwise than a walk of every record.
func checkReads(t *testing.T, db *DB) {
	t.Helper()
	var all []PathRecord
	if err := db.ForEachPath("", func(r PathRecord) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := Counts{Files: map[State]int{}}
	for _, s := range States {
		want.Files[s] = 0
	}
	var withErr []PathRecord
	for _, r := range all {
		want.Files[r.State]++
		if r.Prior > 0 && r.State != StateRemoved {
			want.Chained++
			want.Segments += r.Prior + 1
		}
		if r.LastError != "" {
			withErr = append(withErr, r)
		}
	}
	_ = db.ForEachContent(func(c Content, _ []string) error {
		want.Contents++
		want.Traces += len(c.TraceIDs)
		return nil
	})
	ds, _ := db.Deletes()
	is, _ := db.Intents()
	want.DeletesPending, want.Intents = len(ds), len(is)
	if got, err := db.Counts(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %+v, %v\na walk counts %+v", got, err, want)
	}

	sortRecentErrors(withErr)
	for _, n := range []int{1, 3, 100} {
		got, err := db.RecentErrors(n)
		if err != nil {
			t.Fatalf("RecentErrors(%d): %v", n, err)
		}
		if w := withErr[:min(n, len(withErr))]; !slices.EqualFunc(got, w, func(a, b PathRecord) bool { return a.Path == b.Path }) {
			t.Errorf("RecentErrors(%d) = %v, want %v", n, recordPaths(got), recordPaths(w))
		}
	}

	for _, s := range States {
		var got []string
		if err := db.ForEachPathIn(s, func(r PathRecord) error { got = append(got, r.Path); return nil }); err != nil {
			t.Fatalf("ForEachPathIn(%s): %v", s, err)
		}
		var w []string
		for _, r := range all {
			if r.State == s {
				w = append(w, r.Path)
			}
		}
		slices.Sort(got) // the index goes folder by folder, in the order folders were first recorded
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("ForEachPathIn(%s) = %v, want %v", s, got, w)
		}
	}
}

func recordPaths(recs []PathRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Path
	}
	return out
}

// A state written before the counters gets them on a read-write open; a
// read-only open of it answers by walking, with the same figures.
func TestCountsBuiltForOlderState(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: hashOf("a"), TraceIDs: []string{"1", "2"}}); err != nil {
			return err
		}
		for i, s := range []State{StateUploaded, StateQuarantined, StateRemoved, StatePending} {
			r := pathRec(fmt.Sprintf("/r/%d.json", i), "a", s)
			r.LastError = "failed " + strconv.Itoa(i)
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return tx.PutDelete(Delete{TraceID: "9", Hash: hashOf("z")})
	})
	want, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	wantErrs, _ := db.RecentErrors(10)
	db.Close()
	dropIndexes(t, dir)

	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Counts(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("read-only Counts without counters = %+v, %v; want %+v", got, err, want)
	}
	if got, _ := ro.RecentErrors(10); !slices.Equal(recordPaths(got), recordPaths(wantErrs)) {
		t.Errorf("read-only RecentErrors without the index = %v, want %v", recordPaths(got), recordPaths(wantErrs))
	}
	var quarantined []string
	_ = ro.ForEachPathIn(StateQuarantined, func(r PathRecord) error { quarantined = append(quarantined, r.Path); return nil })
	if !slices.Equal(quarantined, []string{"/r/1.json"}) {
		t.Errorf("read-only ForEachPathIn(quarantined) without the index = %v", quarantined)
	}
	ro.Close()

	db = openT(t, dir, "")
	checkCounts(t, db)
	if got, err := db.Counts(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Counts after the counters were built = %+v, %v; want %+v", got, err, want)
	}
}

// dropIndexes deletes the counters and indexes of every namespace in the
// state file in dir, as a file written before them has none.
func dropIndexes(t *testing.T, dir string) {
	t.Helper()
	bdb, err := bolt.Open(dir+"/"+FileName, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		targets := tx.Bucket(bucketTargets)
		return targets.ForEachBucket(func(name []byte) error {
			for _, b := range [][]byte{bucketCounts, bucketByState, bucketErrors} {
				if err := targets.Bucket(name).DeleteBucket(b); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ForEachPathIn reads an indexed state in chunks: more records than one
// chunk holds are each listed once, in path order, around others.
func TestForEachPathInChunks(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	const n = 2*forEachChunk + 17
	update(t, db, func(tx *Tx) error {
		for i := range 2 * n {
			s := StateUploaded
			if i%2 == 0 {
				s = StateQuarantined
			}
			if err := tx.PutPath(pathRec(fmt.Sprintf("/r/%06d.json", i), "", s)); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	if err := db.ForEachPathIn(StateQuarantined, func(r PathRecord) error { got = append(got, r.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != n {
		t.Fatalf("ForEachPathIn listed %d paths (sorted %v), want %d distinct in order", len(got), slices.IsSorted(got), n)
	}
	stop := errors.New("stop")
	if err := db.ForEachPathIn(StateQuarantined, func(PathRecord) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ForEachPathIn did not return fn's error: %v", err)
	}
	checkCounts(t, db)
}
