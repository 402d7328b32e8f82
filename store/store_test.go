package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	targetA = "https://api.example|org-a|proj-a"
	targetB = "https://api.example|org-b|proj-b"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)

func hashOf(s string) Hash { return sha256.Sum256([]byte(s)) }

// openT opens dir for target and closes it at the end of the test.
func openT(t *testing.T, dir, target string) *DB {
	t.Helper()
	db, err := Open(dir, Options{Target: target, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func update(t *testing.T, db *DB, fn func(*Tx) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func pathRec(path, content string, state State) PathRecord {
	var h Hash
	if content != "" {
		h = hashOf(content)
	}
	return PathRecord{
		Path: path, Root: "/r", Hash: h, Size: int64(len(content)), ModTime: t0,
		Dev: 7, Ino: uint64(len(path)), State: state, FirstSeen: t0, UpdatedAt: t0,
	}
}

// checkConsistent verifies that the refs index matches the path records of
// db's namespace exactly, that every folder id resolves both ways, that
// bbolt's own check passes, and that the counters and indexes equal what
// a walk computes.
func checkConsistent(t *testing.T, db *DB) {
	t.Helper()
	err := db.bolt.View(func(btx *bolt.Tx) error {
		for err := range btx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		tx := newTx(btx, db.target, newDirCache())
		if tx.paths == nil {
			return nil
		}
		if err := tx.dirs.ForEach(func(k, v []byte) error {
			if k[0] == dirIDPrefix {
				return nil
			}
			id, _ := readDirID(v)
			if back := tx.dirs.Get(dirIDKey(id)); string(back) != string(k) {
				return fmt.Errorf("folder %q has id %d, which maps back to %q", k, id, back)
			}
			return nil
		}); err != nil {
			return err
		}
		want := map[string]bool{}
		if err := tx.paths.ForEach(func(k, v []byte) error {
			path, err := tx.pathOf(k)
			if err != nil {
				return err
			}
			rec, err := tx.record(path, v)
			if err != nil {
				return err
			}
			if isRef(&rec) {
				want[string(refKey(rec.Hash, k))] = true
				segs, err := tx.Chain(rec.Path)
				if err != nil {
					return err
				}
				if len(segs) != rec.Prior {
					return fmt.Errorf("path %q: Prior %d, but %d earlier segments recorded", rec.Path, rec.Prior, len(segs))
				}
				for _, s := range segs {
					want[string(refKey(s.Hash, k))] = true
				}
			}
			return nil
		}); err != nil {
			return err
		}
		// What the contents and holders buckets say: each holder, each ref
		// key. A ref key is never there without a holder, nor the holder
		// again; a content is never in both buckets, and no stub is left.
		got := map[string]bool{}
		holders := map[string][]byte{}
		if err := tx.holders.ForEach(func(k, v []byte) error {
			if len(k) != len(Hash{}) || len(v) == 0 {
				return fmt.Errorf("holders bucket: key %x, value %q", k, v)
			}
			holders[string(k)] = bytes.Clone(v)
			got[string(k)+string(v)] = true
			return nil
		}); err != nil {
			return err
		}
		if err := tx.contents.ForEach(func(k, v []byte) error {
			if !isRefKey(k) {
				holder, record, err := contentHolder(k, v)
				if err != nil {
					return err
				}
				if !record {
					return fmt.Errorf("a stub of %x is in the contents bucket", k[:8])
				}
				if _, ok := holders[string(k)]; ok {
					return fmt.Errorf("%x has a content record and an entry in the holders bucket", k[:8])
				}
				if holder != nil {
					holders[string(k)] = holder
					got[string(k)+string(holder)] = true
				}
				return nil
			}
			holder, ok := holders[string(k[:32])]
			switch {
			case !ok:
				return fmt.Errorf("ref key %q of %x without a holder", k[32:], k[:8])
			case bytes.Equal(holder, k[32:]):
				return fmt.Errorf("the holder of %x is a ref key too", k[:8])
			}
			got[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		name := func(k string) string {
			p, err := tx.pathOf([]byte(k[32:]))
			if err != nil {
				return fmt.Sprintf("key %q (%v)", k[32:], err)
			}
			return p
		}
		for k := range want {
			if !got[k] {
				return fmt.Errorf("path %q (hash %x) is live but missing from refs", name(k), k[:8])
			}
		}
		for k := range got {
			if !want[k] {
				return fmt.Errorf("refs holds %q (hash %x) but no live record has that hash", name(k), k[:8])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("store inconsistent: %v", err)
	}
	checkCounts(t, db)
}

func TestOpenModesAndPIDFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db := openT(t, dir, targetA)
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {db.File(), 0o600}, {filepath.Join(dir, PIDFileName), 0o600}} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("stat %s: %v", c.path, err)
		}
		if got := st.Mode().Perm(); got != c.mode {
			t.Errorf("%s: mode %o, want %o", c.path, got, c.mode)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, PIDFileName))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file: got %q (%v), want %d", b, err, os.Getpid())
	}
	if db.File() != filepath.Join(dir, FileName) {
		t.Errorf("File() = %s, want %s", db.File(), filepath.Join(dir, FileName))
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file still there after Close (stat err %v)", err)
	}
}

func TestOpenTightensLooseFileMode(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	db.Close()
	if err := os.Chmod(db.File(), 0o644); err != nil {
		t.Fatal(err)
	}
	db = openT(t, dir, targetA)
	st, err := os.Stat(db.File())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %o after reopen, want 600", st.Mode().Perm())
	}
}

func TestSecondOpenIsLockedWithPID(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, targetA)
	_, err := Open(dir, Options{Target: targetA, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second open: %T is not a *LockedError", err)
	}
	if le.PID != os.Getpid() || le.File != filepath.Join(dir, FileName) {
		t.Errorf("LockedError{File: %s, PID: %d}, want {%s, %d}", le.File, le.PID, filepath.Join(dir, FileName), os.Getpid())
	}
	msg := err.Error()
	for _, want := range []string{filepath.Join(dir, FileName), "pid " + strconv.Itoa(os.Getpid()), "; stop it"} {
		if !strings.Contains(msg, want) {
			t.Errorf("lock message %q does not say %q", msg, want)
		}
	}
}

func TestLinkTwoPathsOneHash(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	h := hashOf("same bytes")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, Filename: "a.json", Size: 10, TraceIDs: []string{"t1", "t2"}, UploadedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutPath(pathRec("/r/a.json", "same bytes", StateUploaded)); err != nil {
			return err
		}
		return tx.PutPath(pathRec("/r/copy/b.json", "same bytes", StateUploaded))
	})
	refs, err := db.Refs(h)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/r/a.json", "/r/copy/b.json"}; !slices.Equal(refs, want) {
		t.Fatalf("Refs = %v, want %v", refs, want)
	}
	update(t, db, func(tx *Tx) error {
		if n := tx.RefCount(h); n != 2 {
			return fmt.Errorf("RefCount = %d, want 2", n)
		}
		return nil
	})
	c, err := db.GetContent(h)
	if err != nil {
		t.Fatalf("GetContent: %v", err)
	}
	want := Content{Hash: h, Filename: "a.json", Size: 10, TraceIDs: []string{"t1", "t2"}, UploadedAt: t0}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("GetContent = %+v, want %+v", c, want)
	}
	checkConsistent(t, db)
}

func TestPathRecordRoundTrip(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	rec := PathRecord{
		Path: "/r/ü/a b.jsonl", Root: "/r", Hash: hashOf("x"), Size: 1 << 40, ModTime: t0,
		Dev: 1<<63 + 5, Ino: 99, State: StateRetrying, Attempts: 7, NextAttempt: t0.Add(time.Minute),
		LastError: "503 from server: retrying", FirstSeen: t0.Add(-time.Hour), UpdatedAt: t0,
	}
	update(t, db, func(tx *Tx) error { return tx.PutPath(rec) })
	got, err := db.GetPath(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("GetPath = %+v\nwant %+v", got, rec)
	}
	if _, err := db.GetPath("/r/none.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetPath of unknown path: %v, want ErrNotFound", err)
	}
	if _, err := db.GetContent(hashOf("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetContent of unknown hash: %v, want ErrNotFound", err)
	}
	err = db.Update(context.Background(), func(tx *Tx) error {
		return tx.PutPath(PathRecord{Path: "/r/x.json", State: "bogus"})
	})
	if err == nil {
		t.Errorf("PutPath with state %q succeeded, want an error", "bogus")
	}
}

func TestUnlinkWithRefCounts(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	h := hashOf("c")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, TraceIDs: []string{"t1"}}); err != nil {
			return err
		}
		for _, p := range []string{"/r/1.json", "/r/2.json", "/r/3.json"} {
			if err := tx.PutPath(pathRec(p, "c", StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	at := t0.Add(time.Hour)
	for i, p := range []string{"/r/2.json", "/r/1.json", "/r/3.json"} {
		var before PathRecord
		var left int
		update(t, db, func(tx *Tx) error {
			var err error
			before, err = tx.RemovePath(p, at)
			left = tx.RefCount(h)
			return err
		})
		if before.State != StateUploaded {
			t.Errorf("RemovePath(%s) returned state %s, want the record as it was (uploaded)", p, before.State)
		}
		if want := 2 - i; left != want {
			t.Errorf("after removing %s: RefCount = %d, want %d", p, left, want)
		}
		rec, err := db.GetPath(p)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != StateRemoved || !rec.RemovedAt.Equal(at) || rec.Hash != h {
			t.Errorf("removed record %s: state %s removedAt %v hash kept %v", p, rec.State, rec.RemovedAt, rec.Hash == h)
		}
		checkConsistent(t, db)
	}
	if _, err := db.GetContent(h); err != nil {
		t.Errorf("content record gone after RemovePath: %v (only Prune or ForgetPath drop it)", err)
	}
	err := db.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.RemovePath("/r/unknown.json", at)
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("RemovePath of unknown path: %v, want ErrNotFound", err)
	}
	// A removed path that comes back with the same bytes refs the content again.
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/1.json", "c", StateUploaded)) })
	if refs, _ := db.Refs(h); !slices.Equal(refs, []string{"/r/1.json"}) {
		t.Errorf("Refs after the path came back = %v, want [/r/1.json]", refs)
	}
	checkConsistent(t, db)
}

func TestChangedContentMovesRef(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/a.json", "v1", StateUploaded)) })
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/a.json", "v2", StatePending)) })
	if refs, _ := db.Refs(hashOf("v1")); len(refs) != 0 {
		t.Errorf("old content still referenced by %v", refs)
	}
	if refs, _ := db.Refs(hashOf("v2")); !slices.Equal(refs, []string{"/r/a.json"}) {
		t.Errorf("new content refs = %v, want [/r/a.json]", refs)
	}
	// Not hashed yet (zero hash): no ref at all.
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/a.json", "", StatePending)) })
	if refs, _ := db.Refs(hashOf("v2")); len(refs) != 0 {
		t.Errorf("content still referenced by %v after the path lost its hash", refs)
	}
	checkConsistent(t, db)
}

func TestForgetPath(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	h := hashOf("shared")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, TraceIDs: []string{"t1"}}); err != nil {
			return err
		}
		if err := tx.PutPath(pathRec("/r/a.json", "shared", StateUploaded)); err != nil {
			return err
		}
		return tx.PutPath(pathRec("/r/b.json", "shared", StateUploaded))
	})
	update(t, db, func(tx *Tx) error { return tx.ForgetPath("/r/a.json") })
	if _, err := db.GetPath("/r/a.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("forgotten path still has a record (err %v)", err)
	}
	if _, err := db.GetContent(h); err != nil {
		t.Errorf("content dropped while /r/b.json still references it: %v", err)
	}
	update(t, db, func(tx *Tx) error { return tx.ForgetPath("/r/b.json") })
	if _, err := db.GetContent(h); !errors.Is(err, ErrNotFound) {
		t.Errorf("content kept after its last path was forgotten (err %v), want it dropped so the next scan uploads again", err)
	}
	err := db.Update(context.Background(), func(tx *Tx) error { return tx.ForgetPath("/r/a.json") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("ForgetPath of unknown path: %v, want ErrNotFound", err)
	}
	checkConsistent(t, db)
}

func TestIntents(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	i1 := Intent{Hash: hashOf("1"), Path: "/r/1.json", Filename: "1.json", Size: 1, Phase: PhasePresign, StartedAt: t0}
	i2 := Intent{Hash: hashOf("2"), Path: "/r/2.json", Filename: "2.json", Size: 2, Phase: PhaseCreate, StartedAt: t0.Add(time.Second)}
	update(t, db, func(tx *Tx) error {
		if err := tx.PutIntent(i1); err != nil {
			return err
		}
		return tx.PutIntent(i2)
	})
	db.Close()
	db = openT(t, dir, targetA)
	got, err := db.Intents()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b Intent) int { return strings.Compare(a.Path, b.Path) })
	if !reflect.DeepEqual(got, []Intent{i1, i2}) {
		t.Fatalf("Intents after reopen = %+v, want %+v", got, []Intent{i1, i2})
	}
	// Recording the traces and clearing the intent is one transaction (rule 9).
	update(t, db, func(tx *Tx) error {
		in, err := tx.GetIntent(i2.Hash)
		if err != nil {
			return err
		}
		if err := tx.PutContent(Content{Hash: in.Hash, Filename: in.Filename, TraceIDs: []string{"t9"}}); err != nil {
			return err
		}
		return tx.DeleteIntent(in.Hash)
	})
	got, _ = db.Intents()
	if !reflect.DeepEqual(got, []Intent{i1}) {
		t.Errorf("Intents after clearing %s = %+v, want only %s", i2.Path, got, i1.Path)
	}
	err = db.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.GetIntent(i2.Hash)
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("GetIntent of cleared intent: %v, want ErrNotFound", err)
	}
}

func TestDeletes(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	d1 := Delete{TraceID: "trace-1", Hash: hashOf("x"), Attempts: 2, NextAttempt: t0.Add(time.Minute), LastError: "503", QueuedAt: t0}
	d2 := Delete{TraceID: "trace-2", Hash: hashOf("x"), QueuedAt: t0}
	update(t, db, func(tx *Tx) error {
		if err := tx.PutDelete(d1); err != nil {
			return err
		}
		return tx.PutDelete(d2)
	})
	db.Close()
	db = openT(t, dir, targetA)
	got, err := db.Deletes()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Delete{d1, d2}) {
		t.Fatalf("Deletes after reopen = %+v, want %+v", got, []Delete{d1, d2})
	}
	if among, err := db.DeletesAmong([]string{"trace-1", "trace-3"}); err != nil || !reflect.DeepEqual(among, map[string]bool{"trace-1": true}) {
		t.Fatalf("DeletesAmong(trace-1, trace-3) = %v, %v; want trace-1 only", among, err)
	}
	update(t, db, func(tx *Tx) error { return tx.DeleteDelete("trace-1") })
	got, _ = db.Deletes()
	if !reflect.DeepEqual(got, []Delete{d2}) {
		t.Errorf("Deletes after DeleteDelete(trace-1) = %+v, want [trace-2]", got)
	}
	c, _ := db.Counts()
	if c.DeletesPending != 1 {
		t.Errorf("Counts.DeletesPending = %d, want 1", c.DeletesPending)
	}
}

func TestNamespacedByTarget(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	h := hashOf("c")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, TraceIDs: []string{"id-from-a"}}); err != nil {
			return err
		}
		return tx.PutPath(pathRec("/r/a.json", "c", StateUploaded))
	})
	db.Close()

	db = openT(t, dir, targetB)
	if db.Target() != targetB {
		t.Errorf("Target() = %q, want %q", db.Target(), targetB)
	}
	if _, err := db.GetContent(h); !errors.Is(err, ErrNotFound) {
		t.Errorf("target B sees target A's content (err %v): ids must not be reused across targets", err)
	}
	if _, ok := db.Unchanged("/r/a.json", 7, uint64(len("/r/a.json")), 1, t0); ok {
		t.Errorf("target B trusts target A's path record")
	}
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/b.json", "d", StatePending)) })
	db.Close()

	db = openT(t, dir, "")
	if db.Target() != targetB {
		t.Errorf("Open with Target \"\": Target() = %q, want the last used %q", db.Target(), targetB)
	}
	if _, err := db.GetPath("/r/b.json"); err != nil {
		t.Errorf("last-used namespace: %v", err)
	}
	db.Close()

	db = openT(t, dir, targetA)
	if c, err := db.GetContent(h); err != nil || !slices.Equal(c.TraceIDs, []string{"id-from-a"}) {
		t.Errorf("target A's content after using B: %+v, %v", c, err)
	}
	if _, err := db.GetPath("/r/b.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("target A sees target B's path (err %v)", err)
	}
}

func TestNeverUsedFileHasNoTarget(t *testing.T) {
	db := openT(t, t.TempDir(), "")
	if db.Target() != "" {
		t.Fatalf("Target() = %q, want \"\"", db.Target())
	}
	c, err := db.Counts()
	if err != nil || c.Files[StatePending] != 0 {
		t.Fatalf("Counts on an unused file: %+v, %v", c, err)
	}
	if err := db.Update(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("Update with no target: %v, want ErrNoTarget", err)
	}
}

func schemaOf(t *testing.T, db *DB) uint32 {
	t.Helper()
	var v uint32
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		v = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	return v
}

func TestMigrateFromSchema1(t *testing.T) {
	dir := t.TempDir()
	writeOld(t, dir, oldState{version: 1, noRefs: true, noChains: true, paths: []PathRecord{
		pathRec("/r/a.json", "c", StateUploaded),
		pathRec("/r/b.json", "c", StateUploaded),
		pathRec("/r/gone.json", "c", StateRemoved),
		pathRec("/r/new.json", "", StatePending)}})
	db := openT(t, dir, "")
	if v := schemaOf(t, db); v != SchemaVersion {
		t.Fatalf("schema after open = %d, want %d", v, SchemaVersion)
	}
	if refs, _ := db.Refs(hashOf("c")); !slices.Equal(refs, []string{"/r/a.json", "/r/b.json"}) {
		t.Fatalf("refs built by migration = %v, want [/r/a.json /r/b.json]", refs)
	}
	checkConsistent(t, db)
}

func TestNewerSchemaIsRefused(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/a.json", "c", StateUploaded)) })
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(dir, Options{Target: targetA})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "upgrade tracesync") {
		t.Errorf("message %q does not say what to do", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "corrupt") {
			t.Errorf("a newer-schema file was moved aside as corrupt: %s", e.Name())
		}
	}
}

func TestForeignBoltFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("someone-else")); return err })
	bdb.Close()
	if _, err := Open(dir, Options{Target: targetA}); !errors.Is(err, ErrNotStateFile) {
		t.Fatalf("open of a foreign bbolt file: %v, want ErrNotStateFile", err)
	}
	// Compact leaves it as it is too.
	before, _ := os.ReadFile(filepath.Join(dir, FileName))
	if _, _, err := Compact(dir); !errors.Is(err, ErrNotStateFile) {
		t.Fatalf("compact of a foreign bbolt file: %v, want ErrNotStateFile", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, FileName)); !bytes.Equal(before, after) {
		t.Fatalf("compact rewrote a bbolt file tracesync did not write")
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	now := t0.Add(100 * 24 * time.Hour)
	db, err := Open(dir, Options{Target: targetA, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	old, recent := now.Add(-31*24*time.Hour), now.Add(-24*time.Hour)
	update(t, db, func(tx *Tx) error {
		for _, c := range []string{"live", "old-removed", "recent-removed", "orphan", "delete-pending", "intent"} {
			if err := tx.PutContent(Content{Hash: hashOf(c), TraceIDs: []string{c}}); err != nil {
				return err
			}
		}
		if err := tx.PutPath(pathRec("/r/live.json", "live", StateUploaded)); err != nil {
			return err
		}
		for p, at := range map[string]time.Time{"old-removed": old, "recent-removed": recent} {
			r := pathRec("/r/"+p+".json", p, StateRemoved)
			r.RemovedAt = at
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		if err := tx.PutDelete(Delete{TraceID: "x", Hash: hashOf("delete-pending")}); err != nil {
			return err
		}
		return tx.PutIntent(Intent{Hash: hashOf("intent"), Phase: PhaseCreate})
	})
	st, err := db.Prune(context.Background(), DefaultRetention)
	if err != nil {
		t.Fatal(err)
	}
	if st != (PruneStats{Paths: 1, Contents: 2}) {
		t.Errorf("Prune = %+v, want {Paths:1 Contents:2}", st)
	}
	if _, err := db.GetPath("/r/old-removed.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("path removed 31 days ago kept (err %v)", err)
	}
	if _, err := db.GetPath("/r/recent-removed.json"); err != nil {
		t.Errorf("path removed 1 day ago pruned: %v", err)
	}
	for c, kept := range map[string]bool{"live": true, "recent-removed": true, "delete-pending": true, "intent": true, "old-removed": false, "orphan": false} {
		_, err := db.GetContent(hashOf(c))
		if kept && err != nil {
			t.Errorf("content %q pruned, want kept: %v", c, err)
		}
		if !kept && !errors.Is(err, ErrNotFound) {
			t.Errorf("content %q kept (err %v), want pruned", c, err)
		}
	}
	checkConsistent(t, db)
}

func TestCorruptGarbageFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	garbage := []byte(strings.Repeat("this is not a bbolt file ", 2000))
	if err := os.WriteFile(filepath.Join(dir, FileName), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	db := openT(t, dir, targetA)
	checkRecovered(t, db, garbage)
}

func TestCorruptTinyFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openT(t, dir, targetA)
	checkRecovered(t, db, []byte("x"))
}

func TestCorruptTruncatedFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error {
		for i := range 3000 {
			p := fmt.Sprintf("/r/%05d-%s.json", i, strings.Repeat("long-name", 10))
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	var used int64 // the pages in use; the file may be longer (bbolt grows it in steps)
	_ = db.bolt.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	if err := os.Truncate(db.File(), used/2); err != nil {
		t.Fatal(err)
	}
	truncated, _ := os.ReadFile(db.File())
	db = openT(t, dir, targetA)
	checkRecovered(t, db, truncated)
}

func TestCorruptPagesAreMovedAside(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error {
		for i := range 3000 {
			p := fmt.Sprintf("/r/%05d.json", i)
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	// Garble every page after the two meta pages.
	b, err := os.ReadFile(db.File())
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	for i := 2 * page; i < len(b); i++ {
		b[i] = byte(i*31 + 7)
	}
	if err := os.WriteFile(db.File(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	db = openT(t, dir, targetA)
	checkRecovered(t, db, b)
}

func checkRecovered(t *testing.T, db *DB, oldBytes []byte) {
	t.Helper()
	moved := db.Recovered()
	if moved == "" {
		t.Fatalf("Recovered() = \"\" after opening a corrupt file")
	}
	got, err := os.ReadFile(moved)
	if err != nil {
		t.Fatalf("moved-aside file: %v", err)
	}
	if string(got) != string(oldBytes) {
		t.Errorf("moved-aside file %s differs from the corrupt file (%d bytes, want %d)", moved, len(got), len(oldBytes))
	}
	if !strings.HasPrefix(filepath.Base(moved), FileName+".corrupt-") {
		t.Errorf("moved to %s, want %s.corrupt-<timestamp>", moved, FileName)
	}
	// The fresh store works.
	update(t, db, func(tx *Tx) error { return tx.PutPath(pathRec("/r/after.json", "after", StatePending)) })
	if _, err := db.GetPath("/r/after.json"); err != nil {
		t.Errorf("fresh store after recovery: %v", err)
	}
	checkConsistent(t, db)
}

func TestValuesNotAliased(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	h := hashOf("c")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: h, Filename: "aaaa.json", TraceIDs: []string{"trace-aaaa"}}); err != nil {
			return err
		}
		r := pathRec("/r/a.json", "c", StateQuarantined)
		r.LastError = "error-aaaa"
		return tx.PutPath(r)
	})
	var inTx PathRecord
	var inTxContent Content
	update(t, db, func(tx *Tx) error {
		var err error
		if inTx, err = tx.GetPath("/r/a.json"); err != nil {
			return err
		}
		inTxContent, err = tx.GetContent(h)
		return err
	})
	rec, _ := db.GetPath("/r/a.json")
	c, _ := db.GetContent(h)
	// Overwrite the same keys with same-length values many times, so the
	// pages the earlier values came from are rewritten and reused.
	for i := range 50 {
		update(t, db, func(tx *Tx) error {
			if err := tx.PutContent(Content{Hash: h, Filename: "bbbb.json", TraceIDs: []string{fmt.Sprintf("trace-%04d", i)}}); err != nil {
				return err
			}
			r := pathRec("/r/a.json", "c", StateQuarantined)
			r.LastError = fmt.Sprintf("error-%04d", i)
			return tx.PutPath(r)
		})
	}
	for _, r := range []PathRecord{inTx, rec} {
		if r.LastError != "error-aaaa" || r.Path != "/r/a.json" {
			t.Errorf("record read earlier changed under us: %q %q", r.Path, r.LastError)
		}
	}
	for _, c := range []Content{inTxContent, c} {
		if c.Filename != "aaaa.json" || !slices.Equal(c.TraceIDs, []string{"trace-aaaa"}) {
			t.Errorf("content read earlier changed under us: %q %v", c.Filename, c.TraceIDs)
		}
	}
	c.TraceIDs[0] = "mutated by caller"
	if again, _ := db.GetContent(h); again.TraceIDs[0] == "mutated by caller" {
		t.Errorf("mutating a returned slice changed the store")
	}
}

func TestUnchanged(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	rec := pathRec("/r/a.json", "c", StateUploaded)
	update(t, db, func(tx *Tx) error {
		if err := tx.PutPath(rec); err != nil {
			return err
		}
		return tx.PutPath(pathRec("/r/unhashed.json", "", StatePending))
	})
	if got, ok := db.Unchanged(rec.Path, rec.Dev, rec.Ino, rec.Size, rec.ModTime.Local()); !ok || got.Hash != rec.Hash {
		t.Fatalf("Unchanged with the recorded stat = %v (hash ok %v), want true", ok, got.Hash == rec.Hash)
	}
	for name, c := range map[string]struct {
		path     string
		dev, ino uint64
		size     int64
		mtime    time.Time
	}{
		"other device": {rec.Path, rec.Dev + 1, rec.Ino, rec.Size, rec.ModTime},
		"other inode":  {rec.Path, rec.Dev, rec.Ino + 1, rec.Size, rec.ModTime},
		"other size":   {rec.Path, rec.Dev, rec.Ino, rec.Size + 1, rec.ModTime},
		"other mtime":  {rec.Path, rec.Dev, rec.Ino, rec.Size, rec.ModTime.Add(time.Nanosecond)},
		"unknown path": {"/r/none.json", rec.Dev, rec.Ino, rec.Size, rec.ModTime},
		"not hashed":   {"/r/unhashed.json", 7, uint64(len("/r/unhashed.json")), 0, t0},
	} {
		if _, ok := db.Unchanged(c.path, c.dev, c.ino, c.size, c.mtime); ok {
			t.Errorf("%s: Unchanged = true, want false", name)
		}
	}
	update(t, db, func(tx *Tx) error { _, err := tx.RemovePath(rec.Path, t0); return err })
	if _, ok := db.Unchanged(rec.Path, rec.Dev, rec.Ino, rec.Size, rec.ModTime); ok {
		t.Errorf("removed path: Unchanged = true, want false")
	}
}

func TestUpdateErrorFailsOnlyItsCaller(t *testing.T) {
	db, err := Open(t.TempDir(), Options{Target: targetA, CommitInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 20)
	for i := range 20 {
		wg.Go(func() {
			results[i] = db.Update(context.Background(), func(tx *Tx) error {
				if err := tx.PutPath(pathRec(fmt.Sprintf("/r/%02d.json", i), "c", StateUploaded)); err != nil {
					return err
				}
				switch i {
				case 5:
					return errBoom
				case 6:
					panic("update panicked")
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range results {
		_, getErr := db.GetPath(fmt.Sprintf("/r/%02d.json", i))
		switch i {
		case 5:
			if !errors.Is(err, errBoom) {
				t.Errorf("update %d: got %v, want its own error", i, err)
			}
			if getErr == nil {
				t.Errorf("update %d failed but its write was committed", i)
			}
		case 6:
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Errorf("update %d panicked: got %v, want a panic error", i, err)
			}
			if getErr == nil {
				t.Errorf("update %d panicked but its write was committed", i)
			}
		default:
			if err != nil || getErr != nil {
				t.Errorf("update %d: err %v, record %v: a neighbour's failure must not fail it", i, err, getErr)
			}
		}
	}
	checkConsistent(t, db)
}

func TestUpdateContextAndClose(t *testing.T) {
	db, err := Open(t.TempDir(), Options{Target: targetA})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := db.Update(ctx, func(*Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Update with a cancelled context: err %v, ran %v; want context.Canceled and not run", err, ran)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseCommitsQueuedUpdates(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Target: targetA, CommitInterval: time.Hour, MaxBatch: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	started := make(chan struct{}, 10)
	for i := range 10 {
		wg.Go(func() {
			started <- struct{}{}
			errs[i] = db.Update(context.Background(), func(tx *Tx) error {
				return tx.PutPath(pathRec(fmt.Sprintf("/r/%d.json", i), "c", StatePending))
			})
		})
	}
	for range 10 {
		<-started
	}
	// Every update is queued or about to be; Close must not lose one that
	// was handed over (the hour-long window is cut short by Close).
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db = openT(t, dir, targetA)
	for i, err := range errs {
		_, getErr := db.GetPath(fmt.Sprintf("/r/%d.json", i))
		if err == nil && getErr != nil {
			t.Errorf("update %d reported committed but is missing after reopen", i)
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("update %d: %v, want nil or ErrClosed", i, err)
		}
	}
}

func TestForEachPath(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	var want []string
	update(t, db, func(tx *Tx) error {
		for i := range 2500 {
			for _, root := range []string{"/a/", "/ab/", "/b/"} {
				p := fmt.Sprintf("%s%05d.json", root, i)
				if root == "/a/" {
					want = append(want, p)
				}
				if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	var got []string
	err := db.ForEachPath("/a/", func(r PathRecord) error {
		got = append(got, r.Path)
		if len(got)%1000 == 0 { // fn may write: it runs outside the read transaction
			return db.Update(context.Background(), func(tx *Tx) error {
				return tx.PutPath(pathRec("/z/written-during-walk.json", "z", StatePending))
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ForEachPath(/a/): %d paths (first %v), want %d in order", len(got), got[:min(3, len(got))], len(want))
	}
	n := 0
	if err := db.ForEachPath("", func(PathRecord) error { n++; return nil }); err != nil || n != 7501 {
		t.Errorf("ForEachPath(\"\") visited %d (err %v), want 7501", n, err)
	}
	stop := errors.New("stop")
	if err := db.ForEachPath("", func(PathRecord) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ForEachPath did not return fn's error: %v", err)
	}
}

func TestCountsAndRecentErrors(t *testing.T) {
	db := openT(t, t.TempDir(), targetA)
	update(t, db, func(tx *Tx) error {
		if err := tx.PutContent(Content{Hash: hashOf("a"), TraceIDs: []string{"1", "2"}}); err != nil {
			return err
		}
		if err := tx.PutContent(Content{Hash: hashOf("b"), TraceIDs: []string{"3"}}); err != nil {
			return err
		}
		for i, s := range []State{StateUploaded, StateUploaded, StateQuarantined, StateRetrying, StatePending} {
			r := pathRec(fmt.Sprintf("/r/%d.json", i), "a", s)
			if s == StateQuarantined || s == StateRetrying {
				r.LastError = "failed " + string(s)
				r.UpdatedAt = t0.Add(time.Duration(i) * time.Minute)
			}
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		if err := tx.PutIntent(Intent{Hash: hashOf("b"), Phase: PhasePresign}); err != nil {
			return err
		}
		return tx.PutDelete(Delete{TraceID: "9", Hash: hashOf("z")})
	})
	c, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{
		Files:    map[State]int{StatePending: 1, StateRetrying: 1, StateUploaded: 2, StateQuarantined: 1, StateIncomplete: 0, StateSkipped: 0, StateRemoved: 0},
		Contents: 2, Traces: 3, DeletesPending: 1, Intents: 1,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Counts = %+v\nwant %+v", c, want)
	}
	errs, err := db.RecentErrors(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "/r/3.json" {
		t.Errorf("RecentErrors(1) = %+v, want the newest (/r/3.json)", errs)
	}
	if errs, _ := db.RecentErrors(10); len(errs) != 2 {
		t.Errorf("RecentErrors(10) returned %d, want 2", len(errs))
	}
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, targetA)
	update(t, db, func(tx *Tx) error {
		for i := range 5000 {
			p := fmt.Sprintf("/r/%05d.json", i)
			if err := tx.PutPath(pathRec(p, p, StateUploaded)); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, db, func(tx *Tx) error {
		for i := range 4900 {
			if err := tx.ForgetPath(fmt.Sprintf("/r/%05d.json", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if _, _, err := Compact(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("Compact while open: %v, want ErrLocked", err)
	}
	db.Close()
	before, after, err := Compact(dir)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Errorf("Compact: %d bytes before, %d after; want smaller", before, after)
	}
	db = openT(t, dir, "")
	n := 0
	_ = db.ForEachPath("", func(PathRecord) error { n++; return nil })
	if n != 100 || db.Target() != targetA {
		t.Errorf("after Compact: %d paths, target %q; want 100, %q", n, db.Target(), targetA)
	}
	st, _ := os.Stat(db.File())
	if st.Mode().Perm() != 0o600 {
		t.Errorf("compacted file mode %o, want 600", st.Mode().Perm())
	}
	checkConsistent(t, db)
}
