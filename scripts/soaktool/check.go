package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tracesync/tracesync/client"
)

// traceKey is what a trace says of itself: the content it came from and
// its index in that content. ok is false for a trace the producer did not
// write.
type traceKey struct {
	content string
	line    int
	ok      bool
}

func keyOf(data map[string]any) traceKey {
	id, _ := data["soak_content"].(string)
	line, isNum := data["line"].(float64)
	if id == "" || !isNum {
		return traceKey{}
	}
	return traceKey{content: id, line: int(line), ok: true}
}

// parseTraces splits a file the way the API does (stratix-api.md): a
// .jsonl one trace per non-empty line, a .json one for an object and one
// per element of an array. Every trace must name its content and index.
func parseTraces(name string, data []byte) ([]traceKey, error) {
	var objs []map[string]any
	if strings.HasSuffix(name, ".jsonl") {
		if len(data) == 0 || data[len(data)-1] != '\n' {
			return nil, errors.New("a .jsonl without its final newline")
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var o map[string]any
			if err := json.Unmarshal(line, &o); err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
	} else {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case map[string]any:
			objs = append(objs, v)
		case []any:
			for i, e := range v {
				o, ok := e.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("element %d is not an object", i)
				}
				objs = append(objs, o)
			}
		default:
			return nil, errors.New("not an object or array")
		}
	}
	keys := make([]traceKey, len(objs))
	for i, o := range objs {
		keys[i] = keyOf(o)
		if !keys[i].ok || keys[i].line != i || keys[i].content != keys[0].content {
			return nil, fmt.Errorf("trace %d is %+v: want line %d of one content", i, keys[i], i)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no traces")
	}
	return keys, nil
}

// serverView is what the server holds: live traces by content and line,
// and, from the fake's data log, how often each content was created.
type serverView struct {
	live         map[string]map[int]int // content → line → live traces
	liveTotal    int
	foreignLive  int            // live traces that name no content
	creates      map[string]int // content → creates (traces of line 0 ever created)
	created      map[string]int // content → traces ever created
	deleted      map[string]int // content → traces deleted
	foreignEver  int            // created traces that name no content
	createdTotal int
	deletedTotal int
}

// listLive lists every live trace through the API (directly from the fake,
// whose faults still apply: each page is retried until it answers).
func listLive(ctx context.Context, baseURL string, v *serverView) error {
	api, err := client.New(client.Config{BaseURL: baseURL, APIKey: apiKey,
		HTTPClient: &http.Client{Transport: client.NewTransport(), Timeout: 30 * time.Second}})
	if err != nil {
		return err
	}
	if _, err := retry(ctx, func() (client.Target, error) { return api.Discover(ctx) }); err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	v.live = map[string]map[int]int{}
	const pageSize = 500
	for page := 1; ; page++ {
		res, err := retry(ctx, func() (client.ListResult, error) {
			return api.List(ctx, client.ListOptions{Page: page, PageSize: pageSize, SortBy: "created_at", SortOrder: "asc"})
		})
		if err != nil {
			return fmt.Errorf("list page %d: %w", page, err)
		}
		for _, t := range res.Traces {
			v.liveTotal++
			k := keyOf(t.Data)
			if !k.ok {
				v.foreignLive++
				continue
			}
			if v.live[k.content] == nil {
				v.live[k.content] = map[int]int{}
			}
			v.live[k.content][k.line]++
		}
		if len(res.Traces) < pageSize {
			return nil
		}
	}
}

// retry calls fn until it succeeds or fails with anything but a transient
// API error (the fake's injected 503s and 429s), at most 50 times.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		var ae *client.APIError
		if attempt >= 50 || !errors.As(err, &ae) || (ae.StatusCode != http.StatusServiceUnavailable && ae.StatusCode != http.StatusTooManyRequests) {
			return zero, err
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readDataLog reads stratix-fake's --data-dir log (traces.jsonl: one
// {"op":"create","id",...,"data"} or {"op":"delete","id"} a line), every
// create and delete of the run, including traces deleted since.
func readDataLog(name string, v *serverView) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	v.creates, v.created, v.deleted = map[string]int{}, map[string]int{}, map[string]int{}
	byID := map[string]traceKey{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		var rec struct {
			Op   string         `json:"op"`
			ID   string         `json:"id"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		switch rec.Op {
		case "create":
			v.createdTotal++
			k := keyOf(rec.Data)
			byID[rec.ID] = k
			if !k.ok {
				v.foreignEver++
				continue
			}
			v.created[k.content]++
			if k.line == 0 {
				v.creates[k.content]++
			}
		case "delete":
			v.deletedTotal++
			if k := byID[rec.ID]; k.ok {
				v.deleted[k.content]++
			}
		default:
			return fmt.Errorf("%s:%d: unknown op %q", name, lineNo, rec.Op)
		}
	}
	return sc.Err()
}

// problem is one content whose server state breaks a rule.
type problem struct {
	kind    string // "duplicate", "lost", "partial", "undeleted", "unexpected"
	content *content
	id      string // for unexpected contents
	detail  string
}

// verdict is the result of comparing the folder with the server.
type verdict struct {
	contents      int // distinct contents the producer wrote
	present       int // of them, held by a path at the end
	retired       int // of them, whose last path went away
	uploaded      int // created at least once
	creates       int // creates in all (line-0 traces ever created)
	duplicates    int // contents created more than once, or live twice
	liveTwice     int // of duplicates: with a trace live twice at the end
	lost          int // present contents without all their live traces
	undeleted     int // retired contents with live traces left
	remoteDeleted int // retired contents created and deleted again
	toDelete      int // traces ever created of retired contents: each must be deleted
	deletedOK     int // of them, deleted
	unexpected    int // contents or traces the producer never wrote
	problems      []problem
}

func (v verdict) ok() bool {
	return v.duplicates == 0 && v.lost == 0 && v.undeleted == 0 && v.unexpected == 0
}

// judge compares what the producer left with what the server holds.
func judge(all []*content, sv serverView) verdict {
	var out verdict
	known := make(map[string]bool, len(all))
	for _, c := range all {
		known[c.id] = true
		out.contents++
		creates := sv.creates[c.id]
		out.creates += creates
		if creates > 0 {
			out.uploaded++
		}
		lines := sv.live[c.id]
		liveN := 0
		for _, n := range lines {
			liveN += n
		}
		liveTwice := false
		for _, n := range lines {
			liveTwice = liveTwice || n > 1
		}
		if creates > 1 || liveTwice {
			out.duplicates++
			kind := "recreated" // created again after its traces were deleted
			if liveTwice {
				kind = "duplicate" // two sets of traces live at once
				out.liveTwice++
			}
			out.problems = append(out.problems, problem{kind: kind, content: c,
				detail: fmt.Sprintf("%d creates, %d traces created, %d deleted, %d live (want %d)", creates, sv.created[c.id], sv.deleted[c.id], liveN, c.traces)})
		}
		if c.refs > 0 {
			out.present++
			whole := len(lines) == c.traces
			for i := range c.traces {
				whole = whole && lines[i] >= 1
			}
			switch {
			case liveN == 0:
				out.lost++
				out.problems = append(out.problems, problem{kind: "lost", content: c,
					detail: fmt.Sprintf("no live trace (%d creates, %d traces deleted)", creates, sv.deleted[c.id])})
			case !whole:
				out.lost++
				out.problems = append(out.problems, problem{kind: "partial", content: c,
					detail: fmt.Sprintf("live lines %v, want 0..%d", sortedKeys(lines), c.traces-1)})
			}
			continue
		}
		out.retired++
		out.toDelete += sv.created[c.id]
		out.deletedOK += sv.deleted[c.id]
		if liveN > 0 {
			out.undeleted++
			out.problems = append(out.problems, problem{kind: "undeleted", content: c,
				detail: fmt.Sprintf("%d live traces, %d creates", liveN, creates)})
		} else if creates > 0 {
			out.remoteDeleted++
		}
	}
	var strangers []string
	for id := range sv.live {
		if !known[id] {
			strangers = append(strangers, id)
		}
	}
	for id := range sv.created {
		if !known[id] && sv.live[id] == nil {
			strangers = append(strangers, id)
		}
	}
	slices.Sort(strangers)
	for _, id := range strangers {
		out.unexpected++
		out.problems = append(out.problems, problem{kind: "unexpected", id: id, detail: "traces of a content the producer never wrote"})
	}
	if n := max(sv.foreignLive, sv.foreignEver); n > 0 {
		out.unexpected += n
		out.problems = append(out.problems, problem{kind: "unexpected", id: "-",
			detail: fmt.Sprintf("%d live and %d ever-created traces without a soak_content field", sv.foreignLive, sv.foreignEver)})
	}
	return out
}

func sortedKeys(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
