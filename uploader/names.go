package uploader

// names.go owns the name an upload is given at the server.

import (
	"encoding/hex"
	"path/filepath"
	"strings"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// RemoteNaming says which name an upload is given at the server. Create
// finds the object it presigned by that name alone, so two uploads of one
// name in flight at once cross, whichever processes make them.
type RemoteNaming uint8

const (
	// RemoteNameUnique (the zero value) names each upload by its content:
	// the file's stem, a dot, the first 16 hex digits of its SHA-256, and
	// its extension (agent.3f2a9c1b7d4e5f60.jsonl). Any number of processes
	// and hosts may upload into one project, and a content's traces can be
	// found again by name alone.
	RemoteNameUnique RemoteNaming = iota
	// RemoteNameBasename sends the bare basename: safe only with one
	// uploader per project.
	RemoteNameBasename
)

// String is the flag value of n.
func (n RemoteNaming) String() string {
	if n == RemoteNameBasename {
		return "basename"
	}
	return "unique"
}

// ParseRemoteNaming reads a --remote-name value.
func ParseRemoteNaming(s string) (RemoteNaming, bool) {
	switch s {
	case "unique", "":
		return RemoteNameUnique, true
	case "basename":
		return RemoteNameBasename, true
	}
	return 0, false
}

// nameHexDigits is how much of the content's hash a unique name carries:
// 64 bits, enough that two contents of one stem never meet by chance.
const nameHexDigits = 16

// UploadName is the name the upload of content h from path is given at the
// server.
func UploadName(path string, h store.Hash, naming RemoteNaming) string {
	_, path = tracefile.CompressionOf(path) // x.jsonl.gz is uploaded decompressed, as x.jsonl
	base := filepath.Base(path)
	if naming == RemoteNameBasename {
		return base
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	return stem + "." + hex.EncodeToString(h[:nameHexDigits/2]) + ext
}

// nameIsUnique reports whether name carries h's hash the way UploadName
// writes it: then every trace of that name is a trace of these bytes, and
// recovery may adopt them whenever they were created. A bare basename
// (from --remote-name basename, or an intent written before unique names)
// says nothing of the content.
func nameIsUnique(name string, h store.Hash) bool {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	tag := "." + hex.EncodeToString(h[:nameHexDigits/2])
	return strings.HasSuffix(stem, tag)
}
