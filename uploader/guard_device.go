package uploader

// guard_device.go owns the guard's hold of a root found on another device
// than its files were recorded on: no removal under it is acted on, and its
// new files are parked, until the recorded device is back or the user
// confirms.

import (
	"os"

	"github.com/tracesync/tracesync/store"
)

// checkDevice compares, once, a root's device with the devices its live
// records were made on when the engine started.
func (l *loop) checkDevice(root string) {
	l.g.devChecked[root] = true
	devs := l.g.recDevs[root]
	if len(devs) == 0 {
		return
	}
	dev, ok := rootDev(root)
	if !ok || devs[dev] > 0 {
		return
	}
	live := 0
	for _, n := range devs {
		live += n
	}
	l.holdDevice(root, dev, live)
}

// holdDevice holds back a root found on another device than its records:
// its gone files are held, and its new files are parked.
func (l *loop) holdDevice(root string, dev uint64, live int) {
	if _, ok := l.g.devHold[root]; ok {
		return
	}
	l.g.devHold[root] = dev
	g, err := trackedGone(l.e.st, root)
	if err != nil {
		l.e.log.Error().Err(err).Str("root", root).Msg("read tracked paths of a folder on another device")
	}
	for p := range l.g.pending {
		if l.g.pending[p].root == root {
			delete(l.g.pending, p)
		}
	}
	l.holdPaths(root, g.paths)
	l.e.log.Error().Str("root", root).Uint64("device", dev).Int("files", len(g.paths)).
		Msgf("held back: the folder %s is now on device %d, not the one its %d tracked files were recorded on (another disk, or its disk is not mounted): %d of them are gone from disk, none is marked removed, no remote trace is deleted, and new files there are not synced until the recorded disk is back; if this is the right disk and those files are really gone, %s",
			root, dev, live, len(g.paths), l.e.cfg.Hints.confirm(root))
}

// releaseDevice ends a root's device hold and hands its parked files on.
func (l *loop) releaseDevice(root, why string) {
	if _, ok := l.g.devHold[root]; !ok {
		return
	}
	delete(l.g.devHold, root)
	parked := l.g.parked[root]
	delete(l.g.parked, root)
	l.e.log.Info().Str("root", root).Int("parked_files", len(parked)).Msg("folder no longer held back: " + why)
	for _, ev := range parked {
		l.onEvent(ev)
	}
}

// recordedDevs counts the devices of root's live records.
func recordedDevs(st Store, root string) (map[uint64]int, int, error) {
	devs := map[uint64]int{}
	live := 0
	err := st.ScanPaths(root, func(p, _ []byte, rec store.PathStat) bool {
		if rec.State == store.StateRemoved || !underBytes(p, root) {
			return true
		}
		live++
		if rec.Dev != 0 {
			devs[rec.Dev]++
		}
		return true
	})
	return devs, live, err
}

// rootDev is the device a root is on now.
func rootDev(root string) (uint64, bool) {
	fi, err := os.Stat(root)
	if err != nil {
		return 0, false
	}
	dev := identity(fi).Dev
	return dev, dev != 0
}
