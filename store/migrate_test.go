package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// schema4State is a schema 4 file's worth of records: folders nested and
// interleaved with files, roots of every kind, every state, a chain with
// segments and an inode, contents of both old formats, a ref whose
// content is not uploaded yet, intents and deletes.
func schema4State() oldState {
	at := time.Date(2026, 3, 1, 8, 0, 0, 5, time.UTC)
	rec := func(path, root, content string, state State) PathRecord {
		r := pathRec(path, content, state)
		r.Root, r.ModTime, r.FirstSeen, r.UpdatedAt = root, at.Add(-time.Hour), at, at.Add(time.Second)
		return r
	}
	quarantined := rec("/srv/t/b/bad.json", "/srv/t", "bad", StateQuarantined)
	quarantined.LastError, quarantined.Attempts = "invalid JSON at byte 3: fix the file", 1
	retrying := rec("/srv/t/b.json", "/srv/t", "retry", StateRetrying)
	retrying.Attempts, retrying.NextAttempt, retrying.LastError = 3, at.Add(time.Minute), "503: retrying"
	removed := rec("/srv/t/gone.json", "/srv/t", "a", StateRemoved)
	removed.RemovedAt = at.Add(time.Hour)
	grow := rec("/srv/logs/app.jsonl", "/srv/logs", "seg2", StateUploaded)
	grow.Start, grow.End, grow.Prior, grow.More, grow.Print = 20, 30, 2, true, Print{Head: [16]byte{9}, Tail: [16]byte{8}}
	st := oldState{
		version: 4,
		paths: []PathRecord{
			rec("/srv/t/a.json", "/srv/t", "a", StateUploaded),
			rec("/srv/t/a/x.json", "/srv/t", "a", StateUploaded),
			retrying,
			quarantined,
			rec("/srv/t/c.json", "/srv/t", "pending", StatePending),
			rec("/srv/t/new.json", "/srv/t", "", StatePending),
			removed,
			rec("/srv/t/skip.json", "", "", StateSkipped),
			rec("/srv/t/odd.json", "/srv/t/", "odd", StateIncomplete),
			rec("/top.json", "/", "top", StateUploaded),
			grow,
		},
		contents: []Content{
			{Hash: hashOf("a"), Filename: "a." + hashTag(hashOf("a")) + ".json", Size: 1, TraceIDs: []string{"tr_1", "tr_2"}, UploadedAt: at},
			{Hash: hashOf("top"), Filename: "top.json", Size: 3, TraceIDs: []string{"tr_3"}, UploadedAt: at},
			{Hash: hashOf("seg0"), Filename: "app." + hashTag(hashOf("seg0")) + ".jsonl", TraceIDs: []string{"tr_4"}, UploadedAt: at},
			{Hash: hashOf("seg1"), Filename: "app.jsonl", TraceIDs: []string{"tr_5"}, UploadedAt: at},
			{Hash: hashOf("seg2"), Filename: "app.jsonl", TraceIDs: []string{"tr_6"}, UploadedAt: at},
			{Hash: hashOf("orphan"), Filename: "o.json", TraceIDs: []string{"tr_7"}, UploadedAt: at},
		},
		segments: map[string][]Segment{grow.Path: {{hashOf("seg0"), 10}, {hashOf("seg1"), 20}}},
		intents:  []Intent{{Hash: hashOf("pending"), Path: "/srv/t/c.json", Filename: "c.json", Size: 7, Phase: PhaseCreate, StartedAt: at}},
		deletes:  []Delete{{TraceID: "tr_9", Hash: hashOf("orphan"), Attempts: 1, QueuedAt: at}},
	}
	// Prove the path order differs from the folder order.
	slices.SortFunc(st.paths, func(a, b PathRecord) int { return strings.Compare(a.Path, b.Path) })
	return st
}

// checkSchema4State checks that db holds st's records, read through the
// store's API exactly as they were written.
func checkSchema4State(t *testing.T, db *DB, st oldState) {
	t.Helper()
	refs := map[Hash][]string{}
	for _, r := range st.paths {
		got, err := db.GetPath(r.Path)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("path %s after the rewrite:\n got %+v, %v\nwant %+v", r.Path, got, err, r)
		}
		if isRef(&r) {
			refs[r.Hash] = append(refs[r.Hash], r.Path)
			for _, s := range st.segments[r.Path] {
				refs[s.Hash] = append(refs[s.Hash], r.Path)
			}
		}
	}
	for h, want := range refs {
		slices.Sort(want)
		if got, _ := db.Refs(h); !slices.Equal(got, want) {
			t.Errorf("refs of %x: %v, want %v", h[:4], got, want)
		}
	}
	for _, c := range st.contents {
		if got, err := db.GetContent(c.Hash); err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("content %s after the rewrite: %+v, %v", c.Filename, got, err)
		}
	}
	for p, want := range st.segments {
		if got, err := db.Chain(p); err != nil || !slices.Equal(got, want) {
			t.Errorf("chain of %s: %v, %v; want %v", p, got, err, want)
		}
	}
	for _, r := range st.paths {
		if r.chained() && isRef(&r) {
			if p, ok := db.PathByInode(r.Dev, r.Ino); !ok || p != r.Path {
				t.Errorf("PathByInode of %s: %q %v", r.Path, p, ok)
			}
		}
	}
	if got, _ := db.Intents(); !reflect.DeepEqual(got, st.intents) {
		t.Errorf("intents: %+v, want %+v", got, st.intents)
	}
	if got, _ := db.Deletes(); !reflect.DeepEqual(got, st.deletes) {
		t.Errorf("deletes: %+v, want %+v", got, st.deletes)
	}
	var walked []string
	if err := db.ForEachPath("", func(r PathRecord) error { walked = append(walked, r.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(walked)
	if want := pathsOf(st.paths); !slices.Equal(walked, want) {
		t.Errorf("ForEachPath: %v, want %v", walked, want)
	}
	checkConsistent(t, db)
}

func pathsOf(recs []PathRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Path)
	}
	slices.Sort(out)
	return out
}

// A schema 4 file, written by the frozen old encoders, opens as schema 5
// with every record as it was, written in many small transactions (each
// of which commits folders the next one uses) with a folder cache smaller
// than the folders.
func TestRewrite4to5(t *testing.T) {
	shrink(t, &rewriteTxBytes, 256)
	shrink(t, &dirCacheSize, 2)
	for _, v := range []uint32{3, 4} {
		t.Run(fmt.Sprintf("schema %d", v), func(t *testing.T) {
			// Builds that wrote chains still said schema 3: such a file
			// holds chain records under version 3.
			dir := t.TempDir()
			st := schema4State()
			st.version = v
			writeOld(t, dir, st)
			commits := 0
			rewriteCommitted = func() error { commits++; return nil }
			t.Cleanup(func() { rewriteCommitted = nil })
			db := openT(t, dir, "")
			if got := schemaOf(t, db); got != SchemaVersion {
				t.Fatalf("schema after open = %d, want %d", got, SchemaVersion)
			}
			if commits < 5 {
				t.Errorf("the rewrite committed %d times, want many with a %d-byte bound", commits, rewriteTxBytes)
			}
			checkSchema4State(t, db, st)
			if _, err := os.Stat(db.File() + ".migrate"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the rewrite's temporary file is left: %v", err)
			}
			if fi, err := os.Stat(db.File()); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("state file mode after the rewrite: %v, %v; want 600", fi.Mode(), err)
			}
		})
	}
}

// A rewrite cut short (a crash, a full disk) leaves the old file as it
// was; the next open, which finds the cut-short copy, starts again.
func TestRewriteCutShortLeavesTheOldFile(t *testing.T) {
	shrink(t, &rewriteTxBytes, 256)
	dir := t.TempDir()
	st := schema4State()
	writeOld(t, dir, st)
	file := filepath.Join(dir, FileName)
	before := dumpFile(t, file)
	crash := errors.New("cut short")
	commits := 0
	rewriteCommitted = func() error {
		if commits++; commits == 3 {
			return crash
		}
		return nil
	}
	t.Cleanup(func() { rewriteCommitted = nil })
	if _, err := Open(dir, Options{Target: targetA}); !errors.Is(err, crash) {
		t.Fatalf("open with the rewrite cut short: %v, want it to fail", err)
	}
	if after := dumpFile(t, file); after != before {
		t.Fatalf("the old file changed although the rewrite did not complete:\n%s\nbefore:\n%s", after, before)
	}
	// A crash leaves the copy behind, not removed as the error path does.
	if err := os.WriteFile(file+".migrate", []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	rewriteCommitted = nil
	db := openT(t, dir, targetA)
	checkSchema4State(t, db, st)
}

// A record the rewrite cannot decode is left out, loudly; the rest of the
// state opens.
func TestRewriteLeavesOutCorruptRecords(t *testing.T) {
	dir := t.TempDir()
	st := schema4State()
	writeOld(t, dir, st)
	bad := st.paths[0]
	db0, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db0.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).Bucket([]byte(targetA)).Bucket(bucketPaths).Put([]byte(bad.Path), []byte{recordFormat, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	db0.Close()
	db := openT(t, dir, targetA)
	if _, err := db.GetPath(bad.Path); !errors.Is(err, ErrNotFound) {
		t.Errorf("the corrupt record: %v, want it left out", err)
	}
	st.paths = st.paths[1:]
	if got, err := db.GetPath(st.paths[0].Path); err != nil || !reflect.DeepEqual(got, st.paths[0]) {
		t.Errorf("a good record after a corrupt one: %+v, %v", got, err)
	}
}

// A schema 4 file opened read-only is refused with what to do.
func TestReadOnlyOpenOfSchema4(t *testing.T) {
	dir := t.TempDir()
	writeOld(t, dir, schema4State())
	_, err := OpenReadOnly(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "schema 4") || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("read-only open of schema 4: %v; want an error saying to open it writable once", err)
	}
}

// dumpFile lists every bucket, key and value of a closed bbolt file.
func dumpFile(t *testing.T, file string) string {
	t.Helper()
	bdb, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var sb strings.Builder
	var walk func(prefix string, b *bolt.Bucket)
	walk = func(prefix string, b *bolt.Bucket) {
		_ = b.ForEach(func(k, v []byte) error {
			if v == nil {
				walk(prefix+string(k)+"/", b.Bucket(k))
				return nil
			}
			fmt.Fprintf(&sb, "%s%q = %x\n", prefix, k, v)
			return nil
		})
	}
	_ = bdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			walk(string(name)+"/", b)
			return nil
		})
	})
	return sb.String()
}

// shrink sets *v to small for the test.
func shrink(t *testing.T, v *int, small int) {
	old := *v
	*v = small
	t.Cleanup(func() { *v = old })
}
