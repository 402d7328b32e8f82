package watcher

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// errNotWanted is returned by statPath for something that exists but is
// not a file the watcher reports (a directory, FIFO, device, socket, a
// symlink not followed or pointing outside the roots).
var errNotWanted = errors.New("not a regular file")

func statFromUnix(st *unix.Stat_t) Stat {
	return Stat{
		Dev:     uint64(st.Dev),
		Ino:     st.Ino,
		Size:    st.Size,
		ModTime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		Mode:    fileMode(st.Mode),
	}
}

func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// sameBytes reports whether two stats describe the same bytes as the
// restart fast path sees them.
func sameBytes(a, b Stat) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.ModTime.Equal(b.ModTime)
}

func lstat(p string) (Stat, error) {
	var st unix.Stat_t
	for {
		err := unix.Lstat(p, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Stat{}, &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		return statFromUnix(&st), nil
	}
}

func statFollow(p string) (Stat, error) {
	var st unix.Stat_t
	for {
		err := unix.Stat(p, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Stat{}, &fs.PathError{Op: "stat", Path: p, Err: err}
		}
		return statFromUnix(&st), nil
	}
}

// statter stats candidate files the way the configuration says.
type statter struct {
	roots          []string
	followSymlinks bool
}

// stat returns the Stat of the regular file at p, following a symlink only
// when configured and only to a target inside the roots. It returns
// errNotWanted for anything else that exists.
func (s *statter) stat(p string) (Stat, string, error) {
	st, err := lstat(p)
	if err != nil {
		return Stat{}, p, err
	}
	if st.Mode.IsRegular() {
		return st, p, nil
	}
	if st.Mode&fs.ModeSymlink == 0 || !s.followSymlinks {
		return Stat{}, p, errNotWanted
	}
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		if isLinkLoop(err) {
			// A loop of links is how the links are made, not an I/O
			// failure: counting it as a scan error would hold back every
			// removal (rule 6) for as long as the loop stays.
			return Stat{}, p, fmt.Errorf("symlink %s: %w: %w", p, err, errNotWanted)
		}
		return Stat{}, p, err
	}
	if !s.insideRoots(target) {
		return Stat{}, p, fmt.Errorf("symlink %s points to %s, outside the watched roots: %w", p, target, errNotWanted)
	}
	tst, err := lstat(target)
	if err != nil {
		return Stat{}, p, err
	}
	if !tst.Mode.IsRegular() {
		return Stat{}, p, errNotWanted
	}
	return tst, target, nil
}

// isLinkLoop reports a symlink chain that never ends in a file: ELOOP from
// the kernel, or filepath.EvalSymlinks' own "EvalSymlinks: too many links"
// (it counts the links it follows itself and has no sentinel for it, only
// that message: path/filepath/symlink.go).
func isLinkLoop(err error) bool {
	return errors.Is(err, unix.ELOOP) || strings.HasSuffix(err.Error(), "too many links")
}

func (s *statter) insideRoots(p string) bool {
	for _, r := range s.roots {
		// A root may itself be reached through a symlink: compare with its
		// resolved form too.
		if isUnder(p, r) {
			return true
		}
		if rr, err := filepath.EvalSymlinks(r); err == nil && isUnder(p, rr) {
			return true
		}
	}
	return false
}

// openForWriting reports whether some process has the regular file at p
// open for writing, where that can be known cheaply: it asks for a read
// lease, which Linux refuses with EAGAIN while a writer holds the file
// open. Where leases are not available (not the file's owner without
// CAP_LEASE, filesystems without lease support) it reports false. The open
// is non-blocking and the descriptor is checked to be a regular file
// before anything else, so it never hangs or touches a FIFO or device even
// if p was swapped for one. With nofollow, a symlink at p is not opened.
func openForWriting(p string, nofollow bool) bool {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if nofollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(p, flags, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	if err == unix.EAGAIN {
		return true
	}
	if err == nil {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	}
	return false
}

// Filesystem magic numbers (statfs f_type) of filesystems where inotify
// does not see changes made by other hosts or by the server.
var noInotifyFS = map[int64]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse",
	0x01021997: "9p",
	0x00c36400: "ceph",
	0x5346414f: "afs",
	0x73757245: "coda",
}

// fsWithoutInotify returns the name of dir's filesystem type when inotify
// cannot be trusted on it, or "".
func fsWithoutInotify(dir string) string {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return ""
	}
	return noInotifyFS[int64(sfs.Type)]
}

// rootHealth is what a root check found.
type rootHealth struct {
	ok     bool
	reason string // when !ok
	dev    uint64
	ino    uint64
}

// checkRoot checks that root is a usable directory, on wantDev when
// haveDev, with its marker file when one is configured.
func checkRoot(root, marker string, wantDev uint64, haveDev bool) rootHealth {
	st, err := statFollow(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return rootHealth{reason: "missing"}
		}
		return rootHealth{reason: err.Error()}
	}
	h := rootHealth{dev: st.Dev, ino: st.Ino}
	if !st.Mode.IsDir() {
		h.reason = "not a directory"
		return h
	}
	if haveDev && st.Dev != wantDev {
		h.reason = fmt.Sprintf("device changed from %d to %d", wantDev, st.Dev)
		return h
	}
	if marker != "" {
		if _, err := lstat(filepath.Join(root, marker)); err != nil {
			h.reason = fmt.Sprintf("marker %s missing", marker)
			return h
		}
	}
	h.ok = true
	return h
}
