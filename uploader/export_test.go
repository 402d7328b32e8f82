package uploader

import "github.com/tracesync/tracesync/store"

// LastTurn is when e's main loop last turned (unix nanoseconds), for tests
// of how often an idle engine wakes.
func LastTurn(e *Engine) int64 { return e.beat.Load() }

// HashFile is what the engine's hash workers run on a file, for the
// benchmarks: its hash, or the reason it would not be uploaded.
func HashFile(path string, maxSize int64) (store.Hash, error) {
	r := hashFile(path, maxSize)
	switch r.Outcome {
	case hashOK, hashEmpty:
		return r.Hash, nil
	}
	return r.Hash, r.Err
}
