package systemd

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen opens a unix datagram socket in a temp dir, the way systemd's
// /run/systemd/notify is, and returns its path.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// receive reads one datagram; the deadline only bounds a broken test, the
// datagram is already queued when send returns.
func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestNotifierSendsLifecycleInOrder(t *testing.T) {
	conn, path := listen(t)
	n := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": path}))

	steps := []struct {
		name string
		call func() error
		want string
	}{
		{"Ready", n.Ready, "READY=1"},
		{"Status", func() error { return n.Status("uploaded 1200, pending 3, quarantined 1") }, "STATUS=uploaded 1200, pending 3, quarantined 1"},
		{"Watchdog", n.Watchdog, "WATCHDOG=1"},
		{"Watchdog again", n.Watchdog, "WATCHDOG=1"},
		{"Stopping", n.Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	for i, s := range steps {
		if got := receive(t, conn); got != s.want {
			t.Fatalf("datagram %d (after %s): got %q, want %q", i, s.name, got, s.want)
		}
	}
}

func TestNotifierStatusCannotInjectAssignments(t *testing.T) {
	conn, path := listen(t)
	n := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": path}))
	if err := n.Status("pending 3\nREADY=1"); err != nil {
		t.Fatal(err)
	}
	if got, want := receive(t, conn), "STATUS=pending 3 READY=1"; got != want {
		t.Fatalf("status with a newline: got %q, want %q (a newline would start a new assignment)", got, want)
	}
}

func TestNotifierAbstractSocket(t *testing.T) {
	// systemd may pass an abstract socket ("@name"); Go maps "@" to the
	// leading NUL itself, on both ends.
	name := "@tracesync-notify-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract unix sockets unavailable here: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	n := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": name}))
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready to abstract socket %s: %v", name, err)
	}
	if got := receive(t, conn); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
}

func TestNotifierNoSocketIsNoop(t *testing.T) {
	n := NewNotifier(env(nil))
	for name, call := range map[string]func() error{
		"Ready": n.Ready, "Stopping": n.Stopping, "Watchdog": n.Watchdog,
		"Status": func() error { return n.Status("x") },
	} {
		if err := call(); err != nil {
			t.Fatalf("%s without NOTIFY_SOCKET: got %v, want nil (no-op)", name, err)
		}
	}
	if d := n.WatchdogInterval(); d != 0 {
		t.Fatalf("WatchdogInterval without WATCHDOG_USEC: got %v, want 0", d)
	}
}

func TestNotifierDeadSocketIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone")
	n := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": path}))
	err := n.Ready()
	if !errors.Is(err, ErrSend) {
		t.Fatalf("Ready to a missing socket: got %v, want an error wrapping ErrSend", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	for _, tc := range []struct {
		name      string
		usec, pid string
		want      time.Duration
	}{
		{"off", "", "", 0},
		{"for us", "30000000", self, 30 * time.Second},
		{"no pid given", "5000000", "", 5 * time.Second},
		{"for another process", "30000000", other, 0},
		{"zero", "0", self, 0},
		{"negative", "-5", self, 0},
		{"garbage usec", "30s", self, 0},
		{"garbage pid", "30000000", "me", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNotifier(env(map[string]string{"WATCHDOG_USEC": tc.usec, "WATCHDOG_PID": tc.pid}))
			if got := n.WatchdogInterval(); got != tc.want {
				t.Fatalf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v, want %v", tc.usec, tc.pid, got, tc.want)
			}
		})
	}
}
