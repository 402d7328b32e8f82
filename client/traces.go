package client

// traces.go owns the traces endpoints: presign, create, get, list,
// delete, sources, and the three-call upload.

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Presign asks for a presigned URL to PUT filename's bytes to (POST
// T/upload). filename is sent as its basename; contentType must be the one
// of ContentType(filename) and is the type Put must send. An answer without
// url is an error wrapping ErrBadResponse.
func (c *Client) Presign(ctx context.Context, filename, contentType string, size int64) (Presigned, error) {
	if size > MaxFileSize {
		return Presigned{}, fmt.Errorf("presign %s: %d bytes: %w", path.Base(filename), size, ErrTooLarge)
	}
	if size < 0 {
		return Presigned{}, fmt.Errorf("presign %s: negative size %d", path.Base(filename), size)
	}
	if err := checkFilename("presign", basename(filename)); err != nil {
		return Presigned{}, err
	}
	base, err := c.tracesURL(ctx)
	if err != nil {
		return Presigned{}, err
	}
	req := struct {
		Filename string `json:"filename"`
		Type     string `json:"type"`
		Size     int64  `json:"size"`
	}{basename(filename), contentType, size}
	var p Presigned
	if err := c.do(ctx, "presign", http.MethodPost, base+"/upload", req, &p, false); err != nil {
		return Presigned{}, err
	}
	if p.URL == "" {
		return Presigned{}, fmt.Errorf("presign: %w: no url in the answer", ErrBadResponse)
	}
	return p, nil
}

// Create turns the object PUT for filename (its basename) into traces and
// returns their ids. It accepts both answer forms: {"trace_ids": [...]} and,
// inside the envelope, the bare list. Create is not idempotent: calling it
// twice for one upload may create two sets of traces.
func (c *Client) Create(ctx context.Context, filename string) ([]string, error) {
	if err := checkFilename("create", basename(filename)); err != nil {
		return nil, err
	}
	base, err := c.tracesURL(ctx)
	if err != nil {
		return nil, err
	}
	req := struct {
		Filename string `json:"filename"`
	}{basename(filename)}
	var ans createAnswer
	if err := c.do(ctx, "create", http.MethodPost, base, req, &ans, false); err != nil {
		return nil, err
	}
	if ans.ids != nil {
		return ans.ids, nil
	}
	ids, err := parseCreateIDs(ans.payload)
	if err != nil {
		return nil, fmt.Errorf("create: %w: %v", ErrBadResponse, err)
	}
	return ids, nil
}

// Upload is presign, put and create for one file: a convenience for the CLI.
// It refuses an unsupported name or a body over MaxFileSize before any
// request. body is read from its start (Seek(0)).
func (c *Client) Upload(ctx context.Context, filename string, body io.ReadSeeker, size int64) ([]string, error) {
	ct, err := ContentType(filename)
	if err != nil {
		return nil, err
	}
	if size > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes: %w", filename, size, ErrTooLarge)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	p, err := c.Presign(ctx, filename, ct, size)
	if err != nil {
		return nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("upload %s: rewind: %w", filename, err)
	}
	if _, err := c.Put(ctx, p.URL, ct, body, size); err != nil {
		return nil, err
	}
	return c.Create(ctx, filename)
}

// Get returns one trace (GET T/{id}).
func (c *Client) Get(ctx context.Context, id string) (Trace, error) {
	base, err := c.tracesURL(ctx)
	if err != nil {
		return Trace{}, err
	}
	var w wireTrace
	if err := c.do(ctx, "get", http.MethodGet, base+"/"+url.PathEscape(id), nil, &w, false); err != nil {
		return Trace{}, err
	}
	return w.trace(), nil
}

// List returns one page of traces (GET T?...). Page and PageSize are always
// sent (defaults 1 and 100, PageSize clamped to 1..500); other options only
// when set. Count defaults to the page's length and TotalCount to Count.
func (c *Client) List(ctx context.Context, opts ListOptions) (ListResult, error) {
	base, err := c.tracesURL(ctx)
	if err != nil {
		return ListResult{}, err
	}
	opts = normalizeList(opts)
	q := url.Values{}
	q.Set("page", strconv.Itoa(opts.Page))
	q.Set("page_size", strconv.Itoa(opts.PageSize))
	for _, kv := range [...][2]string{
		{"source", opts.Source}, {"judge_id", opts.JudgeID}, {"status", opts.Status},
		{"time_range", opts.TimeRange}, {"search", opts.Search}, {"sort_by", opts.SortBy}, {"sort_order", opts.SortOrder},
	} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	var w struct {
		Traces     []wireTraceWithEvaluations `json:"traces"`
		Count      *int                       `json:"count"`
		TotalCount *int                       `json:"total_count"`
	}
	if err := c.do(ctx, "list", http.MethodGet, base+"?"+q.Encode(), nil, &w, false); err != nil {
		return ListResult{}, err
	}
	res := ListResult{Traces: make([]TraceWithEvaluations, 0, len(w.Traces))}
	for _, t := range w.Traces {
		res.Traces = append(res.Traces, t.traceWithEvaluations())
	}
	res.Count = len(res.Traces)
	if w.Count != nil {
		res.Count = *w.Count
	}
	res.TotalCount = res.Count
	if w.TotalCount != nil {
		res.TotalCount = *w.TotalCount
	}
	return res, nil
}

func normalizeList(opts ListOptions) ListOptions {
	if opts.Page < 1 {
		opts.Page = 1
	}
	switch {
	case opts.PageSize == 0:
		opts.PageSize = 100
	case opts.PageSize < 1:
		opts.PageSize = 1
	case opts.PageSize > 500:
		opts.PageSize = 500
	}
	return opts
}

// All iterates over every trace matching opts, page after page from
// opts.Page, until a short or empty page or TotalCount is reached. An error
// is yielded once, and ends the iteration.
func (c *Client) All(ctx context.Context, opts ListOptions) iter.Seq2[TraceWithEvaluations, error] {
	return func(yield func(TraceWithEvaluations, error) bool) {
		opts := normalizeList(opts)
		seen := 0
		for {
			res, err := c.List(ctx, opts)
			if err != nil {
				yield(TraceWithEvaluations{}, err)
				return
			}
			for _, t := range res.Traces {
				if !yield(t, nil) {
					return
				}
			}
			seen += len(res.Traces)
			if len(res.Traces) == 0 || len(res.Traces) < opts.PageSize ||
				(res.TotalCount > 0 && (opts.Page-1)*opts.PageSize+len(res.Traces) >= res.TotalCount) {
				return
			}
			opts.Page++
		}
	}
}

// Delete deletes one trace (DELETE T/{id}). A 404 is an *APIError whose
// Class is ClassNotFound: already gone.
func (c *Client) Delete(ctx context.Context, id string) error {
	base, err := c.tracesURL(ctx)
	if err != nil {
		return err
	}
	return c.do(ctx, "delete", http.MethodDelete, base+"/"+url.PathEscape(id), nil, nil, false)
}

// Sources returns the sources traces came from (GET T/sources): the
// filenames of uploads.
func (c *Client) Sources(ctx context.Context) ([]string, error) {
	base, err := c.tracesURL(ctx)
	if err != nil {
		return nil, err
	}
	var w struct {
		Sources []string `json:"sources"`
	}
	if err := c.do(ctx, "sources", http.MethodGet, base+"/sources", nil, &w, false); err != nil {
		return nil, err
	}
	if w.Sources == nil {
		w.Sources = []string{}
	}
	return w.Sources, nil
}

// basename is the last element of a slash or backslash separated name.
// basename is the last element of a slash-separated name. A backslash is an
// ordinary character of a file name here: splitting on it would send the
// server another name than the file's, and crash recovery, which looks for
// the traces by that name, would never find them (a second create).
func basename(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// checkFilename refuses a name the API cannot record as it is: JSON text is
// UTF-8, so a name with invalid UTF-8 would be stored with replacement
// characters, another name than the file's, which crash recovery could
// then never match (rule 9).
func checkFilename(op, name string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("%s %q: %w", op, name, ErrInvalidFilename)
	}
	return nil
}
