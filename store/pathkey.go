package store

// pathkey.go owns the dirs bucket and the keys built on it: a path's key
// is its folder's id then its base name, so a folder's path is stored once
// however many files it holds, and a root is the id of its folder.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// appendDirID appends a folder id in an order-preserving, prefix-free
// varint: as short as a uvarint for ids under 2^28, and ids created in
// ascending order give ascending keys, so a new folder's files go at the
// end of the paths bucket, not into pages already filled.
func appendDirID(b []byte, id uint64) []byte {
	switch {
	case id < 1<<7:
		return append(b, byte(id))
	case id < 1<<7+1<<14:
		v := id - 1<<7
		return append(b, 0x80|byte(v>>8), byte(v))
	case id < 1<<7+1<<14+1<<21:
		v := id - (1<<7 + 1<<14)
		return append(b, 0xc0|byte(v>>16), byte(v>>8), byte(v))
	case id < 1<<7+1<<14+1<<21+1<<28:
		v := id - (1<<7 + 1<<14 + 1<<21)
		return append(b, 0xe0|byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xff), id)
}

// readDirID reads appendDirID's encoding at the start of b and returns the
// id and its length; n is 0 when b does not start with one.
func readDirID(b []byte) (id uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	c := b[0]
	switch {
	case c < 0x80:
		return uint64(c), 1
	case c < 0xc0 && len(b) >= 2:
		return 1<<7 + (uint64(c&0x3f)<<8 | uint64(b[1])), 2
	case c >= 0xc0 && c < 0xe0 && len(b) >= 3:
		return 1<<7 + 1<<14 + (uint64(c&0x1f)<<16 | uint64(b[1])<<8 | uint64(b[2])), 3
	case c >= 0xe0 && c < 0xf0 && len(b) >= 4:
		return 1<<7 + 1<<14 + 1<<21 + (uint64(c&0x0f)<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])), 4
	case c == 0xff && len(b) >= 9:
		if id := binary.BigEndian.Uint64(b[1:9]); id >= 1<<7+1<<14+1<<21+1<<28 {
			return id, 9
		}
	}
	return 0, 0
}

// In the dirs bucket a folder (its path up to and with the last
// separator, as filepath.Split gives it) maps to its id, and dirIDPrefix +
// the id maps back to the folder. Folder paths never start with a NUL.
// Id 0 is the folder "" of a relative path, which has no entry.
const dirIDPrefix = 0

func dirIDKey(id uint64) []byte { return appendDirID([]byte{dirIDPrefix}, id) }

// errNoDir is returned by a lookup of a folder the dirs bucket does not
// hold: nothing is recorded under it.
var errNoDir = errors.New("store: folder not recorded")

// dirCacheSize bounds dirCache: enough for the folders a scan is working
// in, not every folder of a huge archive. Tests shrink it.
var dirCacheSize = 4096

// dirCache remembers folder ids both ways for every transaction of one
// DB's target. It holds only what committed transactions wrote, and
// nothing read before the last deletion of folders.
type dirCache struct {
	mu        sync.Mutex // guards the fields below
	byDir     map[string]uint64
	byID      map[uint64]string
	clearedAt uint64 // the id of the last transaction that deleted folders
}

func newDirCache() *dirCache {
	return &dirCache{byDir: map[string]uint64{}, byID: map[uint64]string{}}
}

func (c *dirCache) id(dir string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byDir[dir]
	return id, ok
}

func (c *dirCache) dir(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir, ok := c.byID[id]
	return dir, ok
}

// put remembers dir's id as read or written by transaction txid; a
// transaction older than the last deletion of folders may have read a
// folder that is gone.
func (c *dirCache) put(dir string, id uint64, txid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if uint64(txid) < c.clearedAt {
		return
	}
	if _, ok := c.byDir[dir]; ok {
		return
	}
	for len(c.byDir) >= dirCacheSize {
		for d, i := range c.byDir { // map order is random: a random eviction
			delete(c.byDir, d)
			delete(c.byID, i)
			break
		}
	}
	c.byDir[dir] = id
	c.byID[id] = dir
}

// clear forgets everything once transaction txid deleted folders.
func (c *dirCache) clear(txid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearedAt = max(c.clearedAt, uint64(txid))
	clear(c.byDir)
	clear(c.byID)
}

// dirWrites is what a write transaction did to the dirs bucket: the
// folders it created, which the cache learns only once it commits (a
// rollback must not leave an id that does not exist), and whether it
// deleted any (then the cache is not trusted until the commit clears it).
type dirWrites struct {
	created map[string]uint64
	byID    map[uint64]string
	deleted bool
}

// dirID returns the id of folder dir, creating it when create is set;
// errNoDir when it has none and create is not set.
func (t *Tx) dirID(dir string, create bool) (uint64, error) {
	if dir == "" {
		return 0, nil
	}
	if id, ok := t.dw.created[dir]; ok {
		return id, nil
	}
	if !t.dw.deleted {
		if id, ok := t.cache.id(dir); ok {
			return id, nil
		}
	}
	if t.dirs == nil {
		return 0, errNoDir
	}
	if v := t.dirs.Get([]byte(dir)); v != nil {
		id, n := readDirID(v)
		if n == 0 || n != len(v) {
			return 0, fmt.Errorf("folder %q: %w", dir, ErrCorrupt)
		}
		if !t.dw.deleted {
			t.cache.put(dir, id, t.btx.ID())
		}
		return id, nil
	}
	if !create {
		return 0, errNoDir
	}
	id, err := t.dirs.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := t.dirs.Put([]byte(dir), appendDirID(nil, id)); err != nil {
		return 0, err
	}
	if err := t.dirs.Put(dirIDKey(id), []byte(dir)); err != nil {
		return 0, err
	}
	if t.dw.created == nil {
		t.dw.created, t.dw.byID = map[string]uint64{}, map[uint64]string{}
		dw, cache, txid := &t.dw, t.cache, t.btx.ID()
		t.btx.OnCommit(func() {
			if dw.deleted {
				cache.clear(txid)
				return
			}
			for d, i := range dw.created {
				cache.put(d, i, txid)
			}
		})
	}
	t.dw.created[dir], t.dw.byID[id] = id, dir
	return id, nil
}

// dirPath returns the folder of id.
func (t *Tx) dirPath(id uint64) (string, error) {
	if id == 0 {
		return "", nil
	}
	if dir, ok := t.dw.byID[id]; ok {
		return dir, nil
	}
	if !t.dw.deleted {
		if dir, ok := t.cache.dir(id); ok {
			return dir, nil
		}
	}
	var v []byte
	if t.dirs != nil {
		v = t.dirs.Get(dirIDKey(id))
	}
	if v == nil {
		return "", fmt.Errorf("folder id %d has no folder: %w", id, ErrCorrupt)
	}
	dir := string(v)
	if !t.dw.deleted {
		t.cache.put(dir, id, t.btx.ID())
	}
	return dir, nil
}

// deleteDir drops folder dir (id) from the dirs bucket; no key may still
// use it.
func (t *Tx) deleteDir(dir string, id uint64) error {
	if !t.dw.deleted && t.dw.created == nil {
		cache, txid := t.cache, t.btx.ID()
		t.btx.OnCommit(func() { cache.clear(txid) })
	}
	t.dw.deleted = true
	delete(t.dw.created, dir)
	delete(t.dw.byID, id)
	if err := t.dirs.Delete([]byte(dir)); err != nil {
		return err
	}
	return t.dirs.Delete(dirIDKey(id))
}

// pathKey is the key of path: its folder's id, then its base name (the
// path split at its last separator). errNoDir when the folder is unknown
// and create is not set.
func (t *Tx) pathKey(path string, create bool) ([]byte, error) {
	dir, base := filepath.Split(path)
	id, err := t.dirID(dir, create)
	if err != nil {
		return nil, err
	}
	return append(appendDirID(make([]byte, 0, 4+len(base)), id), base...), nil
}

// pathOf turns a path key back into the path.
func (t *Tx) pathOf(key []byte) (string, error) {
	id, n := readDirID(key)
	if n == 0 {
		return "", fmt.Errorf("path key %q: %w", key, ErrCorrupt)
	}
	dir, err := t.dirPath(id)
	if err != nil {
		return "", err
	}
	return dir + string(key[n:]), nil
}

// rootFolder is the folder a root is stored as: roots are folders, kept
// as their path with a trailing separator. ok is false for a root that
// would not come back as it went in ("", or one with a trailing
// separator other than the file system root), which is stored as it is.
func rootFolder(root string) (string, bool) {
	const sep = string(os.PathSeparator)
	switch {
	case root == sep:
		return root, true
	case root == "" || strings.HasSuffix(root, sep):
		return "", false
	}
	return root + sep, true
}

// rootOfFolder is rootFolder's inverse.
func rootOfFolder(dir string) string {
	if dir == string(os.PathSeparator) {
		return dir
	}
	return strings.TrimSuffix(dir, string(os.PathSeparator))
}

// rootID is the folder id root is stored as, creating it when create is
// set; 0 when the root is stored as it is (see rootFolder).
func (t *Tx) rootID(root string, create bool) (uint64, error) {
	dir, ok := rootFolder(root)
	if !ok {
		return 0, nil
	}
	return t.dirID(dir, create)
}

// walkAt is where a walk of path records is: the folder and base name of
// the last record it visited.
type walkAt struct {
	dir  string
	base []byte
}

// walkPaths calls fn with the key and value of every path record whose
// path starts with prefix, folder by folder: the folders in path order,
// the names in each in byte order. With from set it starts after that
// record (a walk resumed in a later transaction). fn returns false to stop.
func (t *Tx) walkPaths(prefix string, from *walkAt, fn func(at walkAt, k, v []byte) (bool, error)) error {
	if t.paths == nil {
		return nil
	}
	pdir, pbase := filepath.Split(prefix)
	stopped := false
	scan := func(dir string, id uint64, after []byte) error {
		basePrefix := ""
		if dir == pdir {
			basePrefix = pbase
		}
		idLen := len(appendDirID(nil, id))
		p := append(appendDirID(nil, id), basePrefix...)
		c := t.paths.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(p)
		} else {
			seek := append(appendDirID(nil, id), after...)
			if k, v = c.Seek(seek); k != nil && bytes.Equal(k, seek) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			ok, err := fn(walkAt{dir: dir, base: bytes.Clone(k[idLen:])}, k, v)
			if err != nil || !ok {
				stopped = true
				return err
			}
		}
		return nil
	}
	visit := func(dir string, after []byte) error {
		id, err := t.dirID(dir, false)
		if errors.Is(err, errNoDir) {
			return nil
		}
		if err != nil {
			return err
		}
		return scan(dir, id, after)
	}
	if from != nil {
		if err := visit(from.dir, from.base); err != nil || stopped {
			return err
		}
	} else if pbase != "" || pdir == "" {
		// The folder the prefix ends in: its names that start with the
		// prefix's last part. It sorts before every folder below.
		if err := visit(pdir, nil); err != nil || stopped {
			return err
		}
	}
	if t.dirs == nil {
		return nil
	}
	c := t.dirs.Cursor()
	k, v := c.Seek([]byte(prefix))
	if from != nil && from.dir >= prefix {
		if k, v = c.Seek([]byte(from.dir)); k != nil && string(k) == from.dir {
			k, v = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
		if k[0] == dirIDPrefix {
			continue
		}
		id, n := readDirID(v)
		if n == 0 || n != len(v) {
			return fmt.Errorf("folder %q: %w", k, ErrCorrupt)
		}
		if err := scan(string(k), id, nil); err != nil || stopped {
			return err
		}
	}
	return nil
}
