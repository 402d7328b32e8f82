package uploader_test

import (
	"strings"
	"testing"

	"github.com/tracesync/tracesync/client/stratixtest"
)

// Progress counts the bytes actually read: a file refused unread for its
// size adds nothing to the bytes to come or the bytes read, and is not a
// file read, so a progress bar's ETA and a summary's rate do not count it.
func TestProgressCountsOnlyBytesRead(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFileSize = 64
	h := newHarness(t, cfg, stratixtest.Options{})
	small := h.write("small.json", traceA)
	big := h.write("big.json", `{"data": "`+strings.Repeat("x", 1000)+`"}`)
	h.ready(small)
	h.ready(big)
	h.waitFor("both files done", func() bool { return h.eng.Progress().FilesDone == 2 })
	p := h.eng.Progress()
	want := int64(len(traceA))
	if p.FilesSeen != 2 || p.FilesRead != 1 || p.BytesSeen != want || p.BytesDone != want {
		t.Fatalf("progress after one %d-byte file and one refused as too large: files seen %d, read %d, bytes seen %d, read %d; want 2, 1, %d, %d",
			want, p.FilesSeen, p.FilesRead, p.BytesSeen, p.BytesDone, want, want)
	}
}
