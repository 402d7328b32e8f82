//go:build unix

package watcher

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// sleepShort blocks the calling goroutine's thread for d with nanosleep(2),
// which the kernel ends within tens of microseconds once the thread's timer
// slack is 1 µs (the default slack, 50 µs, was most of what was left). A Go
// timer or time.Sleep of an idle process ends up to 1 ms late: the runtime
// waits in epoll_wait, whose timeout is whole milliseconds, rounded down
// and then up to one more. The slack stays set on that thread, which only
// makes later sleeps on it more precise.
func sleepShort(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}
