package uploader

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// The seed corpus is in testdata/fuzz/<FuzzName>; `make fuzz` runs each
// target for a fixed time.

// FuzzHashFile checks the hasher on real files: the hash is the SHA-256 of
// the bytes, and the outcome agrees with the validator's verdict.
func FuzzHashFile(f *testing.F) {
	f.Add([]byte(`{"a":1}`), false)
	f.Add([]byte("{}\n{}\n"), true)
	f.Add([]byte(""), false)
	f.Add([]byte("  \n"), true)
	f.Add([]byte(`{"a":`), false)
	f.Add([]byte(`{"a" 1}`), false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		name, format := "t.json", tracefile.FormatJSON
		if jsonl {
			name, format = "t.jsonl", tracefile.FormatJSONL
		}
		tmp, err := os.MkdirTemp(dir, "h")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		res := hashFile(p, int64(len(data))+1)
		if want := store.Hash(sha256.Sum256(data)); res.Outcome != hashTooLarge && res.Hash != want {
			t.Fatalf("%q: hash %s, want %s", data, res.Hash, want)
		}
		verdict := tracefile.Validate(bytes.NewReader(data), format)
		var want hashOutcome
		switch {
		case len(data) == 0 || errors.Is(verdict, tracefile.ErrNoValues):
			want = hashEmpty
		case verdict == nil:
			want = hashOK
		case errors.Is(verdict, tracefile.ErrIncomplete):
			want = hashIncomplete
		default:
			want = hashInvalid
		}
		if res.Outcome != want {
			t.Fatalf("%s %q: outcome %d (%v), want %d (validator: %v)", format, data, res.Outcome, res.Err, want, verdict)
		}
		if len(data) > 0 {
			if small := hashFile(p, int64(len(data))-1); small.Outcome != hashTooLarge {
				t.Fatalf("%q over the limit: outcome %d, want too large", data, small.Outcome)
			}
		}
	})
}
