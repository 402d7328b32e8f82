package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
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

// Put sends exactly size bytes of body to a presigned URL, with
// Content-Length set (never chunked), the signed contentType, and no API
// key: up to smallPut bytes read whole first, larger bodies streamed. It
// returns the SHA-256 of the bytes actually sent. A body that ends early or
// holds more than size bytes is an error wrapping ErrBodySize, and the
// server stores nothing: a small body is not sent at all, a streamed one is
// cut short. A retried Put must be given a body that starts again from the
// beginning.
func (c *Client) Put(ctx context.Context, u, contentType string, body io.Reader, size int64) ([32]byte, error) {
	var sum [32]byte
	if size > MaxFileSize {
		return sum, fmt.Errorf("put: %d bytes: %w", size, ErrTooLarge)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if size > 0 && size <= smallPut {
		return c.putSmall(ctx, u, contentType, body, size)
	}
	hr := &hashingReader{r: body, remaining: size, size: size, h: sha256.New()}
	var rd io.Reader = hr
	if size == 0 {
		// A zero ContentLength with a non-nil body would make net/http probe
		// it and maybe send it chunked; check the body is empty ourselves.
		if err := hr.checkEmpty(); err != nil {
			return sum, fmt.Errorf("put: %w", err)
		}
		rd = http.NoBody
	}
	req, err := c.newPut(ctx, u, contentType, rd)
	if err != nil {
		return sum, err
	}
	req.ContentLength = size
	resp, err := c.hc.Do(req)
	// net/http may still be reading the body in another goroutine after Do
	// returns: read hr's state under its lock.
	hr.mu.Lock()
	bodyErr, remaining := hr.err, hr.remaining
	if remaining == 0 && bodyErr == nil {
		copy(sum[:], hr.h.Sum(nil))
	}
	hr.mu.Unlock()
	if bodyErr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return [32]byte{}, fmt.Errorf("put: %w", bodyErr)
	}
	if err := c.putAnswer(resp, err); err != nil {
		return [32]byte{}, err
	}
	if remaining != 0 {
		// The server answered 2xx before taking the whole body: not stored as meant.
		return [32]byte{}, fmt.Errorf("put: %w: server answered after %d of %d bytes", ErrBodySize, size-remaining, size)
	}
	return sum, nil
}

// smallPut is the largest body Put reads whole before sending it. net/http
// writes the headers of a body it cannot see in memory on their own, before
// the body, so that every PUT of a small file cost two writes here and two
// reads (two wake-ups) at the server; a body in memory goes out with its
// headers in one write.
const smallPut = 32 << 10

// putSmall is Put for a body of 1 to smallPut bytes: it reads exactly size
// bytes, checks the source ends there, hashes them and sends them. A body
// of the wrong size is refused before anything is sent. The buffer is not
// reused: net/http may still read it after Do returns.
func (c *Client) putSmall(ctx context.Context, u, contentType string, body io.Reader, size int64) ([32]byte, error) {
	buf := make([]byte, size)
	if n, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return [32]byte{}, fmt.Errorf("put: %w: body ended after %d of %d bytes", ErrBodySize, n, size)
		}
		return [32]byte{}, fmt.Errorf("put: read body: %w", err)
	}
	if err := (&hashingReader{r: body, size: size}).checkEmpty(); err != nil {
		return [32]byte{}, fmt.Errorf("put: %w", err)
	}
	req, err := c.newPut(ctx, u, contentType, bytes.NewReader(buf))
	if err != nil {
		return [32]byte{}, err
	}
	resp, err := c.hc.Do(req)
	if err := c.putAnswer(resp, err); err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(buf), nil
}

// newPut builds a PUT of body to the presigned URL u: the signed
// Content-Type, no API key.
func (c *Client) newPut(ctx context.Context, u, contentType string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return nil, fmt.Errorf("put: invalid URL: %w", redactURLErr(err))
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// putAnswer reads the answer to a PUT (or the error that came instead):
// nil for a 2xx, whose body is drained so that the connection is reused.
func (c *Client) putAnswer(resp *http.Response, err error) error {
	if err != nil {
		return c.transportError("put", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.readAPIError("put", resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil
}

// redactURLErr drops the query (a presigned signature) from a URL parse error.
func redactURLErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			ue.URL = ue.URL[:i]
		}
	}
	return err
}

// hashingReader hashes what it hands out and enforces the declared size:
// the last bytes are withheld (and an error returned) if the source holds
// more than size bytes, so the server never receives a complete body.
type hashingReader struct {
	mu        sync.Mutex // guards everything below: net/http may read from another goroutine
	r         io.Reader
	size      int64
	remaining int64
	h         hash.Hash
	err       error // ErrBodySize (wrapped) or a read error, sticky
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if hr.err != nil {
		return 0, hr.err
	}
	if hr.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > hr.remaining {
		p = p[:hr.remaining]
	}
	n, err := hr.r.Read(p)
	if n > 0 {
		if int64(n) == hr.remaining {
			// The last bytes: hand them out only if the source ends here.
			if extra := hr.checkEmpty(); extra != nil {
				return 0, extra
			}
		}
		hr.h.Write(p[:n])
		hr.remaining -= int64(n)
	}
	if err == io.EOF {
		if hr.remaining > 0 {
			hr.err = fmt.Errorf("%w: body ended after %d of %d bytes", ErrBodySize, hr.size-hr.remaining, hr.size)
			return n, hr.err
		}
		return n, io.EOF
	}
	if err != nil {
		hr.err = fmt.Errorf("read body: %w", err)
		return n, hr.err
	}
	return n, nil
}

// checkEmpty reads one more byte from the source: an error if there is one.
func (hr *hashingReader) checkEmpty() error {
	var one [1]byte
	for {
		n, err := hr.r.Read(one[:])
		if n > 0 {
			hr.err = fmt.Errorf("%w: body holds more than %d bytes", ErrBodySize, hr.size)
			return hr.err
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			hr.err = fmt.Errorf("read body: %w", err)
			return hr.err
		}
	}
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

// eachID calls fn with the bytes of each string of list, a JSON array of
// strings without escapes.
func eachID(list []byte, fn func(id []byte)) {
	for i := 0; i < len(list); i++ {
		if list[i] != '"' {
			continue
		}
		j := i + 1 + bytes.IndexByte(list[i+1:], '"')
		fn(list[i+1 : j])
		i = j
	}
}

// createAnswer is what do decodes a create answer into: the ids, when the
// body is {"trace_ids": [...]} alone with plain ids, else the payload (the
// body, or the envelope's data) for parseCreateIDs.
type createAnswer struct {
	ids     []string
	payload json.RawMessage
}

func parseCreateIDs(raw json.RawMessage) ([]string, error) {
	if ids, ok := plainCreateAnswer(raw); ok {
		return ids, nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		var ids []string
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, err
		}
		return ids, nil
	}
	var obj struct {
		TraceIDs *[]string `json:"trace_ids"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if obj.TraceIDs == nil {
		return nil, errors.New("no trace_ids in the answer")
	}
	return *obj.TraceIDs, nil
}

// plainCreateAnswer decodes the usual create answer, the list of ids or
// {"trace_ids": [...]} alone, when every id is printable ASCII without
// escapes, into one string the ids are slices of: one allocation for the
// 200,000 ids a 50 MiB upload makes, instead of one each, and no copy of
// the list. false means "not sure": parseCreateIDs then uses encoding/json,
// which decides.
func plainCreateAnswer(raw []byte) ([]string, bool) {
	if ids, ok := plainTraceIDsObject(raw); ok {
		return ids, true
	}
	ids, end, ok := plainStringList(raw, skipJSONSpace(raw, 0))
	if !ok || skipJSONSpace(raw, end) != len(raw) {
		return nil, false
	}
	return ids, true
}

// plainTraceIDsObject decodes raw when it is {"trace_ids": [...]} alone
// (JSON whitespace allowed) with plain ids (see plainStringList).
func plainTraceIDsObject(raw []byte) ([]string, bool) {
	i := skipJSONSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		return nil, false
	}
	i = skipJSONSpace(raw, i+1)
	const key = `"trace_ids"`
	if !bytes.HasPrefix(raw[i:], []byte(key)) {
		return nil, false
	}
	i = skipJSONSpace(raw, i+len(key))
	if i == len(raw) || raw[i] != ':' {
		return nil, false
	}
	ids, end, ok := plainStringList(raw, skipJSONSpace(raw, i+1))
	if !ok {
		return nil, false
	}
	end = skipJSONSpace(raw, end)
	if end == len(raw) || raw[end] != '}' || skipJSONSpace(raw, end+1) != len(raw) {
		return nil, false
	}
	return ids, true
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainStringList decodes the JSON array of strings at b[i:] when every
// string is printable ASCII without a backslash, and returns the index
// after its ']'; false otherwise.
func plainStringList(b []byte, i int) (ids []string, end int, ok bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, 0, false
	}
	start := i
	// First pass: check the shape, count the ids and their bytes.
	count, total := 0, 0
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return []string{}, i + 1, true
	}
	for {
		if i == len(b) || b[i] != '"' {
			return nil, 0, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if c := b[j]; c < 0x20 || c > 0x7e || c == '\\' {
				return nil, 0, false
			}
			j++
		}
		if j == len(b) {
			return nil, 0, false
		}
		count++
		total += j - i - 1
		i = skipJSONSpace(b, j+1)
		if i == len(b) {
			return nil, 0, false
		}
		if b[i] == ']' {
			end = i + 1
			break
		}
		if b[i] != ',' {
			return nil, 0, false
		}
		i = skipJSONSpace(b, i+1)
	}
	// The shape is known good: copy the ids into one string, then slice it.
	var all strings.Builder
	all.Grow(total)
	eachID(b[start:end], func(id []byte) { all.Write(id) })
	joined := all.String()
	ids = make([]string, 0, count)
	off := 0
	eachID(b[start:end], func(id []byte) {
		ids = append(ids, joined[off:off+len(id)])
		off += len(id)
	})
	return ids, end, true
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

// Wire forms: like the exported types, but tolerant of what a Python API
// may send (timestamps without a zone, nulls).

type wireOrganization struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	OwnerID  string    `json:"owner_id"`
	Projects []Project `json:"projects"`
}

type wireTrace struct {
	ID             string         `json:"id"`
	OrganizationID string         `json:"organization_id"`
	ProjectID      string         `json:"project_id"`
	CreatedAt      flexTime       `json:"created_at"`
	Filename       *string        `json:"filename"`
	Data           map[string]any `json:"data"`
	Input          *string        `json:"input"`
	IntegrationID  *string        `json:"integration_id"`
}

func (w wireTrace) trace() Trace {
	return Trace{
		ID: w.ID, OrganizationID: w.OrganizationID, ProjectID: w.ProjectID,
		CreatedAt: time.Time(w.CreatedAt), Filename: w.Filename, Data: w.Data,
		Input: w.Input, IntegrationID: w.IntegrationID,
	}
}

type wireEvaluation struct {
	JudgeID      string   `json:"judge_id"`
	JudgeName    string   `json:"judge_name"`
	JudgeVersion any      `json:"judge_version"`
	CreatedAt    flexTime `json:"created_at"`
	Passed       bool     `json:"passed"`
}

type wireTraceWithEvaluations struct {
	wireTrace
	EvaluationsCount int              `json:"evaluations_count"`
	LastEvaluations  []wireEvaluation `json:"last_evaluations"`
}

func (w wireTraceWithEvaluations) traceWithEvaluations() TraceWithEvaluations {
	t := TraceWithEvaluations{Trace: w.trace(), EvaluationsCount: w.EvaluationsCount}
	for _, e := range w.LastEvaluations {
		t.LastEvaluations = append(t.LastEvaluations, Evaluation{
			JudgeID: e.JudgeID, JudgeName: e.JudgeName, JudgeVersion: e.JudgeVersion,
			CreatedAt: time.Time(e.CreatedAt), Passed: e.Passed,
		})
	}
	return t
}

// flexTime reads ISO 8601 timestamps with or without a zone (no zone: UTC),
// with "T" or a space, and null or "" as the zero time.
type flexTime time.Time

var flexLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func (f *flexTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("created_at: %w", err)
	}
	if s == nil || *s == "" {
		*f = flexTime{}
		return nil
	}
	for _, layout := range flexLayouts {
		if t, err := time.Parse(layout, *s); err == nil {
			*f = flexTime(t)
			return nil
		}
	}
	return fmt.Errorf("created_at: cannot parse %q as ISO 8601", *s)
}
