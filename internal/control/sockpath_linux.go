package control

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds
// (sun_path is 108 bytes, with the terminating NUL).
const maxSocketPath = 107

// shortPath returns a path to the socket at p that fits a unix socket
// address. A state directory deep enough to make p longer than that is
// reached through a descriptor of it instead, as /proc/self/fd/N/NAME,
// which bind(2) and connect(2) resolve like any other path; release closes
// the descriptor once the listener or connection no longer needs the name.
func shortPath(p string) (short string, release func(), err error) {
	if len(p) <= maxSocketPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open the directory of the control socket %s: %w", p, err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(p)), func() { unix.Close(fd) }, nil
}
