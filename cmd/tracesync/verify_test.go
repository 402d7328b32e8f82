package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
)

// fakeProject is an in-memory list endpoint: traces oldest first, the
// source filter, pages, and hooks to change the project between pages.
type fakeProject struct {
	traces       []client.TraceWithEvaluations
	ignoreSource bool             // a server whose source filter matches nothing
	beforeList   func(call int)   // runs before each List, with its number from 1
	calls        int              // List calls
	bySource     map[string]int   // List calls per source filter
	pageSizes    map[int]struct{} // page sizes asked for
}

func (f *fakeProject) add(id, filename string) {
	name := filename
	f.traces = append(f.traces, client.TraceWithEvaluations{Trace: client.Trace{ID: id, Filename: &name, CreatedAt: time.Unix(int64(len(f.traces)), 0)}})
}

func (f *fakeProject) remove(ids ...string) {
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	f.traces = slices.DeleteFunc(f.traces, func(t client.TraceWithEvaluations) bool { return gone[t.ID] })
}

func (f *fakeProject) List(_ context.Context, opts client.ListOptions) (client.ListResult, error) {
	f.calls++
	if f.beforeList != nil {
		f.beforeList(f.calls)
	}
	if f.bySource == nil {
		f.bySource, f.pageSizes = map[string]int{}, map[int]struct{}{}
	}
	f.bySource[opts.Source]++
	f.pageSizes[opts.PageSize] = struct{}{}
	if opts.SortOrder != "asc" {
		return client.ListResult{}, fmt.Errorf("fake: sort order %q, want asc", opts.SortOrder)
	}
	var match []client.TraceWithEvaluations
	for _, t := range f.traces {
		if opts.Source == "" || (!f.ignoreSource && *t.Filename == opts.Source) {
			match = append(match, t)
		}
	}
	start := min((opts.Page-1)*opts.PageSize, len(match))
	end := min(start+opts.PageSize, len(match))
	page := slices.Clone(match[start:end])
	return client.ListResult{Traces: page, Count: len(page), TotalCount: len(match)}, nil
}

// uploadTo records a content of n traces named name, on the server and in
// the snapshot, held by the given paths.
func uploadTo(f *fakeProject, snap *verifySnapshot, name string, n int, paths ...string) {
	c := verifyContent{Hash: sha256.Sum256([]byte(name)), Filename: name, Paths: paths}
	for i := range n {
		id := fmt.Sprintf("tr-%s-%d", name, i)
		f.add(id, name)
		c.TraceIDs = append(c.TraceIDs, id)
	}
	snap.Contents = append(snap.Contents, c)
}

func missingByName(rep verifyReport) map[string]int {
	out := map[string]int{}
	for _, m := range rep.Missing {
		out[m.Filename] = m.Missing
	}
	return out
}

// A whole-project walk finds the recorded traces the server no longer
// lists, per content with its files, and counts as unknown the traces no
// content records, except those waiting for a delete.
func TestVerifyFindsMissingAndUnknown(t *testing.T) {
	f := &fakeProject{}
	snap := verifySnapshot{Deleting: map[string]bool{"tr-deleting": true}}
	for i := range 40 {
		uploadTo(f, &snap, fmt.Sprintf("f%02d.abc.jsonl", i), 30, fmt.Sprintf("/d/f%02d.jsonl", i))
	}
	for i := range 7 {
		f.add(fmt.Sprintf("tr-other-%d", i), "other-host.jsonl")
	}
	f.add("tr-deleting", "old.jsonl")
	f.remove("tr-f03.abc.jsonl-0")
	f.remove("tr-f03.abc.jsonl-29")
	for i := range 30 {
		f.remove(fmt.Sprintf("tr-f17.abc.jsonl-%d", i))
	}

	rep, err := checkTraces(context.Background(), f, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := missingByName(rep), map[string]int{"f03.abc.jsonl": 2, "f17.abc.jsonl": 30}; !mapsEqual(got, want) {
		t.Errorf("missing %v, want %v", got, want)
	}
	if rep.MissingTraces != 32 || rep.Contents != 40 || rep.Traces != 1200 {
		t.Errorf("missing %d of %d traces in %d contents, want 32 of 1200 in 40", rep.MissingTraces, rep.Traces, rep.Contents)
	}
	if m := rep.Missing[0]; !slices.Equal(m.Paths, []string{"/d/f03.jsonl"}) || !slices.Equal(m.MissingIDs, []string{"tr-f03.abc.jsonl-0", "tr-f03.abc.jsonl-29"}) {
		t.Errorf("first missing content: paths %v, ids %v", m.Paths, m.MissingIDs)
	}
	if rep.Unknown != 7 || rep.Mode != "project" {
		t.Errorf("unknown %d in mode %s, want 7 (the other host's; not the pending delete) in project", rep.Unknown, rep.Mode)
	}
	if _, ok := f.pageSizes[verifyPageSize]; !ok || len(f.pageSizes) != 1 {
		t.Errorf("page sizes asked %v, want only %d", f.pageSizes, verifyPageSize)
	}
	// 1176 listed traces are 3 pages; the two contents missing traces are
	// looked for again by name: 2 more.
	if rep.Requests != 5 || f.calls != 5 {
		t.Errorf("%d list requests (report says %d), want 3 pages + 2 names", f.calls, rep.Requests)
	}
}

// With few contents in a big project, the upload names are listed instead
// of the project: one request per content, plus the first page.
func TestVerifyListsByNameWhenCheaper(t *testing.T) {
	f := &fakeProject{}
	for i := range 3000 {
		f.add(fmt.Sprintf("tr-fleet-%d", i), fmt.Sprintf("host%d.jsonl", i%50))
	}
	snap := verifySnapshot{}
	for i := range 3 {
		uploadTo(f, &snap, fmt.Sprintf("mine%d.abc.jsonl", i), 4, fmt.Sprintf("/d/mine%d.jsonl", i))
	}
	rep, err := checkTraces(context.Background(), f, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "sources" || len(rep.Missing) != 0 || rep.Unknown != 0 {
		t.Errorf("mode %s, missing %v, unknown %d; want sources, none, 0", rep.Mode, rep.Missing, rep.Unknown)
	}
	if f.calls != 4 || f.bySource[""] != 1 {
		t.Errorf("%d list requests (%v by source), want 1 page of the project + 3 names", f.calls, f.bySource)
	}

	// A missing trace found by names alone is confirmed by a walk of the
	// project, and so is a server whose source filter matches nothing:
	// no server-side filter alone says a trace is gone.
	f.remove("tr-mine1.abc.jsonl-2")
	f.ignoreSource, f.calls = true, 0
	rep, err = checkTraces(context.Background(), f, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := missingByName(rep), map[string]int{"mine1.abc.jsonl": 1}; !mapsEqual(got, want) {
		t.Errorf("missing %v, want %v", got, want)
	}
	if rep.Mode != "project" || rep.Unknown != 3000 || f.calls != 1+3+pagesFor(3011) {
		t.Errorf("mode %s, unknown %d, %d requests; want project, 3000, %d", rep.Mode, rep.Unknown, f.calls, 1+3+pagesFor(3011))
	}
}

// Traces deleted by someone else during the walk shift the later pages
// back, so a recorded trace can pass unseen: it is looked for again and
// not reported missing. Traces created meanwhile land on later pages.
func TestVerifyWalkSurvivesTheProjectChanging(t *testing.T) {
	f := &fakeProject{}
	snap := verifySnapshot{}
	for i := range 500 {
		f.add(fmt.Sprintf("tr-other-%d", i), "other.jsonl")
	}
	uploadTo(f, &snap, "mine.abc.jsonl", 10, "/d/mine.jsonl") // the first of page 2
	for i := range 100 {
		f.add(fmt.Sprintf("tr-later-%d", i), "other.jsonl")
	}
	f.beforeList = func(call int) {
		if call == 2 { // between pages 1 and 2: 20 of page 1's traces go
			for i := range 20 {
				f.remove(fmt.Sprintf("tr-other-%d", i))
			}
			f.add("tr-new", "new.jsonl")
		}
	}
	rep, err := checkTraces(context.Background(), f, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Missing) != 0 {
		t.Errorf("missing %v after a concurrent delete elsewhere, want none", missingByName(rep))
	}
	if f.bySource["mine.abc.jsonl"] != 1 {
		t.Errorf("the traces the shifted page hid were not looked for again by name (requests by source: %v)", f.bySource)
	}
}

// Randomized: whatever is recorded, uploaded by others, deleted or
// pending delete, the report says exactly which recorded traces are gone.
func TestVerifyRandomProjects(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := range 10 {
		f := &fakeProject{}
		snap := verifySnapshot{Deleting: map[string]bool{}}
		contents := rng.IntN(25)
		for i := range contents {
			uploadTo(f, &snap, fmt.Sprintf("c%d.abc.jsonl", i), 1+rng.IntN(700), fmt.Sprintf("/d/c%d.jsonl", i))
			for range rng.IntN(3) * rng.IntN(400) {
				f.add(fmt.Sprintf("tr-x-%d", len(f.traces)), fmt.Sprintf("x%d.jsonl", rng.IntN(5)))
			}
		}
		unknown := 0
		for _, tr := range f.traces {
			if strings.HasPrefix(tr.ID, "tr-x-") {
				if rng.IntN(4) == 0 {
					snap.Deleting[tr.ID] = true
				} else {
					unknown++
				}
			}
		}
		want := map[string]int{}
		var deleted []string
		for _, c := range snap.Contents {
			if rng.IntN(3) != 0 {
				continue
			}
			for _, id := range c.TraceIDs {
				if rng.IntN(2) == 0 {
					deleted = append(deleted, id)
					want[c.Filename]++
				}
			}
		}
		f.remove(deleted...)
		rep, err := checkTraces(context.Background(), f, snap, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := missingByName(rep); !mapsEqual(got, want) {
			t.Fatalf("round %d (seed %d): missing %v, want %v", round, seed, got, want)
		}
		if rep.Mode == "project" && rep.Unknown != unknown {
			t.Fatalf("round %d (seed %d): unknown %d, want %d", round, seed, rep.Unknown, unknown)
		}
		if limit := pagesFor(len(f.traces))*2 + 1; contents > 0 && f.calls > limit {
			t.Fatalf("round %d (seed %d): %d list requests for %d traces, want at most %d", round, seed, f.calls, len(f.traces), limit)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
