// Package systemd holds tracesync's systemd unit files (tracesync.service,
// tracesync@.service), the example environment file, and the sd_notify side
// of the service: telling systemd the daemon is ready, what it is doing, that
// its main loop is alive (watchdog), and that it is stopping.
//
// It knows nothing of uploads, the store or the watcher: the daemon decides
// when it is ready and healthy and calls a Notifier.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to the service manager. Outside systemd
// (NOTIFY_SOCKET unset) every method is a no-op that returns nil, so the
// daemon calls it unconditionally.
//
// A Notifier is safe for concurrent use: it holds no connection, each
// message is one datagram on a fresh socket, as sd_notify(3) does.
type Notifier struct {
	socket   string        // NOTIFY_SOCKET; "" when not under a notify-type service
	watchdog time.Duration // WATCHDOG_USEC when it is meant for this process; 0 = off
}

// NewNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID through
// getenv (os.Getenv in production). The variables are read once.
//
// The sending is written here rather than by daemon.SdNotify because that
// function reads the process environment itself; the message names are the
// daemon package's.
func NewNotifier(getenv func(string) string) *Notifier {
	n := &Notifier{socket: getenv("NOTIFY_SOCKET")}
	n.watchdog = watchdogInterval(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), os.Getpid())
	return n
}

// Ready tells systemd that start-up is complete (READY=1): the unit becomes
// "active" and units ordered after it start. tracesync sends it once the
// first scan is queued.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Status sets the one-line status `systemctl status` shows (STATUS=...),
// e.g. "uploaded 1200, pending 3, quarantined 1". Newlines in s are replaced
// by spaces: the protocol is one assignment per line.
func (n *Notifier) Status(s string) error {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	return n.send("STATUS=" + s)
}

// Stopping tells systemd that shutdown has begun (STOPPING=1), so the
// remaining in-flight work is not mistaken for a hang.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Watchdog pings the service watchdog (WATCHDOG=1). Call it from the main
// loop, only while the loop is healthy, every WatchdogInterval()/2: a wedged
// loop that stops pinging is killed and restarted by systemd.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }

// WatchdogInterval is the watchdog timeout systemd set for this process
// (WatchdogSec= in the unit, passed as WATCHDOG_USEC), or 0 when the
// watchdog is off, not meant for this process (WATCHDOG_PID names another
// pid), or malformed. Ping at half of it.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// watchdogInterval interprets WATCHDOG_USEC and WATCHDOG_PID for process pid,
// the way sd_watchdog_enabled(3) does.
func watchdogInterval(usec, pid string, self int) time.Duration {
	if usec == "" {
		return 0
	}
	us, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != self {
			return 0
		}
	}
	return time.Duration(us) * time.Microsecond
}

// ErrSend is wrapped by every error of a Notifier method: the notification
// could not be delivered (the socket is gone or refuses it). The service
// keeps working; under Type=notify a lost READY=1 makes the start time out.
var ErrSend = errors.New("sd_notify: cannot notify the service manager")

// send writes one datagram to NOTIFY_SOCKET; nothing when it is unset.
// An "@" prefix names an abstract socket, which net.DialUnix maps itself.
func (n *Notifier) send(state string) error {
	if n.socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("%w: %s to %s: %w", ErrSend, firstLine(state), n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("%w: %s to %s: %w", ErrSend, firstLine(state), n.socket, err)
	}
	return nil
}

// firstLine names a message in an error without its (possibly long) value.
func firstLine(state string) string {
	if i := strings.IndexByte(state, '='); i >= 0 {
		return state[:i]
	}
	return state
}
