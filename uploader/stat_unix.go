//go:build unix

package uploader

import (
	"io/fs"
	"syscall"
)

func identity(fi fs.FileInfo) fileID {
	id := fileID{Size: fi.Size(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev = uint64(st.Dev) //nolint:unconvert // int32 on some platforms
		id.Ino = uint64(st.Ino) //nolint:unconvert
	}
	return id
}
