package uploader

// guard.go owns the mass-delete guard (design.md rule 6) and the grace of
// removals (rule 5): removals wait in a pending set, are judged together
// once no removal came for a while, and those that would delete traces
// spend a budget of Config.MaxDelete per Config.MaxDeleteWindow.

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// minGather is the least time pending removals wait for more to join.
const minGather = 50 * time.Millisecond

// maxGather bounds how long a pending set may keep growing: a slow `rm` of
// many files is still judged as one set, but not never.
const maxGather = time.Minute

// pendingRemoval is a tracked path found gone, waiting to be judged.
type pendingRemoval struct {
	root string
	seen time.Time
}

// guard is the guard's state; the main loop owns it.
type guard struct {
	pending     map[string]pendingRemoval
	first, last time.Time // when the oldest and the newest pending removal came

	held  map[string]map[string]bool // root → tracked paths held back
	acted []time.Time                // would-delete removals acted on, for the window

	scanHold map[string]string // root → why its last scan cannot be trusted for removals

	recDevs     map[string]map[uint64]int // root → devices of its live records at start
	devChecked  map[string]bool           // root → its device was compared with recDevs
	devHold     map[string]uint64         // root → the device it is on, not its records'
	devAccepted map[string]uint64         // root → a device the user confirmed
	parked      map[string]map[string]watcher.Event

	renamed map[string]bool // gone paths logLinked logged as renamed, until their removal is acted on
}

func newGuard() guard {
	return guard{
		pending:     map[string]pendingRemoval{},
		held:        map[string]map[string]bool{},
		scanHold:    map[string]string{},
		recDevs:     map[string]map[uint64]int{},
		devChecked:  map[string]bool{},
		devHold:     map[string]uint64{},
		devAccepted: map[string]uint64{},
		parked:      map[string]map[string]watcher.Event{},
		renamed:     map[string]bool{},
	}
}

// heldCount is how many tracked files the guard holds back.
func (g *guard) heldCount() int {
	n := 0
	for _, s := range g.held {
		n += len(s)
	}
	return n
}

func (l *loop) gatherDelay() time.Duration { return max(l.e.cfg.DeleteDelay, minGather) }

// judgeAt is when the pending set is judged; zero when there is none.
func (l *loop) judgeAt() time.Time {
	if len(l.g.pending) == 0 {
		return time.Time{}
	}
	at := l.g.last.Add(l.gatherDelay())
	if capAt := l.g.first.Add(max(maxGather, 2*l.gatherDelay())); capAt.Before(at) {
		at = capAt
	}
	return at
}

// guardEvent runs before the loop handles ev: it checks a root's device
// on its first event, and parks what a device hold keeps back. It reports
// whether ev was parked.
func (l *loop) guardEvent(ev watcher.Event) bool {
	if ev.Root == "" {
		return false
	}
	if !l.g.devChecked[ev.Root] {
		l.checkDevice(ev.Root)
	}
	if _, held := l.g.devHold[ev.Root]; !held || (ev.Kind != watcher.Ready && ev.Kind != watcher.Incomplete) {
		return false
	}
	if l.g.parked[ev.Root] == nil {
		l.g.parked[ev.Root] = map[string]watcher.Event{}
	}
	l.g.parked[ev.Root][ev.Path] = ev
	return true
}

// onRemoved takes a watcher's Removed: the tracked paths gone at or under
// it join the pending set.
func (l *loop) onRemoved(ev watcher.Event) {
	l.forgetGrowth(ev.Path)
	g, err := allUnder(l.e.st, ev.Path)
	if err != nil {
		l.e.log.Error().Err(err).Str("path", ev.Path).Msg("read tracked paths for a removal")
		return
	}
	l.addPending(ev.Root, g.paths)
}

// onScanDone takes what a full scan says of a root: whether it can be
// trusted for removals, its device, and the tracked paths it did not find.
func (l *loop) onScanDone(ev watcher.Event) {
	root, s := ev.Root, ev.Scan
	var g gone
	var err error
	if s.Keyed {
		g, err = notSeen(l.e.st, root, &s)
	} else {
		g, err = trackedGone(l.e.st, root)
	}
	if err != nil {
		l.e.log.Error().Err(err).Str("root", root).Msg("read tracked paths after a scan")
		return
	}
	// Held paths whose file is back are no longer held.
	if set := l.g.held[root]; set != nil {
		stillGone := make(map[string]bool, len(g.paths))
		for _, p := range g.paths {
			stillGone[p] = true
		}
		for p := range set {
			if !stillGone[p] {
				delete(set, p)
			}
		}
		if len(set) == 0 {
			delete(l.g.held, root)
		}
	}
	switch {
	case s.Errors > 0:
		l.g.scanHold[root] = fmt.Sprintf("the last scan of the folder met %d I/O errors (first: %s)", s.Errors, s.FirstErr)
	case len(g.errs) > 0:
		l.g.scanHold[root] = fmt.Sprintf("%d tracked files could not be checked (first: %s)", len(g.errs), g.errs[0])
	default:
		delete(l.g.scanHold, root)
	}
	if s.RootDev != 0 && g.devSeen {
		_, onHold := l.g.devHold[root]
		switch {
		case g.devs[s.RootDev] > 0 && onHold:
			l.releaseDevice(root, "the device its files were recorded on is back")
		case g.devs[s.RootDev] == 0 && l.g.devAccepted[root] != s.RootDev:
			l.holdDevice(root, s.RootDev, g.live)
		}
	}
	l.addPending(root, g.paths)
}

// onRootGone notes a root that is missing, unusable or without its
// marker: no removal under it is acted on until it is back.
func (l *loop) onRootGone(root, reason string) {
	if _, gone := l.rootGone[root]; !gone {
		l.e.log.Error().Str("root", root).Str("reason", reason).
			Msg("watched root is gone: its files are NOT treated as removed and nothing is deleted until it is back")
	}
	l.rootGone[root] = reason
}

// onRootBack compares a root that is back with its records' devices.
func (l *loop) onRootBack(root string) {
	if _, gone := l.rootGone[root]; gone {
		l.e.log.Info().Str("root", root).Msg("watched root is back")
	}
	delete(l.rootGone, root)
	devs, live, err := recordedDevs(l.e.st, root)
	if err != nil {
		l.e.log.Error().Err(err).Str("root", root).Msg("read tracked paths of a folder that is back")
		return
	}
	dev, ok := rootDev(root)
	if !ok || len(devs) == 0 {
		return
	}
	_, onHold := l.g.devHold[root]
	switch {
	case devs[dev] > 0 && onHold:
		l.releaseDevice(root, "the device its files were recorded on is back")
	case devs[dev] == 0 && l.g.devAccepted[root] != dev:
		l.holdDevice(root, dev, live)
	}
}

// onConfirmed is told that `tracesync reconcile --confirm` marked the gone
// files of roots removed: their holds end, and parked files go on.
func (l *loop) onConfirmed(roots []string) {
	for _, root := range roots {
		root = filepath.Clean(root)
		for r := range l.g.held {
			if under(r, root) {
				delete(l.g.held, r)
			}
		}
		for p, pr := range l.g.pending {
			if under(pr.root, root) {
				delete(l.g.pending, p)
			}
		}
		delete(l.g.scanHold, root)
		if dev, ok := l.g.devHold[root]; ok {
			l.g.devAccepted[root] = dev
			l.releaseDevice(root, "confirmed by the user")
		}
	}
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator)) || dir == string(filepath.Separator)
}

// unhold forgets a held or pending removal of a path that is back.
func (l *loop) unhold(path, root string) {
	delete(l.g.pending, path)
	delete(l.g.renamed, path)
	if set := l.g.held[root]; set != nil {
		delete(set, path)
		if len(set) == 0 {
			delete(l.g.held, root)
		}
	}
}

func (l *loop) addPending(root string, paths []string) {
	now := l.now()
	for _, p := range paths {
		if l.g.held[root][p] {
			continue // held stays held until it is back or confirmed
		}
		if l.selfGone[p] {
			continue // deleted or archived after upload: not a user's removal
		}
		if _, ok := l.g.pending[p]; ok {
			continue
		}
		if len(l.g.pending) == 0 {
			l.g.first = now
		}
		l.g.pending[p] = pendingRemoval{root: root, seen: now}
		l.g.last = now
	}
}

// classify reads what decideRemoval needs to say what removing rec would
// do, the pending set aside.
func (l *loop) classify(rec store.PathRecord) removalKind {
	s := removalSeen{hashed: !rec.Hash.IsZero(), deleteOnRemove: l.e.cfg.DeleteOnRemove}
	if !s.hashed {
		return decideRemoval(s)
	}
	refs, err := l.e.st.Refs(rec.Hash)
	s.refsUnknown = err != nil
	for _, r := range refs {
		if _, gone := l.g.pending[r]; r != rec.Path && !gone {
			s.otherLive = true
		}
	}
	if s.otherLive || s.refsUnknown || !s.deleteOnRemove {
		return decideRemoval(s) // what follows cannot change the answer
	}
	if c, err := l.e.st.GetContent(rec.Hash); err == nil {
		s.uploaded = true
		s.busy = l.orphanBusy(rec.Hash, c.Size)
	}
	k := decideRemoval(s)
	if k == removalDelete && (rec.Dev != 0 || rec.Ino != 0) {
		if _, moved := l.findMoved(rec.Path, rec.Dev, rec.Ino); moved {
			return removalFree // rotated to a name the include patterns skip: moved, not gone
		}
	}
	return k
}

// judgeRemovals acts on the pending set once it has gathered: removals
// that delete nothing remote go through, the others spend the budget, and
// a root that cannot be trusted holds all of its own.
func (l *loop) judgeRemovals(now time.Time) {
	at := l.judgeAt()
	if at.IsZero() || now.Before(at) {
		return
	}
	capped := now.Sub(l.g.first) >= max(maxGather, 2*l.gatherDelay())
	type verdict struct{ free, del, kept, told []string }
	byRoot := map[string]*verdict{}
	var roots []string
	maybe := false
	for _, p := range slices.Sorted(maps.Keys(l.g.pending)) {
		root := l.g.pending[p].root
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			delete(l.g.pending, p) // back, or not known to be gone
			continue
		}
		rec, err := l.e.st.GetPath(p)
		if err != nil || rec.State == store.StateRemoved {
			delete(l.g.pending, p)
			continue
		}
		v := byRoot[root]
		if v == nil {
			v = &verdict{}
			byRoot[root] = v
			roots = append(roots, root)
		}
		switch l.classify(rec) {
		case removalMaybe:
			maybe = true
			v.free = append(v.free, p)
		case removalDelete:
			v.del = append(v.del, p)
		case removalKept:
			v.free = append(v.free, p)
			if l.g.renamed[p] {
				v.told = append(v.told, p)
			} else {
				v.kept = append(v.kept, p) // a copy removed, or a rename not told yet
			}
		default:
			v.free = append(v.free, p)
		}
	}
	if maybe && !capped {
		l.g.last = now // wait for the file being hashed to be decided
		return
	}
	window := l.e.cfg.MaxDeleteWindow
	l.g.acted = slices.DeleteFunc(l.g.acted, func(t time.Time) bool { return now.Sub(t) >= window })
	var act []string
	for _, root := range roots {
		v := byRoot[root]
		for _, p := range append(v.free, v.del...) {
			delete(l.g.pending, p)
			delete(l.g.renamed, p)
		}
		if why := l.rootHold(root); why != "" {
			l.holdWithLog(root, append(v.free, v.del...), why)
			continue
		}
		act = append(act, v.free...)
		if len(v.del) == 0 {
			l.logRemoved(v.free, v.kept, v.told, nil)
			continue
		}
		why := ""
		switch {
		case l.leftEmpty(root, v.del):
			why = "the folder would be left with no tracked file"
		case len(l.g.acted)+len(v.del) > l.e.cfg.MaxDelete:
			why = fmt.Sprintf("deleting their traces would make %d tracked files deleted remotely within %s, more than %d (%s)",
				len(l.g.acted)+len(v.del), window, l.e.cfg.MaxDelete, l.e.cfg.Hints.Budget)
		}
		if why != "" {
			l.logRemoved(v.free, v.kept, v.told, nil)
			l.holdWithLog(root, v.del, why)
			continue
		}
		for range v.del {
			l.g.acted = append(l.g.acted, now)
		}
		act = append(act, v.del...)
		l.logRemoved(v.free, v.kept, v.told, v.del)
	}
	if len(l.g.pending) == 0 {
		l.g.first, l.g.last = time.Time{}, time.Time{}
	}
	if len(act) > 0 {
		l.writes = append(l.writes, &removeOp{paths: act})
	}
}

// removedListed is how many paths a "removed" line names; the count says
// how many there were in all.
const removedListed = 5

// logRemoved says which paths are marked removed: the free ones (nothing
// deleted remotely), the kept ones apart (another path holds their bytes),
// del (their traces are deleted once the grace ends), and not the renames
// logLinked already told.
func (l *loop) logRemoved(free, kept, told, del []string) {
	var plain []string
	for _, p := range free {
		if !slices.Contains(kept, p) && !slices.Contains(told, p) {
			plain = append(plain, p)
		}
	}
	plain = append(plain, del...)
	if len(plain) > 0 {
		ev := l.e.log.Info().Int("files", len(plain))
		if len(del) > 0 {
			ev = ev.Int("deleting_traces_of", len(del)) // their contents have no other file
		}
		ev.Msg("removed: " + listPaths(plain))
	}
	if len(kept) > 0 {
		l.e.log.Info().Int("files", len(kept)).Msg("removed: " + listPaths(kept) + " (another file holds the same bytes: traces kept)")
	}
}

// listPaths names up to removedListed paths, then how many more.
func listPaths(paths []string) string {
	if len(paths) <= removedListed {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:removedListed], ", "), len(paths)-removedListed)
}

// rootHold says why no removal under root may be acted on now; "" if none.
func (l *loop) rootHold(root string) string {
	if why, gone := l.rootGone[root]; gone {
		return "the folder is gone (" + why + ")"
	}
	if dev, ok := l.g.devHold[root]; ok {
		return fmt.Sprintf("the folder is on device %d, not the one its files were recorded on", dev)
	}
	return l.g.scanHold[root]
}

// leftEmpty reports whether removing paths would leave root with no
// tracked live file (and none on its way to being recorded).
func (l *loop) leftEmpty(root string, paths []string) bool {
	for p, pj := range l.paths {
		if pj.root == root && pj.busy() && !slices.Contains(paths, p) {
			return false
		}
	}
	found := false
	err := l.e.st.ScanPaths(root, func(p, _ []byte, rec store.PathStat) bool {
		if rec.State == store.StateRemoved || !underBytes(p, root) {
			return true
		}
		if _, pending := l.g.pending[string(p)]; pending || slices.Contains(paths, string(p)) {
			return true
		}
		found = true
		return false
	})
	return !found || err != nil // a store error holds too
}

// holdPaths adds paths to root's held set and returns how many are new.
func (l *loop) holdPaths(root string, paths []string) int {
	set := l.g.held[root]
	if set == nil {
		set = map[string]bool{}
		l.g.held[root] = set
	}
	added := 0
	for _, p := range paths {
		if !set[p] {
			set[p] = true
			added++
		}
	}
	if len(set) == 0 {
		delete(l.g.held, root)
	}
	return added
}

// holdWithLog holds paths back and says so once: an unchanged held set
// logs at debug level only.
func (l *loop) holdWithLog(root string, paths []string, why string) {
	if len(paths) == 0 {
		return
	}
	if l.holdPaths(root, paths) == 0 {
		l.e.log.Debug().Str("root", root).Int("files", len(l.g.held[root])).Msg("still held back: " + why)
		return
	}
	n := len(l.g.held[root])
	l.e.log.Error().Str("root", root).Int("files", n).
		Msgf("held back: %d tracked files under %s are gone from disk, but %s, so none is marked removed and no remote trace is deleted; if they are really gone, %s",
			n, root, why, l.e.cfg.Hints.confirm(root))
}

// noteDevice feeds the start-up walk of the records to the guard: the
// devices of live records by root (checkDevice compares a root's with them).
func (l *loop) noteDevice(root []byte, dev uint64) {
	if dev == 0 || len(root) == 0 {
		return
	}
	devs := l.g.recDevs[string(root)]
	if devs == nil {
		devs = map[uint64]int{}
		l.g.recDevs[string(root)] = devs
	}
	devs[dev]++
}

// noteRemoved notes, at start, a removal of the delete window that may
// have deleted traces: restoreBudget counts it against the budget.
func (l *loop) noteRemoved(rec store.PathRecord, now time.Time, recent map[store.Hash][]time.Time) {
	if l.e.cfg.DeleteOnRemove && !rec.Hash.IsZero() && now.Sub(rec.RemovedAt) < l.e.cfg.MaxDeleteWindow {
		recent[rec.Hash] = append(recent[rec.Hash], rec.RemovedAt)
	}
}

// restoreBudget counts the removals of the window whose content no live
// path holds any more: they deleted traces before the restart.
func (l *loop) restoreBudget(recent map[store.Hash][]time.Time) {
	for h, times := range recent {
		if refs, err := l.e.st.Refs(h); err != nil || len(refs) > 0 {
			continue
		}
		l.g.acted = append(l.g.acted, times...)
	}
}
