package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Layout of the file:
//
//	meta/                    schema version, last used target
//	targets/<target>/dirs      folder (path up to its last separator) -> folder id
//	                           NUL + folder id         -> folder
//	targets/<target>/paths     path key                -> PathRecord
//	targets/<target>/contents  hash (32 bytes)         -> Content, naming the first live path that holds it
//	                           hash + path key         -> refMarker (every other live path that holds it)
//	targets/<target>/holders   hash (32 bytes)         -> path key (the first live path that holds a
//	                                                      content not recorded yet, e.g. an upload in flight)
//	targets/<target>/intents   hash (32 bytes)         -> Intent
//	targets/<target>/deletes   trace id                -> Delete
//	targets/<target>/segments  path key + NUL + n (4 bytes) -> Segment (a growing file's earlier segments)
//	targets/<target>/inodes    dev + ino (16 bytes)    -> path key (live paths read as a chain: .jsonl)
//
// <target> is client.Target.String(), so another target starts clean. A
// path key is the id of the path's folder, then its base name
// (pathkey.go); folder ids are per target.
//
// A content's refs sit right after its record in the same bucket: recording
// a result dirties one random leaf page for both, not two, and at tens of
// thousands of results per second the pages written per commit are what
// the disk pays for. For the same reason a pending content's holder waits
// in the holders bucket, which holds only what is in flight and so stays a
// few hot pages, rather than as a stub under the hash: that stub cost a
// second random leaf of the contents bucket for every upload.
var (
	bucketMeta     = []byte("meta")
	bucketTargets  = []byte("targets")
	bucketPaths    = []byte("paths")
	bucketContents = []byte("contents")
	bucketHolders  = []byte("holders")
	bucketIntents  = []byte("intents")
	bucketDeletes  = []byte("deletes")
	bucketSegments = []byte("segments")
	bucketInodes   = []byte("inodes")
	bucketDirs     = []byte("dirs")

	keySchema     = []byte("schema")
	keyLastTarget = []byte("last_target")
)

// SchemaVersion is the layout this build writes.
//
// History:
//   - 1: paths, contents, intents and deletes per target; the paths of a
//     content were found by scanning every path record.
//   - 2: adds the refs index (hash+path keys beside each content record),
//     built from the path records by migrate1to2.
//   - 3: content records written since are front-coded (trace ids).
//     Older records decode as before and are left as they are, so the
//     step writes only the version: what it changes is that a build of
//     schema 2, which would call the new records corrupt, refuses the file
//     as too new instead.
//   - 4: adds the segments and inodes buckets and path records with a
//     chain (growing .jsonl). Builds that wrote them still said schema 3,
//     so a file of schema 3 may hold them; the step writes only the version.
//   - 5: path keys by folder (the dirs bucket), compact path and content
//     records, the first path of a content named in its record (refs.go).
//     rewrite4to5 (migrate.go) writes the whole file anew.
//   - 6: the holder of a content not recorded yet moves from a stub in the
//     contents bucket to the holders bucket (migrate5to6). Readers take a
//     stub as the holder still, so a read-only open reads schema 5 too.
const SchemaVersion uint32 = 6

// readableFrom is the oldest schema this build reads without migrating it
// (a read-only open cannot migrate).
const readableFrom uint32 = 5

// migrations[v] upgrades a file from schema v to v+1 inside the open
// transaction. Open runs every step from the file's version up to the
// first that has none here in one transaction, so a crash mid-migration
// leaves the old version intact; from schema 4, Open rewrites the file
// (rewrite4to5).
var migrations = map[uint32]func(tx *bolt.Tx) error{
	1: migrate1to2,
	2: func(*bolt.Tx) error { return nil }, // see SchemaVersion 3
	3: func(*bolt.Tx) error { return nil }, // see SchemaVersion 4; the rewrite to 5 creates the buckets
	5: migrate5to6,
}

// migrate5to6 moves the stubs of every target's contents bucket into its
// holders bucket. Open has moved them already, in transactions of at most
// stubsPerTx (moveSchema5Stubs), so this walk finds none left unless that
// was skipped; it also creates the bucket of a target without stubs.
func migrate5to6(tx *bolt.Tx) error {
	return eachNamespace(tx, func(ns *bolt.Bucket) error {
		var from []byte
		_, err := moveStubs(ns, &from, math.MaxInt)
		return err
	})
}

// stubsPerTx bounds the stubs one transaction of the upgrade from schema 5
// moves: a state of a million pending files would otherwise move them all
// in one transaction, held in memory until it commits. Tests lower it.
var stubsPerTx = 50_000

// moveSchema5Stubs moves the stubs of a schema 5 file into the holders
// buckets in transactions of at most stubsPerTx, before the schema step
// records the move. A file left between two of them (a crash) reads as
// it should: a holder is looked for under the hash, then in the bucket.
func moveSchema5Stubs(bdb *bolt.DB, file string) error {
	var names [][]byte
	err := bdb.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if raw := meta.Get(keySchema); len(raw) != 4 || binary.BigEndian.Uint32(raw) != 5 {
			return nil
		}
		if targets := tx.Bucket(bucketTargets); targets != nil {
			return targets.ForEachBucket(func(name []byte) error {
				names = append(names, bytes.Clone(name))
				return nil
			})
		}
		return nil
	})
	for _, name := range names {
		var from []byte
		for err == nil {
			moved := 0
			err = bdb.Update(func(tx *bolt.Tx) error {
				var err error
				moved, err = moveStubs(tx.Bucket(bucketTargets).Bucket(name), &from, stubsPerTx)
				return err
			})
			if moved < stubsPerTx {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("migrate state %s from schema 5 to 6: %w", file, err)
	}
	return nil
}

// moveStubs moves up to limit stubs of one target's contents bucket, after
// the key *from (from the first when nil), into its holders bucket, and
// sets *from to the last key it moved. It returns how many it moved.
func moveStubs(ns *bolt.Bucket, from *[]byte, limit int) (int, error) {
	holders, err := ns.CreateBucketIfNotExists(bucketHolders)
	if err != nil {
		return 0, err
	}
	contents := ns.Bucket(bucketContents)
	if contents == nil {
		return 0, nil
	}
	var stubs [][2][]byte
	c := contents.Cursor()
	k, v := c.First()
	if *from != nil {
		if k, v = c.Seek(*from); bytes.Equal(k, *from) {
			k, v = c.Next()
		}
	}
	for ; k != nil && len(stubs) < limit; k, v = c.Next() {
		if isRefKey(k) || isRecord(k, v) {
			continue
		}
		holder, _, err := contentHolder(k, v)
		if err != nil {
			return 0, err
		}
		stubs = append(stubs, [2][]byte{bytes.Clone(k), bytes.Clone(holder)})
	}
	for _, s := range stubs {
		if err := holders.Put(s[0], s[1]); err != nil {
			return 0, err
		}
		if err := contents.Delete(s[0]); err != nil {
			return 0, err
		}
		*from = s[0]
	}
	return len(stubs), nil
}

// eachNamespace calls fn with the bucket of every target the file holds.
func eachNamespace(tx *bolt.Tx, fn func(ns *bolt.Bucket) error) error {
	targets := tx.Bucket(bucketTargets)
	if targets == nil {
		return nil
	}
	return targets.ForEachBucket(func(name []byte) error { return fn(targets.Bucket(name)) })
}

// migrate1to2 builds the refs index of every target from its path records.
func migrate1to2(tx *bolt.Tx) error {
	return eachNamespace(tx, func(ns *bolt.Bucket) error {
		contents, err := ns.CreateBucketIfNotExists(bucketContents)
		if err != nil {
			return err
		}
		paths := ns.Bucket(bucketPaths)
		if paths == nil {
			return nil
		}
		return paths.ForEach(func(k, v []byte) error {
			rec, err := decodePathV4(k, v)
			if err != nil {
				return err
			}
			if !isRef(&rec) {
				return nil
			}
			return contents.Put(refKey(rec.Hash, k), refMarker)
		})
	})
}

// errRewrite is returned by initSchema when the file, brought as far as
// the in-transaction steps go, must be rewritten to reach SchemaVersion.
var errRewrite = errors.New("store: the state file must be rewritten to the current schema")

// initSchema creates or migrates the layout and resolves the target.
func (db *DB) initSchema(bdb *bolt.DB, target string) error {
	rewrite := false
	err := bdb.Update(func(tx *bolt.Tx) error {
		rewrite = false // fn may run again
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			foreign := false
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				foreign = true
				return nil
			})
			if foreign {
				return fmt.Errorf("open state %s: %w (it holds buckets tracesync does not know); move it away", db.file, ErrNotStateFile)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := putSchema(meta, SchemaVersion); err != nil {
				return err
			}
		}
		version, err := schemaVersion(meta, db.file)
		if err != nil {
			return err
		}
		v := version
		for ; v < SchemaVersion; v++ {
			step, ok := migrations[v]
			if !ok && v == rewriteFrom {
				rewrite = true
				break
			}
			if !ok {
				return fmt.Errorf("open state %s: %w %d; move it away", db.file, ErrNoMigration, v)
			}
			if err := step(tx); err != nil {
				return fmt.Errorf("migrate state %s from schema %d to %d: %w", db.file, v, v+1, err)
			}
			db.log.Info().Str("state", db.file).Uint32("from", v).Uint32("to", v+1).Msg("migrated state schema")
		}
		if version != v {
			if err := putSchema(meta, v); err != nil {
				return err
			}
		}
		if rewrite {
			return nil
		}
		if _, err := tx.CreateBucketIfNotExists(bucketTargets); err != nil {
			return err
		}
		if err := ensureCounts(tx); err != nil { // a state from before the counters
			return err
		}

		if target == "" {
			db.target = string(meta.Get(keyLastTarget))
			return nil
		}
		db.target = target
		if string(meta.Get(keyLastTarget)) != target {
			if err := meta.Put(keyLastTarget, []byte(target)); err != nil {
				return err
			}
		}
		return createNamespace(tx, target)
	})
	if err == nil && rewrite {
		return errRewrite
	}
	return err
}

func putSchema(meta *bolt.Bucket, v uint32) error {
	return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, v))
}

// createNamespace creates the buckets of one target.
func createNamespace(tx *bolt.Tx, target string) error {
	ns, err := tx.Bucket(bucketTargets).CreateBucketIfNotExists([]byte(target))
	if err != nil {
		return fmt.Errorf("create namespace for target %q: %w", target, err)
	}
	for _, name := range [][]byte{bucketPaths, bucketContents, bucketHolders, bucketIntents, bucketDeletes, bucketSegments, bucketInodes, bucketDirs} {
		if _, err := ns.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create namespace for target %q: %w", target, err)
		}
	}
	if ns.Bucket(bucketCounts) == nil {
		return buildCounts(ns)
	}
	return nil
}

// schemaVersion reads the schema version of the state file file from its
// meta bucket, refusing a file without one and a file of a newer schema.
func schemaVersion(meta *bolt.Bucket, file string) (uint32, error) {
	raw := meta.Get(keySchema)
	if len(raw) != 4 {
		return 0, fmt.Errorf("open state %s: %w (no schema version); move it away", file, ErrNotStateFile)
	}
	version := binary.BigEndian.Uint32(raw)
	if version > SchemaVersion {
		return 0, &SchemaError{File: file, Found: version, Known: SchemaVersion}
	}
	return version, nil
}
