//go:build unix

package uploader

import "syscall"

// openNonBlock makes OpenSource's open(2) return at once on a FIFO and
// never acquire a controlling terminal.
const openNonBlock = syscall.O_NONBLOCK | syscall.O_NOCTTY
