//go:build !unix

package watcher

import "time"

// sleepShort sleeps d (see wake_unix.go).
func sleepShort(d time.Duration) { time.Sleep(d) }
