package uploader

import (
	"errors"
	"fmt"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

// plan.go owns the dry run's answer: what a sync would do with a file,
// hashed and decided exactly as the engine does, without the API.

// PlanStore is what a Planner reads of the state (*store.DB).
type PlanStore interface {
	GetPath(path string) (store.PathRecord, error)
	GetContent(h store.Hash) (store.Content, error)
	Refs(h store.Hash) ([]string, error)
}

// Plan is what a sync would do with one file: Action is "upload", "link",
// "skip", "quarantine", "incomplete" or "unchanged"; empty when the file
// vanished before it was read. Detail says why, for a person.
type Plan struct {
	Action string
	Detail string
	Size   int64
	// Partial: a .jsonl whose complete lines are uploaded while its last
	// line, cut, is left incomplete.
	Partial bool
}

// Planner decides, without the API, what a sync would do with each file
// it is asked about. It is not safe for concurrent use.
type Planner struct {
	// MaxInflate is Config.MaxInflate for the files planned: 0 means
	// DefaultMaxInflate.
	MaxInflate int64

	st      PlanStore // nil: nothing synced yet
	maxSize int64
	naming  RemoteNaming
	now     func() time.Time
	planned map[store.Hash]string // contents this plan uploads, by the first path
}

// NewPlanner returns a planner reading st (nil when no state exists yet).
// maxSize 0 means the API's limit.
func NewPlanner(st PlanStore, maxSize int64, naming RemoteNaming) *Planner {
	if maxSize == 0 {
		maxSize = client.MaxFileSize
	}
	return &Planner{st: st, maxSize: maxSize, naming: naming, now: time.Now, planned: map[store.Hash]string{}}
}

// Plan hashes and validates path and decides what a sync would do with it.
// An error is a failure to read the state.
func (p *Planner) Plan(path, root string) (Plan, error) {
	var lookup baseLookup
	if p.st != nil {
		lookup = recordLookup(p.st.GetPath, p.st.GetContent, nil)
	}
	res := readSource(path, p.maxSize, p.MaxInflate, lookup, false)
	out := Plan{Size: res.ID.Size}
	switch res.Outcome {
	case hashVanished:
		return Plan{}, nil
	case hashIncomplete, hashChanged:
		out.Action, out.Detail = "incomplete", errText(res.Err)
		return out, nil
	}
	var k known
	if p.st != nil {
		var err error
		if k, err = readKnown(planReader{p.st}, path, res.Hash, res.Outcome == hashOK, &res); err != nil {
			return out, fmt.Errorf("read the state for %s: %w", path, err)
		}
	}
	v := decide(k, seen{path: path, root: root, name: UploadName(path, res.Hash, p.naming), res: res}, p.now())
	switch v.dec {
	case decUnchanged, decRehash:
		out.Action = "unchanged"
	case decSkipped:
		out.Action, out.Detail = "skip", "empty"
	case decQuarantined:
		out.Action, out.Detail = "quarantine", v.lastErr
	case decLinked:
		out.Action = "link"
		out.Detail = fmt.Sprintf("same bytes as %s, uploaded %s", k.content.Filename, k.content.UploadedAt.Format(time.DateOnly))
	case decUpload:
		// A second path of bytes this plan uploads waits for that upload
		// and is linked to it, as in the engine.
		if first, ok := p.planned[res.Hash]; ok {
			out.Action, out.Detail = "link", "same bytes as "+first
			break
		}
		p.planned[res.Hash] = path
		out.Action = "upload"
	}
	out.Partial = res.Partial && out.Action == "upload"
	return out, nil
}

// planReader reads a Planner's state as readKnown needs it. The dry run
// does not resolve intents, so it reports none.
type planReader struct{ st PlanStore }

func (r planReader) GetPath(path string) (store.PathRecord, error)  { return r.st.GetPath(path) }
func (r planReader) GetContent(h store.Hash) (store.Content, error) { return r.st.GetContent(h) }
func (r planReader) GetIntent(store.Hash) (store.Intent, error) {
	return store.Intent{}, store.ErrNotFound
}
func (r planReader) RefCount(h store.Hash) (int, error) {
	refs, err := r.st.Refs(h)
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	return len(refs), err
}
