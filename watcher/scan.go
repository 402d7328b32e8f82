package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

type jobKind uint8

const (
	jobFull    jobKind = iota + 1 // a full scan of a root: Known for every file, then ScanDone
	jobSubtree                    // a directory that appeared: watch it and look at what is in it
)

type scanJob struct {
	kind    jobKind
	root    string
	dir     string
	dev     uint64 // the root's device as first seen
	haveDev bool
	poll    bool          // the root is polled, not watched
	every   time.Duration // polling period when poll
}

type foundKind uint8

const (
	foundCheck    foundKind = iota + 1 // a scan met a file Known did not vouch for
	foundTouched                       // a poll saw a file appear or change
	foundRemoved                       // a poll saw a path disappear
	foundKnown                         // a scan met a file Known vouched for
	foundScanDone                      // a full scan finished
	foundRootGone                      // a scan found its root unusable
)

// found is what the scanner tells the event goroutine.
type found struct {
	kind   foundKind
	root   string
	path   string
	st     Stat
	scan   ScanSummary
	reason string
	full   bool // foundRootGone: met by a full scan
}

// pollTree is one polled directory tree: a root in polling mode, or a
// subtree that ran out of inotify watches.
type pollTree struct {
	root, top string
	dev       uint64
	haveDev   bool
	every     time.Duration
	next      time.Time
	prev      map[string]Stat // nil until the first poll
	rootIno   uint64          // the root directory's inode when the tree was set up
}

// scanner walks directory trees. It runs in its own goroutine, owns the
// polling state, and sends what it finds to the event goroutine, waiting
// for the output queue to have room first so a big scan streams.
type scanner struct {
	cfg      Config
	filter   *filter
	statter  *statter
	fsw      *fsnotify.Watcher
	dirs     *watchedDirs
	out      *outQueue
	foundCh  chan found
	reported *atomic.Int64
	polls    map[string]*pollTree
	addWatch func(dir string) error // fsw.Add
	fallback time.Duration          // polling period of subtrees out of watches
	batch    []File                 // the files of the directory batch being reported
	known    []bool                 // Known's answers for batch

	warnedWatchLimit bool
}

func (s *scanner) run(ctx context.Context, jobs <-chan scanJob) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var tick <-chan time.Time
		if next, ok := s.nextPoll(); ok {
			d := time.Until(next)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			var err error
			switch j.kind {
			case jobFull:
				err = s.fullScan(ctx, j)
			case jobSubtree:
				err = s.subtree(ctx, j)
			}
			if err != nil {
				return // ctx done
			}
		case <-tick:
			if s.runDuePolls(ctx) != nil {
				return
			}
		}
	}
}

func (s *scanner) send(ctx context.Context, f found) error {
	if err := s.out.waitRoom(ctx); err != nil {
		return err
	}
	select {
	case s.foundCh <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scanErrs counts the I/O errors of one walk.
type scanErrs struct {
	n     int
	first string
}

func (e *scanErrs) add(err error) {
	if e.n == 0 {
		e.first = err.Error()
	}
	e.n++
}

// filesSeen reports files of dir a scan met: those Known vouches for are
// counted, the others go to the event goroutine to settle.
func (s *scanner) filesSeen(ctx context.Context, root, dir string, files []File, sum *ScanSummary) error {
	sum.Files += len(files)
	if sum.Keyed {
		dk := dirKey(sum.Seed, dir)
		for _, f := range files {
			sum.Seen = append(sum.Seen, pathKeyIn(dk, f.Name))
		}
	}
	known := s.known[:0]
	for range files {
		known = append(known, false)
	}
	s.known = known
	if s.cfg.Known != nil {
		s.cfg.Known(dir, files, known)
	}
	for i, f := range files {
		if known[i] {
			sum.Unchanged++
			if s.reported.Load() > 0 {
				if err := s.send(ctx, found{kind: foundKnown, root: root, path: joinName(dir, f.Name), st: f.Stat}); err != nil {
					return err
				}
			}
			continue
		}
		if err := s.send(ctx, found{kind: foundCheck, root: root, path: joinName(dir, f.Name), st: f.Stat}); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) fullScan(ctx context.Context, j scanJob) error {
	h := checkRoot(j.root, s.cfg.RootMarker, j.dev, j.haveDev)
	if !h.ok {
		delete(s.polls, j.root)
		return s.send(ctx, found{kind: foundRootGone, root: j.root, reason: h.reason, full: true})
	}
	sum := ScanSummary{RootDev: h.dev, Started: s.cfg.Now(), Keyed: true, Seed: rand.Uint64()}
	var errs scanErrs
	if j.poll {
		pt := &pollTree{root: j.root, top: j.root, dev: j.dev, haveDev: j.haveDev, every: j.every, rootIno: h.ino}
		if err := s.poll(ctx, pt, &sum, &errs); err != nil {
			return err
		}
		s.polls[j.root] = pt
	} else {
		err := s.walk(ctx, j.root, j.root, s.fsw != nil, func(dir string, files []File) error {
			return s.filesSeen(ctx, j.root, dir, files, &sum)
		}, nil, &errs)
		if err != nil {
			return err
		}
	}
	sum.Errors, sum.FirstErr = errs.n, errs.first
	slices.Sort(sum.Seen)
	sum.Seen = slices.Compact(sum.Seen)
	return s.send(ctx, found{kind: foundScanDone, root: j.root, scan: sum})
}

func (s *scanner) subtree(ctx context.Context, j scanJob) error {
	var errs scanErrs
	var sum ScanSummary
	err := s.walk(ctx, j.root, j.dir, s.fsw != nil, func(dir string, files []File) error {
		return s.filesSeen(ctx, j.root, dir, files, &sum)
	}, nil, &errs)
	if errs.n > 0 {
		s.cfg.Log.Warn().Str("dir", j.dir).Int("errors", errs.n).Str("first", errs.first).Msg("scanning a new directory met errors; the next full scan retries")
	}
	return err
}

// walk visits the tree at dir (under root): it watches each directory
// before reading it when watch is true (so nothing created meanwhile is
// missed), calls onFiles with the wanted regular files of each directory,
// a batch at a time, and onDir for every wanted directory below dir.
// Directories are read in batches, so a huge directory is never held in
// memory at once. It returns only ctx's error or an error from a
// callback; I/O errors go to errs.
func (s *scanner) walk(ctx context.Context, root, dir string, watch bool, onFiles func(dir string, files []File) error, onDir func(string, Stat), errs *scanErrs) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if watch {
		if _, polled := s.polls[dir]; polled {
			watch = false
		} else if err := s.addWatch(dir); err != nil {
			if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EMFILE) {
				s.watchLimit(root, dir, err)
				watch = false
			} else if !errors.Is(err, fs.ErrNotExist) {
				errs.add(fmt.Errorf("watch %s: %w", dir, err))
			}
		} else {
			s.dirs.add(dir)
		}
	}
	f, fd, err := openDir(dir, dir == root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			errs.add(err)
		}
		return nil
	}
	var subdirs []string
	for {
		ents, rerr := f.ReadDir(dirBatch)
		files := s.batch[:0]
		for _, e := range ents {
			name := e.Name()
			typ := e.Type()
			switch {
			case typ.IsDir():
				p := joinName(dir, name)
				if !s.cfg.NoRecursive && s.filter.wantDir(root, p) {
					subdirs = append(subdirs, p)
				}
			case typ.IsRegular() || typ&fs.ModeSymlink != 0:
				if !s.filter.wantName(root, dir, name) {
					continue
				}
				st, err := s.statIn(fd, dir, name, typ)
				if err != nil {
					if errors.Is(err, errNotWanted) {
						if typ&fs.ModeSymlink != 0 && s.cfg.FollowSymlinks {
							s.cfg.Log.Debug().Str("path", joinName(dir, name)).Err(err).Msg("symlink not followed")
						}
					} else if !errors.Is(err, fs.ErrNotExist) {
						errs.add(err)
					}
					continue
				}
				files = append(files, File{Name: name, Stat: st})
			}
			// FIFOs, sockets and devices are never opened nor reported.
		}
		s.batch = files
		if len(files) > 0 {
			if err := onFiles(dir, files); err != nil {
				f.Close()
				return err
			}
		}
		if rerr == io.EOF || (rerr == nil && len(ents) == 0) {
			break
		}
		if rerr != nil {
			if !errors.Is(rerr, fs.ErrNotExist) {
				errs.add(fmt.Errorf("read directory %s: %w", dir, rerr))
			}
			break
		}
	}
	f.Close()
	for _, sd := range subdirs {
		if onDir != nil {
			st, err := lstat(sd)
			if err != nil {
				continue
			}
			onDir(sd, st)
		}
		if err := s.walk(ctx, root, sd, watch, onFiles, onDir, errs); err != nil {
			return err
		}
	}
	return nil
}

// dirBatch is how many directory entries a walk reads, stats and reports
// at a time.
const dirBatch = 512

// statIn stats the entry name of the directory open as dirFD (at dir), of
// the type its directory entry gave: a regular file by its name in the
// directory, which spares the kernel the lookup of every directory above
// it; anything else (a symlink, or a file replaced since the listing) as
// statter.stat does.
func (s *scanner) statIn(dirFD int, dir, name string, typ fs.FileMode) (Stat, error) {
	if typ.IsRegular() {
		var st unix.Stat_t
		err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		for err == unix.EINTR {
			err = unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		switch {
		case err != nil:
			return Stat{}, &fs.PathError{Op: "lstat", Path: joinName(dir, name), Err: err}
		case st.Mode&unix.S_IFMT == unix.S_IFREG:
			return statFromUnix(&st), nil
		}
	}
	st, _, err := s.statter.stat(joinName(dir, name))
	return st, err
}

// joinName is filepath.Join for a clean directory and a plain name.
func joinName(dir, name string) string {
	if dir == string(filepath.Separator) {
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

// watchLimit handles running out of inotify watches at dir: one clear
// error, and the subtree is polled.
func (s *scanner) watchLimit(root, dir string, err error) {
	if !s.warnedWatchLimit {
		s.warnedWatchLimit = true
		s.cfg.Log.Error().Err(fmt.Errorf("%w: %w", ErrWatchLimit, err)).Str("dir", dir).
			Msg("out of inotify watches (fs.inotify.max_user_watches): polling the directories that could not be watched; " +
				"raise the limit with: sysctl fs.inotify.max_user_watches=524288 (and persist it in /etc/sysctl.d/)")
	} else {
		s.cfg.Log.Debug().Str("dir", dir).Msg("out of inotify watches: polling this directory")
	}
	s.polls[dir] = &pollTree{root: root, top: dir, every: s.fallback, next: time.Now().Add(s.fallback)}
}

func (s *scanner) nextPoll() (time.Time, bool) {
	var next time.Time
	ok := false
	for _, pt := range s.polls {
		if !ok || pt.next.Before(next) {
			next, ok = pt.next, true
		}
	}
	return next, ok
}

func (s *scanner) runDuePolls(ctx context.Context) error {
	now := time.Now()
	for top, pt := range s.polls {
		if pt.next.After(now) {
			continue
		}
		h := checkRoot(pt.root, s.cfg.RootMarker, pt.dev, pt.haveDev)
		if h.ok && top == pt.root && pt.rootIno != 0 && h.ino != pt.rootIno {
			// Deleted and made again between two polls: report it gone
			// (not its files removed); it comes back with a full scan.
			h.ok, h.reason = false, "missing"
		}
		if !h.ok {
			delete(s.polls, top)
			if top == pt.root {
				if err := s.send(ctx, found{kind: foundRootGone, root: pt.root, reason: h.reason}); err != nil {
					return err
				}
			}
			continue
		}
		var errs scanErrs
		if err := s.poll(ctx, pt, nil, &errs); err != nil {
			return err
		}
		if top != pt.root {
			if _, err := lstat(top); err != nil {
				delete(s.polls, top) // its removals were just reported
				continue
			}
		}
		if errs.n > 0 {
			s.cfg.Log.Warn().Str("dir", top).Int("errors", errs.n).Str("first", errs.first).Msg("polling met errors; removals held back until a clean poll")
		}
	}
	return nil
}

// poll walks a polled tree and compares it with the previous poll. With
// sum (a full scan) every file goes through Known, as in a watched scan;
// the first poll of a tree does the same. Later polls report files that
// appeared or changed as touched and paths that disappeared as removed
// (never after a walk that met errors).
func (s *scanner) poll(ctx context.Context, pt *pollTree, sum *ScanSummary, errs *scanErrs) error {
	cur := make(map[string]Stat, len(pt.prev))
	first := pt.prev == nil
	var local ScanSummary
	if sum == nil {
		sum = &local
	}
	err := s.walk(ctx, pt.root, pt.top, false, func(dir string, files []File) error {
		for _, f := range files {
			cur[joinName(dir, f.Name)] = f.Stat
		}
		if sum != &local || first {
			return s.filesSeen(ctx, pt.root, dir, files, sum)
		}
		for _, f := range files {
			p := joinName(dir, f.Name)
			if prev, ok := pt.prev[p]; ok && sameBytes(prev, f.Stat) {
				continue
			}
			if err := s.send(ctx, found{kind: foundTouched, root: pt.root, path: p, st: f.Stat}); err != nil {
				return err
			}
		}
		return nil
	}, func(p string, st Stat) { cur[p] = st }, errs)
	if err != nil {
		return err
	}
	if errs.n > 0 {
		for p, st := range pt.prev {
			if _, ok := cur[p]; !ok {
				cur[p] = st
			}
		}
	} else {
		for p := range pt.prev {
			if _, ok := cur[p]; !ok {
				if err := s.send(ctx, found{kind: foundRemoved, root: pt.root, path: p}); err != nil {
					return err
				}
			}
		}
	}
	pt.prev = cur
	pt.next = time.Now().Add(pt.every)
	return nil
}

// openDir opens a directory for reading without ever blocking: O_DIRECTORY
// makes anything else (a FIFO swapped in, say) fail at once. Only a root
// may be reached through a symlink; below it a symlink is never entered.
// It also returns the descriptor, which stays the File's.
func openDir(dir string, follow bool) (*os.File, int, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NONBLOCK
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Open(dir, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, -1, &fs.PathError{Op: "open", Path: dir, Err: err}
		}
		return os.NewFile(uintptr(fd), dir), fd, nil
	}
}
