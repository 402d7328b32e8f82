package main

// verifycheck.go owns verify's comparison: which recorded traces the server
// no longer lists, and which listed traces the state does not record. It
// reads a snapshot of the state and pages of the list endpoint, never one
// GET per trace, and writes nothing.

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

// verifyPageSize is the largest page the API gives (stratix-api.md).
const verifyPageSize = 500

// verifyUnknownListed is how many unknown traces a report names.
const verifyUnknownListed = 20

// verifyContent is one content of the state as verify sees it.
type verifyContent struct {
	Hash     store.Hash
	Filename string   // the name it was uploaded as: its source on the server
	Paths    []string // the live local paths that hold it
	TraceIDs []string
}

// verifySnapshot is what the state records for one target.
type verifySnapshot struct {
	Contents []verifyContent
	Deleting map[string]bool // trace ids waiting for a remote delete: expected on the server, not unknown
}

// traceLister is the part of the API client verify uses.
type traceLister interface {
	List(ctx context.Context, opts client.ListOptions) (client.ListResult, error)
}

// verifyProgress is how far the listing got, for the progress line.
type verifyProgress struct {
	Phase    string // "project" or "sources"
	Listed   int    // traces listed so far in this phase
	Total    int    // traces this phase will list, as far as the server said (0: unknown)
	Requests int    // list requests so far, all phases
}

// missingContent is a content some of whose traces the server does not list.
type missingContent struct {
	Hash       string   `json:"hash"`
	Filename   string   `json:"filename"`
	Paths      []string `json:"paths"`
	Traces     int      `json:"traces"`
	Missing    int      `json:"missing"`
	MissingIDs []string `json:"missing_trace_ids"`
}

// unknownTrace is a listed trace the state does not record.
type unknownTrace struct {
	ID       string `json:"id"`
	Filename string `json:"filename,omitempty"`
}

// verifyReport is the outcome of a check.
type verifyReport struct {
	Target        string           `json:"target"`
	Contents      int              `json:"contents"`
	Traces        int              `json:"traces"`         // trace ids the state records
	Mode          string           `json:"mode"`           // "project": the whole project was listed; "sources": only the uploads' names
	ProjectTraces int              `json:"project_traces"` // the project's traces, as the server counted them
	Requests      int              `json:"list_requests"`
	Missing       []missingContent `json:"missing"`
	MissingTraces int              `json:"missing_traces"`
	// Unknown counts listed traces that no content or pending delete here
	// records: in a fleet other hosts' uploads are among them, so it is
	// informational. With Mode "sources" it covers only the uploads' names.
	Unknown       int            `json:"unknown"`
	UnknownListed []unknownTrace `json:"unknown_listed"`
	Repair        *repairReport  `json:"repair,omitempty"`
}

// verifier lists the server's traces and compares them with a snapshot.
type verifier struct {
	api      traceLister
	progress func(verifyProgress) // nil: none

	snap     verifySnapshot
	owner    map[string]int      // recorded trace id -> index of its content
	seen     map[string]struct{} // recorded trace ids the server listed
	unknown  int
	listed   []unknownTrace
	requests int
}

// checkTraces compares snap with what the server lists and returns the
// report (Target and Repair left for the caller).
//
// It walks the whole project in pages of 500, oldest first, so traces
// created meanwhile land on later pages and shift nothing already read;
// but when the uploads' own names cost fewer requests than the walk
// (a few contents in a big project), it lists those names instead.
// Either way a trace that seems missing is looked for once more, by the
// cheaper of its upload's name or a second walk (after a names-only
// listing, always the walk, so no server-side filter alone decides that a
// trace is gone): a trace deleted meanwhile by someone else shifts the
// pages and can hide another one.
func checkTraces(ctx context.Context, api traceLister, snap verifySnapshot, progress func(verifyProgress)) (verifyReport, error) {
	v := &verifier{api: api, progress: progress, snap: snap, owner: map[string]int{}, seen: map[string]struct{}{}}
	rep := verifyReport{Contents: len(snap.Contents), Missing: []missingContent{}, UnknownListed: []unknownTrace{}}
	for i, c := range snap.Contents {
		for _, id := range c.TraceIDs {
			v.owner[id] = i
		}
	}
	rep.Traces = len(v.owner)
	if len(snap.Contents) == 0 {
		rep.Mode = "none"
		return rep, nil
	}
	// The first page says how big the project is; its unknown traces are
	// counted only if the whole project is walked.
	first, err := v.page(ctx, client.ListOptions{Page: 1}, "project", 0, 0, false)
	if err != nil {
		return rep, err
	}
	rep.ProjectTraces = first.TotalCount
	walkPages := pagesFor(first.TotalCount)
	all := make([]int, len(snap.Contents))
	for i := range all {
		all[i] = i
	}
	if v.sourceCost(all) < walkPages-1 {
		rep.Mode = "sources"
		if err := v.listSources(ctx, all, true); err != nil {
			return rep, err
		}
		if len(v.missingContents()) > 0 {
			// The whole project decides; its unknown traces replace the
			// names-only count.
			rep.Mode, v.unknown, v.listed = "project", 0, nil
			if err := v.walk(ctx, 1, true); err != nil {
				return rep, err
			}
		}
	} else {
		rep.Mode = "project"
		v.note(first, "", true)
		if !lastPage(first, 1) {
			if err := v.walk(ctx, 2, true); err != nil {
				return rep, err
			}
		}
		if cand := v.missingContents(); len(cand) > 0 {
			if v.sourceCost(cand) <= walkPages {
				err = v.listSources(ctx, cand, false)
			} else {
				err = v.walk(ctx, 1, false)
			}
			if err != nil {
				return rep, err
			}
		}
	}
	rep.Requests, rep.Unknown, rep.UnknownListed = v.requests, v.unknown, append(rep.UnknownListed, v.listed...)
	for _, i := range v.missingContents() {
		c := snap.Contents[i]
		m := missingContent{Hash: c.Hash.String(), Filename: c.Filename, Paths: c.Paths, Traces: len(c.TraceIDs)}
		if m.Paths == nil {
			m.Paths = []string{}
		}
		for _, id := range c.TraceIDs {
			if _, ok := v.seen[id]; !ok {
				m.MissingIDs = append(m.MissingIDs, id)
			}
		}
		m.Missing = len(m.MissingIDs)
		rep.MissingTraces += m.Missing
		rep.Missing = append(rep.Missing, m)
	}
	slices.SortFunc(rep.Missing, func(a, b missingContent) int {
		return cmp.Or(cmp.Compare(firstOr(a.Paths, a.Filename), firstOr(b.Paths, b.Filename)), cmp.Compare(a.Hash, b.Hash))
	})
	return rep, nil
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// pagesFor is how many full-size pages n traces take.
func pagesFor(n int) int { return (n + verifyPageSize - 1) / verifyPageSize }

// sourceCost is how many requests listing the given contents by name takes.
func (v *verifier) sourceCost(idx []int) int {
	n := 0
	for _, i := range idx {
		n += max(1, pagesFor(len(v.snap.Contents[i].TraceIDs)))
	}
	return n
}

// missingContents returns, in order, the contents with a recorded trace
// not listed yet.
func (v *verifier) missingContents() []int {
	var out []int
	for i, c := range v.snap.Contents {
		for _, id := range c.TraceIDs {
			if _, ok := v.seen[id]; !ok {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// page lists one page and notes what it holds (see note), and reports
// progress: listedBefore traces were listed before it in this phase, of
// total (0: the server's count).
func (v *verifier) page(ctx context.Context, opts client.ListOptions, phase string, listedBefore, total int, count bool) (client.ListResult, error) {
	opts.PageSize, opts.SortBy, opts.SortOrder = verifyPageSize, "created_at", "asc"
	res, err := v.api.List(ctx, opts)
	v.requests++
	if err != nil {
		what := "the project's traces"
		if opts.Source != "" {
			what = "the traces of " + opts.Source
		}
		return res, fmt.Errorf("list %s (page %d): %w", what, opts.Page, err)
	}
	v.note(res, opts.Source, count)
	if v.progress != nil {
		if total == 0 {
			total = res.TotalCount
		}
		v.progress(verifyProgress{Phase: phase, Listed: listedBefore + len(res.Traces), Total: total, Requests: v.requests})
	}
	return res, nil
}

// note marks the recorded traces of a page seen and, when count is set,
// counts the others as unknown, unless a delete of theirs is pending or,
// listed by source, they are not exactly of that name. A second look at
// the same traces passes count false, so none is counted twice.
func (v *verifier) note(res client.ListResult, source string, count bool) {
	for _, t := range res.Traces {
		if _, ok := v.owner[t.ID]; ok {
			v.seen[t.ID] = struct{}{}
			continue
		}
		if !count || v.snap.Deleting[t.ID] {
			continue
		}
		name := ""
		if t.Filename != nil {
			name = *t.Filename
		}
		if source != "" && name != source {
			continue // the filter is the server's: only an exact name counts as the upload's
		}
		v.unknown++
		if len(v.listed) < verifyUnknownListed {
			v.listed = append(v.listed, unknownTrace{ID: t.ID, Filename: name})
		}
	}
}

// walk lists the whole project from page from on, until a short page or
// the total the server gave.
func (v *verifier) walk(ctx context.Context, from int, count bool) error {
	listed := (from - 1) * verifyPageSize
	for p := from; ; p++ {
		res, err := v.page(ctx, client.ListOptions{Page: p}, "project", listed, 0, count)
		if err != nil {
			return err
		}
		listed += len(res.Traces)
		if lastPage(res, p) {
			return nil
		}
	}
}

// listSources lists the traces of each given content's upload name.
func (v *verifier) listSources(ctx context.Context, idx []int, count bool) error {
	listed, total := 0, 0
	for _, i := range idx {
		total += len(v.snap.Contents[i].TraceIDs)
	}
	for _, i := range idx {
		name := v.snap.Contents[i].Filename
		for p := 1; ; p++ {
			res, err := v.page(ctx, client.ListOptions{Page: p, Source: name}, "sources", listed, total, count)
			if err != nil {
				return err
			}
			listed += len(res.Traces)
			if lastPage(res, p) {
				break
			}
		}
	}
	return nil
}

// lastPage reports whether page p was the last, as client.All decides.
func lastPage(res client.ListResult, p int) bool {
	n := len(res.Traces)
	return n == 0 || n < verifyPageSize || (res.TotalCount > 0 && (p-1)*verifyPageSize+n >= res.TotalCount)
}
