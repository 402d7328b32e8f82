package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the state file's name inside the state directory.
const FileName = "state.db"

// PIDFileName is the file beside the state file that names the process
// holding it, for the "held by pid N" message.
const PIDFileName = "state.pid"

// Options configure Open. The zero value of each field is noted.
type Options struct {
	// Target is the namespace key (client.Target.String():
	// "baseURL|org|project"). "" means the target this file was last used
	// with (the read commands); a non-empty Target is recorded as the last
	// used one.
	Target string
	// Timeout is how long Open waits for the file lock; 0 means 1 s.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives the loud lines (corruption recovery, migrations); the
	// zero value logs nothing.
	Log zerolog.Logger
	// CommitInterval is how long the writer may wait, after the first
	// update of a transaction arrives, for more before committing. 0 (or
	// negative) means no wait: the writer commits as soon as it has drained
	// the queue, and the updates that arrive during that commit's fsync
	// share the next one. Under load that groups as many updates per
	// transaction as there are callers waiting (up to MaxBatch) without
	// adding latency, which a fixed wait would (see the commit that made
	// it so for the figures).
	CommitInterval time.Duration
	// MaxBatch is the most updates run in one transaction; 0 means
	// defaultMaxBatch.
	MaxBatch int
}

const (
	defaultTimeout  = time.Second
	defaultMaxBatch = 500

	// initialMmapSize is mapped up front so that the file can grow to it
	// without a remap, and a remap is what makes bbolt's writer wait for
	// every open read transaction. 256 MiB of address space holds roughly
	// half a million tracked paths; on Linux it does not grow the file.
	initialMmapSize = 256 << 20
)

// DB is an open state store. Reads may be called from any goroutine; writes
// go through Update, which groups them into few transactions.
type DB struct {
	bolt      *bolt.DB
	dir       string
	file      string
	pidFile   string
	target    string
	dirs      *dirCache // the target's folder ids
	recovered string
	handle    *os.File // bbolt's descriptor of the file, for CheckFile; nil when read-only
	now       func() time.Time
	log       zerolog.Logger

	commitInterval time.Duration
	maxBatch       int
	readOnly       bool // OpenReadOnly: no writer, no pid file

	// mu guards closed; Update holds it for reading while it hands a
	// request to the writer, so that Close, which takes it for writing,
	// knows no request can arrive after it.
	mu     sync.RWMutex
	closed bool

	reqs       chan *request
	subMu      sync.Mutex // guards submitted
	submitted  []*request // Submit's requests, in order
	kick       chan struct{}
	quit       chan struct{} // closed by Close: the writer drains reqs and exits
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// Open opens (creating it if needed) the state file in dir: the directory
// is created 0700, the file 0600, and a pid file is written beside it.
//
// A second process gets a *LockedError (errors.Is(err, ErrLocked)). A file
// bbolt cannot read, or that makes it panic, is moved aside with a
// timestamp and a fresh store is started; Recovered says where it went.
// A file written by a newer schema is refused (*SchemaError).
func Open(dir string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = defaultMaxBatch
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	db := &DB{
		dir:            dir,
		file:           filepath.Join(dir, FileName),
		pidFile:        filepath.Join(dir, PIDFileName),
		now:            opts.Now,
		log:            opts.Log,
		commitInterval: opts.CommitInterval,
		maxBatch:       opts.MaxBatch,
		dirs:           newDirCache(),
	}
	restarted := false
	for {
		bdb, handle, err := openBolt(db.file, opts.Timeout)
		if err == nil {
			err = protect(func() error { return moveSchema5Stubs(bdb, db.file) })
			if err == nil {
				err = protect(func() error { return db.initSchema(bdb, opts.Target) })
			}
			if errors.Is(err, errRewrite) {
				err = rewrite4to5(bdb, db.file, db.log)
				_ = bdb.Close()
				if err == nil {
					continue // open the new file
				}
			} else if err != nil {
				_ = bdb.Close()
			}
		}
		var ce *corruptError
		if err != nil && errors.As(err, &ce) && db.recovered == "" && !restarted {
			if size, stub := creationStub(db.file); stub {
				// Not corruption: bbolt writes a new file's first 4 pages
				// at once, and that write was cut short (a full disk).
				// No transaction ever ran in it, so no record is lost.
				if rerr := os.Remove(db.file); rerr != nil {
					return nil, fmt.Errorf("state %s was never completely created (%d bytes, it holds no record) and could not be removed: %w; remove it by hand and start again", db.file, size, rerr)
				}
				restarted = true
				db.log.Warn().Str("state", db.file).Int64("bytes", size).
					Msg("state file was never completely created (its first write was cut short, e.g. by a full disk) and never held a record: created it afresh")
				continue
			}
		}
		if err != nil && errors.As(err, &ce) && db.recovered == "" {
			moved, merr := moveAside(db.file, db.now())
			if merr != nil {
				return nil, fmt.Errorf("state %s is corrupt (%v) and could not be moved aside: %w", db.file, ce.err, merr)
			}
			db.recovered = moved
			db.log.Error().Str("state", db.file).Str("moved_to", moved).AnErr("reason", ce.err).
				Msg("STATE FILE CORRUPT: moved it aside and started a fresh store; the next scan re-hashes every file, and contents whose upload intents were lost may be uploaded again")
			continue
		}
		if err != nil {
			return nil, err
		}
		db.bolt, db.handle = bdb, handle
		break
	}
	if err := os.WriteFile(db.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		_ = db.bolt.Close()
		return nil, fmt.Errorf("write pid file %s: %w", db.pidFile, err)
	}
	db.reqs = make(chan *request, db.maxBatch)
	db.kick = make(chan struct{}, 1)
	db.quit = make(chan struct{})
	db.writerDone = make(chan struct{})
	go db.writer()
	return db, nil
}

// File is the state file's path.
func (db *DB) File() string { return db.file }

// Target is the namespace this DB reads and writes: Options.Target, or the
// last used target when that was "". "" when the file has never been used.
func (db *DB) Target() string { return db.target }

// Recovered is the path a corrupt state file was moved to by Open, "" if
// none was.
func (db *DB) Recovered() string { return db.recovered }

// Close waits for the updates already handed to the writer to commit, then
// closes the file and removes the pid file. Later Updates get ErrClosed.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closed = true
		db.mu.Unlock()
		if db.readOnly {
			db.closeErr = db.bolt.Close()
			return
		}
		close(db.quit)
		<-db.writerDone
		db.closeErr = db.bolt.Close()
		if b, err := os.ReadFile(db.pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
			_ = os.Remove(db.pidFile)
		}
	})
	return db.closeErr
}

// boltOptions are the bbolt options of the read-write open, each on purpose.
func boltOptions(timeout time.Duration, file **os.File) *bolt.Options {
	return &bolt.Options{
		// A second process must not wait forever: it gets ErrTimeout,
		// which Open turns into a LockedError naming the holder's pid.
		Timeout: timeout,
		// The hashmap freelist stays fast when the file is fragmented by
		// months of small updates. It is stored (a page or two per
		// commit): rebuilding it instead would walk every page of the
		// file at every open, a cost that grows with the files tracked.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: false,
		// See initialMmapSize: no remap (and no writer stall) until the
		// file outgrows it.
		InitialMmapSize: initialMmapSize,
		// NoSync stays false and NoGrowSync stays false: this file is the
		// record of what was uploaded, and a commit that Update reported
		// must survive a power cut (design.md rule 9).
		NoSync: false,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			*file = f
			return f, err
		},
	}
}

// openBolt validates an existing file, then opens it read-write, and
// returns bbolt's descriptor of it too. Errors are a *corruptError (move it
// aside), a *LockedError, or another error.
func openBolt(file string, timeout time.Duration) (*bolt.DB, *os.File, error) {
	for range 3 {
		st, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, fmt.Errorf("stat state %s: %w", file, err)
		case st.Size() > 0 && st.Size() < int64(2*os.Getpagesize()):
			return nil, nil, &corruptError{fmt.Errorf("file is %d bytes, smaller than its two meta pages", st.Size())}
		case st.Size() > 0:
			if err := validate(file, st.Size(), timeout); err != nil {
				return nil, nil, err
			}
		}

		var f *os.File
		var bdb *bolt.DB
		err = protect(func() error {
			var err error
			bdb, err = bolt.Open(file, 0o600, boltOptions(timeout, &f))
			return err
		})
		if err != nil {
			var ce *corruptError
			if errors.As(err, &ce) && f != nil {
				// bbolt panicked half-way: release our descriptor (and
				// with it the lock) ourselves.
				_ = f.Close()
			}
			return nil, nil, classifyOpenError(file, err)
		}
		// Compact replaces the file by rename; if that happened while we
		// waited for the lock, we hold the lock of the old inode. Retry.
		fst, ferr := f.Stat()
		pst, perr := os.Stat(file)
		if ferr == nil && perr == nil && !os.SameFile(fst, pst) {
			_ = bdb.Close()
			continue
		}
		// Files created by an older umask or copied in keep no looser mode.
		if err := os.Chmod(file, 0o600); err != nil {
			_ = bdb.Close()
			return nil, nil, fmt.Errorf("chmod state %s: %w", file, err)
		}
		return bdb, f, nil
	}
	return nil, nil, fmt.Errorf("open state %s: the file kept being replaced while opening it (is a `tracesync state compact` running?)", file)
}

// validate opens an existing file read-only and checks every page
// reachable from its root (checkPages), in this goroutine with faults
// turned into panics, so that a truncated or garbled file is caught here
// rather than crashing bbolt later: in the goroutine of its own that
// rebuilds a freelist that was not stored, or in whichever reads the page.
func validate(file string, size int64, timeout time.Duration) error {
	return protect(func() error {
		var f *os.File
		defer func() {
			if r := recover(); r != nil {
				if f != nil {
					_ = f.Close() // bbolt panicked inside Open: drop the shared lock
				}
				panic(r)
			}
		}()
		bdb, err := bolt.Open(file, 0o600, &bolt.Options{
			ReadOnly: true,
			Timeout:  timeout,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				var err error
				f, err = os.OpenFile(name, flag, perm)
				return f, err
			},
		})
		if err != nil {
			return classifyOpenError(file, err)
		}
		defer bdb.Close()
		return bdb.View(func(tx *bolt.Tx) error {
			if tx.Size() > size {
				return &corruptError{fmt.Errorf("file is %d bytes but its pages reach %d bytes (truncated)", size, tx.Size())}
			}
			return checkPages(file, size, uint64(tx.ID()))
		})
	})
}

// protect runs fn with memory faults turned into panics and any panic
// turned into a *corruptError: bbolt panics (or faults on the mmap) on
// some corrupt files.
func protect(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &corruptError{fmt.Errorf("bbolt panicked: %v", r)}
		}
	}()
	return fn()
}

// classifyOpenError turns bbolt's open errors into ours.
func classifyOpenError(file string, err error) error {
	var ce *corruptError
	switch {
	case errors.As(err, &ce):
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return &LockedError{File: file, PID: readPID(filepath.Join(filepath.Dir(file), PIDFileName))}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return &corruptError{err}
	}
	return fmt.Errorf("open state %s: %w", file, err)
}

// readPID reads the pid file; 0 when it is missing or unreadable.
func readPID(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// moveAside renames a corrupt file to FILE.corrupt-<UTC timestamp>.
// creationStub reports a state file that is the start of what bbolt writes
// when it creates a file, cut short: shorter than those first 4 pages, and
// beginning with bbolt's first meta page (page id 0, meta flag, magic). No
// transaction ever ran in it. It also returns the file's size. Anything
// else that fails to open is treated as corrupt.
func creationStub(file string) (int64, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() >= int64(4*os.Getpagesize()) {
		return 0, false
	}
	var head [20]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return fi.Size(), false
	}
	const metaFlag, magic = 0x04, 0xED0CDAED
	ne := binary.NativeEndian
	ok := ne.Uint64(head[0:8]) == 0 && ne.Uint16(head[8:10]) == metaFlag && ne.Uint32(head[16:20]) == magic
	return fi.Size(), ok
}

func moveAside(file string, now time.Time) (string, error) {
	dst := file + ".corrupt-" + now.UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(file, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// view runs fn in a read transaction of this DB's namespace.
func (db *DB) view(fn func(*Tx) error) error {
	read := func() error {
		return db.bolt.View(func(btx *bolt.Tx) error {
			return fn(newTx(btx, db.target, db.dirs))
		})
	}
	if db.readOnly {
		// No page of a file opened read-only was validated: a garbled one
		// is reported as corrupt rather than crashing the reader.
		return protect(read)
	}
	return read()
}
