package uploader

// afterupload.go owns --after-upload (design.md rule 14): deleting or
// archiving a local file once its traces are recorded durably, and never
// a file whose bytes are not all on the server.
//
// The engine marks the path removed itself once it has deleted or moved
// the file, so the watcher's removal that follows finds no live record and
// is nobody's business; and Config refuses AfterUpload with
// DeleteOnRemove, so no code path (a removal seen before that record
// commits, a restart between the two) can turn the engine's own delete
// into remote deletes.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracesync/tracesync/store"
)

// AfterUpload is what happens to a local file once its traces are recorded.
type AfterUpload uint8

const (
	// AfterUploadKeep leaves the file where it is (the default).
	AfterUploadKeep AfterUpload = iota
	// AfterUploadDelete deletes the file.
	AfterUploadDelete
	// AfterUploadArchive moves the file under Config.ArchiveDir, at its
	// path relative to its root.
	AfterUploadArchive
)

func (a AfterUpload) String() string {
	switch a {
	case AfterUploadDelete:
		return "delete"
	case AfterUploadArchive:
		return "archive"
	}
	return "keep"
}

// ParseAfterUpload parses keep, delete or archive.
func ParseAfterUpload(s string) (AfterUpload, bool) {
	for _, a := range []AfterUpload{AfterUploadKeep, AfterUploadDelete, AfterUploadArchive} {
		if s == a.String() {
			return a, true
		}
	}
	return AfterUploadKeep, false
}

// checkAfterUpload is setDefaults' part for AfterUpload, ArchiveDir and MaxAge.
func (c *Config) checkAfterUpload() error {
	switch {
	case c.AfterUpload > AfterUploadArchive:
		return errorsJoin("unknown after-upload action")
	case c.AfterUpload != AfterUploadKeep && c.DeleteOnRemove:
		// The engine's own delete or move would be a removal whose traces
		// delete-on-remove deletes: the opposite of what was asked.
		return errorsJoin("after-upload " + c.AfterUpload.String() + " cannot be combined with delete-on-remove: the files removed after upload would have their traces deleted")
	case c.AfterUpload == AfterUploadArchive && !filepath.IsAbs(c.ArchiveDir):
		return errorsJoin("after-upload archive needs an absolute archive directory")
	case c.MaxAge < 0:
		return errorsJoin("max age must not be negative")
	}
	return nil
}

// PrepareArchiveDir creates dir (and its parents) when missing and checks
// that it can receive the files of roots by rename: it is neither inside a
// root (its files would be synced again) nor holds one, and it is on the
// same file system as each root. Moving across file systems would need a
// copy that a crash can leave half done; tracesync refuses it instead.
// It returns dir absolute and cleaned.
func PrepareArchiveDir(dir string, roots []string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--archive-dir %s: %w", dir, err)
	}
	abs = filepath.Clean(abs)
	for _, r := range roots {
		r = filepath.Clean(r)
		if under(abs, r) {
			return "", fmt.Errorf("--archive-dir %s is inside the synced folder %s: archived files would be synced again; choose a folder outside it", abs, r)
		}
		if under(r, abs) {
			return "", fmt.Errorf("--archive-dir %s holds the synced folder %s: choose a folder beside it, not above it", abs, r)
		}
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return "", fmt.Errorf("--archive-dir %s: cannot create it: %w", abs, errors.Unwrap(err))
	}
	dev, ok := rootDev(abs)
	if !ok {
		return abs, nil // no device numbers here: a rename across devices fails and keeps the file
	}
	for _, r := range roots {
		if rd, ok := rootDev(r); ok && rd != dev {
			return "", fmt.Errorf("--archive-dir %s is on another file system than the synced folder %s: files are archived by rename, so choose a folder on the same file system", abs, r)
		}
	}
	return abs, nil
}

// afterMetrics count what --after-upload and --max-age did.
type afterMetrics struct {
	actions *prometheus.CounterVec // by action: deleted, archived, failed
	tooOld  prometheus.Counter
}

func newAfterMetrics(reg prometheus.Registerer) *afterMetrics {
	m := &afterMetrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracesync_after_upload_total",
			Help: "Local files handled by --after-upload once their traces were recorded, by action (deleted, archived, failed)."}, []string{"action"}),
		tooOld: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_skipped_too_old_total",
			Help: "Files skipped unread because they were modified longer ago than --max-age."}),
	}
	if reg != nil {
		reg.MustRegister(m.actions, m.tooOld)
	}
	return m
}

// afterUploadDue is what may be deleted or archived of the paths an upload
// (or a link) just recorded: the decision, apart from the file system.
type afterUploadDue struct {
	recorded bool // the path's record says uploaded and its content is recorded (durable)
	growing  bool // the latest Ready was for a file still being written
	busy     bool // more work is under way for the path (a newer Ready, the next segment, settling)
	sameFile bool // lstat now: the same device, inode, size and mtime as the record
	allSent  bool // the record's last segment ends at the file's size: nothing unsent
}

// ok reports whether the file may go: every byte of it is recorded as on
// the server, and it is quiet and unchanged since (rule 14).
func (d afterUploadDue) ok() bool {
	return d.recorded && !d.growing && !d.busy && d.sameFile && d.allSent
}

// afterUpload deletes or archives the paths whose traces were recorded
// durably (their op has been written), each only when afterUploadDue says
// so; growing lists the paths whose latest Ready was Growing.
func (l *loop) afterUpload(paths []string, growing map[string]bool) {
	if l.e.cfg.AfterUpload == AfterUploadKeep {
		return
	}
	for _, path := range paths {
		l.afterUploadOne(path, growing[path])
	}
}

func (l *loop) afterUploadOne(path string, growing bool) {
	d := afterUploadDue{growing: growing}
	if p := l.paths[path]; p != nil && p.busy() || l.settling[path] || l.cont[path] {
		d.busy = true
	}
	rec, err := l.e.st.GetPath(path)
	if err == nil && rec.State == store.StateUploaded && !rec.Hash.IsZero() {
		_, cerr := l.e.st.GetContent(rec.Hash)
		d.recorded = cerr == nil
	}
	if !d.recorded || d.growing || d.busy {
		return // a later Ready (quiet, unchanged) comes back here
	}
	// Checked just before the delete: a file appended or replaced since
	// its bytes were read stays for its next Ready.
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	id := identity(fi)
	d.sameFile = id.Dev == rec.Dev && id.Ino == rec.Ino && id.Size == rec.Size && id.ModTime.Equal(rec.ModTime)
	d.allSent = allSent(path, rec, id.Size)
	if !d.ok() {
		l.e.log.Debug().Str("path", path).Bool("same_file", d.sameFile).Bool("all_sent", d.allSent).Msg("not removed after upload: it changed or has bytes not sent yet")
		return
	}
	var dest string
	if l.e.cfg.AfterUpload == AfterUploadArchive {
		dest, err = archiveFile(path, rec.Root, l.e.cfg.ArchiveDir)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		l.e.m.after.actions.WithLabelValues("failed").Inc()
		l.e.log.Error().Str("path", path).Err(err).Msgf("cannot %s after upload: %s is kept (its traces are recorded); fix the cause and it is tried on its next change or restart", l.e.cfg.AfterUpload, path)
		return
	}
	l.selfGone[path] = true
	l.writes = append(l.writes, &afterUploadOp{path: path, hash: rec.Hash, dev: rec.Dev, ino: rec.Ino})
	if dest == "" {
		l.e.m.after.actions.WithLabelValues("deleted").Inc()
		l.e.progress(func(p *Progress) { p.Deleted++ })
		l.e.log.Info().Str("path", path).Str("hash", rec.Hash.String()).Msg("deleted after upload: " + path)
		return
	}
	l.e.m.after.actions.WithLabelValues("archived").Inc()
	l.e.progress(func(p *Progress) { p.Archived++ })
	l.e.log.Info().Str("path", path).Str("dest", dest).Str("hash", rec.Hash.String()).Msg("archived after upload: " + path + " -> " + dest)
}

// maxArchiveSuffix bounds the numbered names tried when an archived file
// of the same name is already there.
const maxArchiveSuffix = 1000

// archiveFile moves path, found under root, to the same relative path
// under dir, creating folders. A name already taken in the archive gets a
// number before its extension (agent.1.jsonl): an earlier file of the same
// name is never overwritten. It returns where the file went.
func archiveFile(path, root, dir string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		rel = filepath.Base(path) // no root recorded: keep the name only
	}
	dest := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(dest), 0o750); err != nil {
		return "", fmt.Errorf("archive %s: %w", path, err)
	}
	base, ext := dest, filepath.Ext(dest)
	base = strings.TrimSuffix(base, ext)
	for n := 0; n <= maxArchiveSuffix; n++ {
		try := dest
		if n > 0 {
			try = base + "." + strconv.Itoa(n) + ext
		}
		if _, err := os.Lstat(try); !errors.Is(err, fs.ErrNotExist) {
			continue // taken (or not checkable): never overwrite
		}
		if err := os.Rename(path, try); err != nil {
			return "", fmt.Errorf("archive %s to %s: %w", path, try, err)
		}
		return try, nil
	}
	return "", fmt.Errorf("archive %s: %s and %d numbered names are taken", path, dest, maxArchiveSuffix)
}

// afterUploadOp marks a path the engine deleted or archived as removed,
// without orphaning its content: its traces stay on the server (the file
// went there, not away). It changes nothing when the record is no longer
// the file that was removed.
type afterUploadOp struct {
	path     string
	hash     store.Hash
	dev, ino uint64
}

func (o *afterUploadOp) apply(tx *store.Tx, now time.Time) error {
	rec, err := tx.GetPath(o.path)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.State != store.StateUploaded || rec.Hash != o.hash || rec.Dev != o.dev || rec.Ino != o.ino {
		return nil
	}
	_, err = tx.RemovePath(o.path, now)
	return err
}

// afterUploadWritten forgets that the loop removed path itself once the
// record says so: a removal seen from then on finds no live record.
func (l *loop) afterUploadWritten(o *afterUploadOp) {
	delete(l.selfGone, o.path)
}

// afterUploadPaths lists the paths waiting for u that the record just
// written set uploaded, and which of them are not known to be quiet
// (notQuiet), before the loop lets go of their notes.
func (l *loop) afterUploadPaths(u *upload, recorded []string) ([]string, map[string]bool) {
	if l.e.cfg.AfterUpload == AfterUploadKeep {
		return nil, nil
	}
	var due []string
	growing := map[string]bool{}
	for _, path := range recorded {
		if !u.paths[path] {
			continue
		}
		due = append(due, path)
		if p := l.paths[path]; p != nil && notQuiet(path, p) {
			growing[path] = true
		}
	}
	return due, growing
}

// notQuiet reports that path may still be written: its latest Ready was
// Growing, or it is a .jsonl resumed from the store at start with no Ready
// since (its writer may still hold it; a later scan brings it back).
func notQuiet(path string, p *pathJob) bool {
	return p.growing || !p.readied && isJSONL(path)
}

// allSent reports whether a file's record covers all of it: a plain .jsonl
// up to its size (no unfinished last line); an archive or a .json array,
// whose recorded ends are not its size on disk, once no part is left.
func allSent(path string, rec store.PathRecord, size int64) bool {
	if rec.More {
		return false
	}
	if isJSONL(path) && !isCompressed(path) {
		return rec.SegEnd() == size
	}
	return true
}
