package store

// migrate.go owns the rewrite of a schema 4 file into the current schema:
// schema 5 changed every key and value, so it writes a new file, as
// compaction does, and renames it over the old one.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

// rewriteFrom is the schema the rewrite reads.
const rewriteFrom uint32 = 4

// rewriteTxBytes bounds what one transaction of the rewrite writes, so a
// state of millions of records is never held dirty in memory at once.
// Tests shrink it.
var rewriteTxBytes = 4 << 20

// rewriteCommitted, when set (by tests), is called after each commit of
// the rewrite; an error from it fails the rewrite there, as a crash would.
var rewriteCommitted func() error

// rewrite4to5 writes the schema 4 file src (open, and locked by this
// process) as the current schema into file.migrate, in transactions of at most
// rewriteTxBytes, each fsync'd, then renames it over file. A crash before
// the rename leaves the old file as it was (the next open starts again), a
// crash after it leaves the new one complete.
func rewrite4to5(src *bolt.DB, file string, log zerolog.Logger) error {
	tmp := file + ".migrate"
	_ = os.Remove(tmp) // a leftover of an interrupted rewrite
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: defaultTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	start := time.Now()
	log.Info().Str("state", file).Uint32("schema", SchemaVersion).Msg("rewriting the state file to the current schema (path keys by folder, compact records); the old file stays until the new one is complete")
	w := &rewriter{dst: dst, log: log}
	err = src.View(func(stx *bolt.Tx) error { return w.copyFile(stx) })
	if err == nil {
		err = w.commit()
	} else {
		w.rollback()
	}
	if cerr := closeTrimmed(dst); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("upgrade state %s to schema %d: %w (the file is as it was: mend that, e.g. free disk space, and start tracesync again)", file, SchemaVersion, err)
	}
	if err := syncDir(filepath.Dir(file)); err != nil {
		return err
	}
	if w.skipped > 0 {
		log.Error().Str("state", file).Int("records", w.skipped).Msg("records the rewrite could not decode were left out: the next scan reads those files again")
	}
	log.Info().Str("state", file).Int("records", w.records).Dur("took", time.Since(start)).Uint32("schema", SchemaVersion).Msg("migrated state schema")
	return nil
}

// rewriter writes the new file in transactions it commits as they grow.
type rewriter struct {
	dst     *bolt.DB
	btx     *bolt.Tx
	t       *Tx // the target being written, in btx
	target  string
	cache   *dirCache
	written int
	records int
	skipped int // records that did not decode
	log     zerolog.Logger
}

// skip notes a record that does not decode and leaves it out: a corrupt
// record must not keep the whole state from opening.
func (w *rewriter) skip(what string, k []byte, err error) error {
	w.skipped++
	w.log.Error().Str("target", w.target).Str("bucket", what).Hex("key", k).Err(err).Msg("state record does not decode: left out of the rewrite")
	return nil
}

// tx returns the target's Tx in the open write transaction, committing it
// and beginning the next once it has written rewriteTxBytes.
func (w *rewriter) tx() (*Tx, error) {
	if w.btx != nil && w.written < rewriteTxBytes {
		return w.t, nil
	}
	if err := w.commit(); err != nil {
		return nil, err
	}
	btx, err := w.dst.Begin(true)
	if err != nil {
		return nil, err
	}
	w.btx, w.written = btx, 0
	w.t = newTx(btx, w.target, w.cache)
	// Every bucket is written in key order here but the paths (in folder
	// order, nearly their old order): pages can be filled.
	for _, b := range []*bolt.Bucket{w.t.paths, w.t.contents, w.t.intents, w.t.deletes, w.t.segments, w.t.inodes, w.t.dirs} {
		if b != nil {
			b.FillPercent = 1
		}
	}
	return w.t, nil
}

func (w *rewriter) commit() error {
	if w.btx == nil {
		return nil
	}
	btx := w.btx
	w.btx = nil
	if err := btx.Commit(); err != nil {
		return err
	}
	if rewriteCommitted != nil {
		return rewriteCommitted()
	}
	return nil
}

func (w *rewriter) rollback() {
	if w.btx != nil {
		_ = w.btx.Rollback()
		w.btx = nil
	}
}

// put writes k and v into the bucket of the target's Tx that which picks.
func (w *rewriter) put(which func(*Tx) *bolt.Bucket, k, v []byte) error {
	t, err := w.tx()
	if err != nil {
		return err
	}
	w.written += len(k) + len(v) + 16
	w.records++
	return which(t).Put(k, v)
}

// copyFile writes the meta bucket and every target of stx anew.
func (w *rewriter) copyFile(stx *bolt.Tx) error {
	err := w.dst.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := stx.Bucket(bucketMeta).ForEach(func(k, v []byte) error { return meta.Put(k, v) }); err != nil {
			return err
		}
		if err := putSchema(meta, SchemaVersion); err != nil {
			return err
		}
		_, err = tx.CreateBucket(bucketTargets)
		return err
	})
	if err != nil {
		return err
	}
	targets := stx.Bucket(bucketTargets)
	if targets == nil {
		return nil
	}
	return targets.ForEachBucket(func(name []byte) error {
		if err := w.commit(); err != nil {
			return err
		}
		if err := w.dst.Update(func(tx *bolt.Tx) error { return createNamespace(tx, string(name)) }); err != nil {
			return err
		}
		w.target, w.cache = string(name), newDirCache()
		return w.copyTarget(targets.Bucket(name))
	})
}

// copyTarget writes one target's records in the new layout.
func (w *rewriter) copyTarget(ns *bolt.Bucket) error {
	paths := func(t *Tx) *bolt.Bucket { return t.paths }
	key := func(path []byte) ([]byte, error) {
		t, err := w.tx()
		if err != nil {
			return nil, err
		}
		return t.pathKey(string(path), true)
	}
	if b := ns.Bucket(bucketPaths); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			rec, err := decodePathV4(k, v)
			if err != nil {
				return w.skip("paths", k, err)
			}
			pk, err := key(k)
			if err != nil {
				return err
			}
			rootID, err := w.t.rootID(rec.Root, true)
			if err != nil {
				return err
			}
			return w.put(paths, pk, encodePath(&rec, rootID))
		})
		if err != nil {
			return fmt.Errorf("paths: %w", err)
		}
	}
	if b := ns.Bucket(bucketSegments); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			if len(k) < 6 || k[len(k)-5] != 0 {
				return w.skip("segments", k, ErrCorrupt)
			}
			pk, err := key(k[:len(k)-5])
			if err != nil {
				return err
			}
			nk := append(append(pk, 0), k[len(k)-4:]...)
			return w.put(func(t *Tx) *bolt.Bucket { return t.segments }, nk, v)
		})
		if err != nil {
			return fmt.Errorf("segments: %w", err)
		}
	}
	if b := ns.Bucket(bucketInodes); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			pk, err := key(v)
			if err != nil {
				return err
			}
			return w.put(func(t *Tx) *bolt.Bucket { return t.inodes }, k, pk)
		})
		if err != nil {
			return fmt.Errorf("inodes: %w", err)
		}
	}
	if b := ns.Bucket(bucketContents); b != nil {
		// A content's record and then its refs, hash by hash: the first
		// ref becomes the holder, the others stay ref keys.
		contents := func(t *Tx) *bolt.Bucket { return t.contents }
		var (
			hash    []byte
			content *Content
			holder  []byte
		)
		flush := func() error {
			switch {
			case content != nil:
				return w.put(contents, hash, encodeContent(content, holder))
			case holder != nil:
				return w.put(func(t *Tx) *bolt.Bucket { return t.holders }, hash, holder)
			}
			return nil
		}
		err := b.ForEach(func(k, v []byte) error {
			if len(k) < len(Hash{}) {
				return w.skip("contents", k, ErrCorrupt)
			}
			if h := k[:len(Hash{})]; !bytes.Equal(h, hash) {
				if err := flush(); err != nil {
					return err
				}
				hash, content, holder = h, nil, nil
			}
			if isRefKey(k) {
				pk, err := key(k[len(Hash{}):])
				switch {
				case err != nil:
					return err
				case holder == nil:
					holder = pk
					return nil
				}
				var h Hash
				copy(h[:], k)
				return w.put(contents, refKey(h, pk), refMarker)
			}
			c, err := decodeContentV4(k, v)
			if err != nil {
				return w.skip("contents", k, err)
			}
			content = &c
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("contents: %w", err)
		}
	}
	// Intents and deletes are keyed and encoded as before.
	for name, which := range map[string]func(*Tx) *bolt.Bucket{
		string(bucketIntents): func(t *Tx) *bolt.Bucket { return t.intents },
		string(bucketDeletes): func(t *Tx) *bolt.Bucket { return t.deletes },
	} {
		b := ns.Bucket([]byte(name))
		if b == nil {
			continue
		}
		if err := b.ForEach(func(k, v []byte) error { return w.put(which, k, v) }); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// The records went in as raw puts: count them and index them now.
	if err := w.commit(); err != nil {
		return err
	}
	return w.dst.Update(func(tx *bolt.Tx) error {
		return buildCounts(tx.Bucket(bucketTargets).Bucket([]byte(w.target)))
	})
}
