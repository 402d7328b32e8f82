//go:build !unix

package uploader

import "io/fs"

func identity(fi fs.FileInfo) fileID {
	return fileID{Size: fi.Size(), ModTime: fi.ModTime()}
}
