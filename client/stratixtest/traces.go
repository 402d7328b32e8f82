// The traces API's endpoints (organizations, presign, create, get, delete, sources, list) and the traces they change.

package stratixtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxFileSize is the API's limit (50 MiB), restated here so the fake does not
// lean on the client's constants for its protocol.
const maxFileSize = 50 << 20

func (s *Server) handleOrganizations(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.apiPrelude(w, r, EndpointOrganizations, false); !ok {
		return
	}
	type project struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	projects := make([]project, 0, len(s.org.projects))
	for _, p := range s.org.projects {
		projects = append(projects, project{p.ID, p.Name})
	}
	s.writeJSON(w, http.StatusOK, struct {
		ID       string    `json:"id"`
		Name     string    `json:"name"`
		OwnerID  string    `json:"owner_id"`
		Projects []project `json:"projects"`
	}{s.org.id, s.org.name, "user-test", projects}, true)
}

func (s *Server) handlePresign(w http.ResponseWriter, r *http.Request) {
	project, _, ok := s.apiPrelude(w, r, EndpointPresign, true)
	if !ok {
		return
	}
	var req struct {
		Filename *string `json:"filename"`
		Type     *string `json:"type"`
		Size     *int64  `json:"size"`
	}
	if err := readJSON(r, &req); err != nil {
		s.errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case req.Filename == nil || *req.Filename == "":
		s.errorJSON(w, http.StatusBadRequest, "filename is required")
		return
	case strings.ContainsAny(*req.Filename, `/\`):
		s.errorJSON(w, http.StatusBadRequest, "filename must be a base name, without directories")
		return
	case req.Type == nil:
		s.errorJSON(w, http.StatusBadRequest, "type is required")
		return
	case *req.Type != "application/json" && *req.Type != "application/jsonl":
		s.errorJSON(w, http.StatusBadRequest, "unsupported type "+strconv.Quote(*req.Type)+": use application/json or application/jsonl")
		return
	case req.Size == nil || *req.Size < 0:
		s.errorJSON(w, http.StatusBadRequest, "size is required and must not be negative")
		return
	case *req.Size > maxFileSize:
		s.errorJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("file too large: %d bytes, the limit is %d", *req.Size, maxFileSize))
		return
	}
	var rnd [24]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		s.errorJSON(w, http.StatusInternalServerError, "random: "+err.Error())
		return
	}
	u := &presignedURL{
		token:       hex.EncodeToString(rnd[:12]),
		signature:   hex.EncodeToString(rnd[12:]),
		project:     project,
		filename:    *req.Filename,
		contentType: *req.Type,
		open:        true,
		conn:        connOf(r),
	}
	s.mu.Lock()
	now := s.now()
	u.expires = now.Add(s.ttl)
	s.tokens[u.token] = u
	s.presigns++
	if s.presigns%4096 == 0 {
		s.sweepTokensLocked(now)
	}
	open := s.inflight[u.filename][:0]
	for _, o := range s.inflight[u.filename] {
		if o.open && !now.After(o.expires) && !o.abandoned() {
			open = append(open, o)
		} else {
			o.open = false
		}
	}
	open = append(open, u)
	s.inflight[u.filename] = open
	if len(open) > s.maxInflight {
		s.maxInflight = len(open)
	}
	s.mu.Unlock()

	putURL := "http://" + r.Host + "/s3/" + u.token + "/" + url.PathEscape(u.filename) +
		"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=stratixtest&X-Amz-Expires=" +
		strconv.Itoa(int(s.ttl/time.Second)) + "&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=" + u.signature
	s.writeJSON(w, http.StatusOK, struct {
		OrganizationID string `json:"organization_id"`
		ProjectID      string `json:"project_id"`
		URL            string `json:"url"`
	}{s.org.id, project, putURL}, false)
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	// The filename is read before faults apply: whatever happens to this
	// create, the uploads of that basename are no longer in flight.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody))
	var req struct {
		Filename *string `json:"filename"`
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if req.Filename != nil {
		s.mu.Lock()
		for _, u := range append([]*presignedURL(nil), s.inflight[*req.Filename]...) {
			s.closeUploadLocked(u)
			if u.stored {
				// The URL has served its upload; forgetting it keeps memory
				// flat (a PUT to it now answers 403 SignatureDoesNotMatch).
				delete(s.tokens, u.token)
			}
		}
		s.mu.Unlock()
	}
	project, f, ok := s.apiPrelude(w, r, EndpointCreate, true)
	if !ok {
		return
	}
	if err != nil {
		s.errorJSON(w, http.StatusBadRequest, "body is not the expected JSON object: "+err.Error())
		return
	}
	if req.Filename == nil || *req.Filename == "" {
		s.errorJSON(w, http.StatusBadRequest, "filename is required")
		return
	}
	name := *req.Filename
	s.mu.Lock()
	obj := s.objects[objectKey{project, name}]
	s.mu.Unlock()
	if obj == nil {
		s.errorJSON(w, http.StatusBadRequest, "no uploaded file named "+strconv.Quote(name)+": presign and PUT it first")
		return
	}
	datas, perr := splitTraces(obj.data, obj.contentType)
	if perr != nil {
		s.errorJSON(w, http.StatusUnprocessableEntity, name+": "+perr.Error())
		return
	}
	s.mu.Lock()
	ids := s.newTracesLocked(s.now(), project, name, datas)
	s.createsByFilename[name]++
	s.created = append(s.created, obj)
	s.mu.Unlock()

	if f.kind == faultLoseResponse {
		hijackClose(w)
		return
	}
	if s.opts.IDsAsList {
		s.writeJSON(w, http.StatusOK, ids, true)
		return
	}
	s.writeJSON(w, http.StatusOK, struct {
		TraceIDs []string `json:"trace_ids"`
	}{ids}, false)
}

// newTracesLocked stores one trace per body, each with a created_at after
// every other, and returns their ids. The traces of one create share one
// allocation, and their ids one string: a 50 MiB upload makes ~200,000.
func (s *Server) newTracesLocked(now time.Time, project, filename string, datas [][]byte) []string {
	now = now.UTC().Truncate(time.Microsecond)
	idBuf := make([]byte, 0, len(datas)*(len(s.idPrefix)+6))
	ends := make([]int, len(datas))
	seq := s.seq
	for i := range datas {
		seq++
		idBuf = append(idBuf, s.idPrefix...)
		idBuf = strconv.AppendUint(idBuf, seq, 36)
		ends[i] = len(idBuf)
	}
	allIDs := string(idBuf)
	ids := make([]string, len(datas))
	block := make([]trace, len(datas))
	s.traces = growDoubling(s.traces, len(datas))
	key := sourceKey{project, filename}
	named := growDoubling(s.named[key], len(datas))
	start := 0
	for i, d := range datas {
		if !now.After(s.lastCreated) {
			now = s.lastCreated.Add(time.Microsecond)
		}
		s.lastCreated = now
		s.seq++
		ids[i] = allIDs[start:ends[i]]
		start = ends[i]
		t := &block[i]
		*t = trace{id: ids[i], project: project, createdAt: now, filename: filename, data: d}
		s.traces = append(s.traces, t)
		named = append(named, t)
		s.byID.put(t)
		s.persistCreateLocked(t)
	}
	s.named[key] = named
	s.sources[key] += len(datas)
	return ids
}

// growDoubling is slices.Grow that at least doubles the capacity when it
// must grow: slices.Grow grows to just what is asked, so growing the list
// of all traces by each create's count copied the whole list every time.
func growDoubling[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	return slices.Grow(s, max(n, cap(s)))
}

func (s *Server) addTraceLocked(t *trace) {
	s.traces = append(s.traces, t)
	s.byID.put(t)
	k := sourceKey{t.project, t.filename}
	s.named[k] = append(s.named[k], t)
	s.sources[k]++
}

// splitTraces turns an uploaded object into trace bodies (stratix-api.md,
// "Assumptions"): JSONL one per non-empty line, JSON one for an object and
// one per element of an array. Each trace must be a JSON object.
func splitTraces(data []byte, contentType string) ([][]byte, error) {
	var out [][]byte
	if contentType == "application/jsonl" {
		out = make([][]byte, 0, bytes.Count(data, []byte{'\n'})+1)
		line := 0
		for rest := data; len(rest) > 0; {
			line++
			var l []byte
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				l, rest = rest[:i], rest[i+1:]
			} else {
				l, rest = rest, nil
			}
			l = bytes.TrimSpace(l)
			if len(l) == 0 {
				continue
			}
			if l[0] != '{' || !validJSON(l) {
				return nil, fmt.Errorf("line %d is not a JSON object", line)
			}
			out = append(out, l)
		}
	} else {
		d := bytes.TrimSpace(data)
		switch {
		case len(d) > 0 && d[0] == '{':
			if !validJSON(d) {
				return nil, fmt.Errorf("not valid JSON")
			}
			out = append(out, d)
		case len(d) > 0 && d[0] == '[':
			var items []json.RawMessage
			if err := json.Unmarshal(d, &items); err != nil {
				return nil, fmt.Errorf("not valid JSON: %v", err)
			}
			for i, it := range items {
				it = bytes.TrimSpace(it)
				if len(it) == 0 || it[0] != '{' {
					return nil, fmt.Errorf("element %d is not a JSON object", i)
				}
				out = append(out, it)
			}
		default:
			return nil, fmt.Errorf("not a JSON object or array")
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no traces in the file")
	}
	return out, nil
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	project, _, ok := s.apiPrelude(w, r, EndpointGet, true)
	if !ok {
		return
	}
	s.mu.Lock()
	t := s.byID.get(r.PathValue("id"))
	var out wireTrace
	if t != nil && t.project == project {
		out = s.wire(t)
	}
	s.mu.Unlock()
	if out.ID == "" {
		s.errorJSON(w, http.StatusNotFound, "trace "+r.PathValue("id")+" not found")
		return
	}
	s.writeJSON(w, http.StatusOK, out, false)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	project, _, ok := s.apiPrelude(w, r, EndpointDelete, true)
	if !ok {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	t := s.byID.get(id)
	found := t != nil && t.project == project
	if found {
		s.deleteLocked(t)
		s.persistDeleteLocked(id)
	}
	s.mu.Unlock()
	if !found {
		s.errorJSON(w, http.StatusNotFound, "trace "+id+" not found")
		return
	}
	s.writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}{id, true}, false)
}

func (s *Server) deleteLocked(t *trace) {
	t.deleted = true
	s.byID.del(t.id)
	k := sourceKey{t.project, t.filename}
	if s.sources[k]--; s.sources[k] <= 0 {
		delete(s.sources, k)
		delete(s.named, k)
	}
	s.deleted = append(s.deleted, t.id)
	s.nDeleted++
	if s.nDeleted > 1024 && s.nDeleted > len(s.traces)/2 {
		live := s.traces[:0]
		for _, x := range s.traces {
			if !x.deleted {
				live = append(live, x)
			}
		}
		clear(s.traces[len(live):])
		s.traces = live
		s.nDeleted = 0
		for k, ts := range s.named {
			s.named[k] = slices.DeleteFunc(ts, func(x *trace) bool { return x.deleted })
		}
	}
}

func (s *Server) handleSources(w http.ResponseWriter, r *http.Request) {
	project, _, ok := s.apiPrelude(w, r, EndpointSources, true)
	if !ok {
		return
	}
	s.mu.Lock()
	src := s.sortedSources(project)
	s.mu.Unlock()
	s.writeJSON(w, http.StatusOK, struct {
		Sources []string `json:"sources"`
	}{src}, false)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	project, _, ok := s.apiPrelude(w, r, EndpointList, true)
	if !ok {
		return
	}
	q := r.URL.Query()
	page, err := intParam(q, "page", 1)
	if err != nil {
		s.errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	pageSize, err := intParam(q, "page_size", 100)
	if err != nil {
		s.errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	page = max(page, 1)
	pageSize = min(max(pageSize, 1), 500)
	if sb := q.Get("sort_by"); sb != "" && sb != "created_at" {
		s.errorJSON(w, http.StatusBadRequest, "unsupported sort_by "+strconv.Quote(sb)+": use created_at")
		return
	}
	desc := true
	switch so := strings.ToLower(q.Get("sort_order")); so {
	case "", "desc":
	case "asc":
		desc = false
	default:
		s.errorJSON(w, http.StatusBadRequest, "unsupported sort_order "+strconv.Quote(so)+": use asc or desc")
		return
	}
	var since time.Time
	if tr := q.Get("time_range"); tr != "" && tr != "all" {
		d, err := parseTimeRange(tr)
		if err != nil {
			s.errorJSON(w, http.StatusBadRequest, err.Error())
			return
		}
		since = s.now().Add(-d)
	}
	source, judge, status := q.Get("source"), q.Get("judge_id"), strings.ToLower(q.Get("status"))
	search := strings.ToLower(q.Get("search"))

	match := func(t *trace) bool {
		if t.deleted || t.project != project {
			return false
		}
		if !since.IsZero() && t.createdAt.Before(since) {
			return false
		}
		if source != "" && source != "upload" && t.filename != source {
			return false
		}
		if judge != "" {
			found := false
			for _, e := range t.evaluations {
				found = found || e.judgeID == judge
			}
			if !found {
				return false
			}
		}
		if status != "" {
			if len(t.evaluations) == 0 {
				return false
			}
			passed := t.evaluations[len(t.evaluations)-1].passed
			if (status == "pass" || status == "passed") != passed {
				return false
			}
		}
		if search != "" && !strings.Contains(strings.ToLower(t.id), search) &&
			!strings.Contains(strings.ToLower(t.filename), search) &&
			!bytes.Contains(bytes.ToLower(t.data), []byte(search)) {
			return false
		}
		return true
	}
	s.mu.Lock()
	// A filename narrows the walk to that name's traces, as an index would
	// on a real server: looking for one upload's traces must not cost a
	// walk of the whole project.
	pool := s.traces
	if source != "" && source != "upload" {
		pool = s.named[sourceKey{project, source}]
	}
	var matched []*trace
	for i := range pool {
		t := pool[i]
		if desc {
			t = pool[len(pool)-1-i]
		}
		if match(t) {
			matched = append(matched, t)
		}
	}
	total := len(matched)
	start := min((page-1)*pageSize, total)
	end := min(start+pageSize, total)
	out := make([]wireTraceWithEvaluations, 0, end-start)
	for _, t := range matched[start:end] {
		out = append(out, s.wireWithEvaluations(t))
	}
	s.mu.Unlock()
	s.writeJSON(w, http.StatusOK, struct {
		Traces     []wireTraceWithEvaluations `json:"traces"`
		Count      int                        `json:"count"`
		TotalCount int                        `json:"total_count"`
	}{out, len(out), total}, false)
}

func intParam(q url.Values, name string, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s must be an integer, got %q", name, v)
	}
	return n, nil
}

// parseTimeRange reads "30m", "24h", "7d", "2w", "1y".
func parseTimeRange(v string) (time.Duration, error) {
	bad := fmt.Errorf("unsupported time_range %q: use e.g. 24h, 7d, 30d", v)
	if len(v) < 2 {
		return 0, bad
	}
	n, err := strconv.Atoi(v[:len(v)-1])
	if err != nil || n <= 0 {
		return 0, bad
	}
	unit := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}[v[len(v)-1]]
	if unit == 0 {
		return 0, bad
	}
	return time.Duration(n) * unit, nil
}
