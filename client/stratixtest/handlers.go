package stratixtest

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
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

	"github.com/cespare/xxhash/v2"
)

// maxFileSize is the API's limit (50 MiB), restated here so the fake does not
// lean on the client's constants for its protocol.
const maxFileSize = 50 << 20

// putChunk is the most read from a PUT body at a time.
const putChunk = 256 << 10

// maxJSONBody bounds API request bodies (they are tiny).
const maxJSONBody = 1 << 20

const tracesPrefix = "/api/v1/organizations/{org}/projects/{project}/traces"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/organizations", s.handleOrganizations)
	mux.HandleFunc("POST "+tracesPrefix+"/upload", s.handlePresign)
	mux.HandleFunc("POST "+tracesPrefix, s.handleCreate)
	mux.HandleFunc("GET "+tracesPrefix, s.handleList)
	mux.HandleFunc("GET "+tracesPrefix+"/sources", s.handleSources)
	mux.HandleFunc("GET "+tracesPrefix+"/{id}", s.handleGet)
	mux.HandleFunc("DELETE "+tracesPrefix+"/{id}", s.handleDelete)
	mux.HandleFunc("PUT /s3/{token}/{filename}", s.handlePut)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorJSON(w, http.StatusNotFound, "not found: "+r.Method+" "+r.URL.Path)
	})
	if !s.debugLog {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		s.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("status", sw.status).Dur("duration", time.Since(start)).Msg("request")
	})
}

// statusWriter records the status for the debug log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// --- answers ---

// writeJSON answers status with v, inside the envelope when configured
// (wrap forces it).
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any, wrap bool) {
	var body []byte
	var err error
	if wrap || s.opts.Envelope {
		body, err = json.Marshal(struct {
			Status string `json:"status"`
			Data   any    `json:"data"`
		}{"success", v})
	} else {
		body, err = json.Marshal(v)
	}
	if err != nil {
		s.errorJSON(w, http.StatusInternalServerError, "encode answer: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errorJSON answers an API error: {"error": msg} (with "status": "error"
// when the envelope is on).
func (s *Server) errorJSON(w http.ResponseWriter, status int, msg string) {
	var body []byte
	if s.opts.Envelope {
		body, _ = json.Marshal(struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}{"error", msg})
	} else {
		body, _ = json.Marshal(struct {
			Error string `json:"error"`
		}{msg})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// s3Error answers an S3 XML error.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>")
	xmlEscape(&b, code)
	b.WriteString("</Code><Message>")
	xmlEscape(&b, msg)
	b.WriteString("</Message><RequestId>stratixtest</RequestId></Error>")
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func xmlEscape(b *bytes.Buffer, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	b.WriteString(r.Replace(s))
}

// --- checks ---

// authorized checks x-api-key and answers 401 when it is wrong.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Get("x-api-key")
	if got == "" {
		s.errorJSON(w, http.StatusUnauthorized, "missing API key: send it in the x-api-key header")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(*s.apiKey.Load())) != 1 {
		s.errorJSON(w, http.StatusUnauthorized, "invalid API key")
		return false
	}
	return true
}

// project checks the path's organization and project: 403 for another
// organization, 404 for an unknown project. It returns the project id.
func (s *Server) project(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.PathValue("org") != s.org.id {
		s.errorJSON(w, http.StatusForbidden, "this API key has no access to organization "+r.PathValue("org"))
		return "", false
	}
	pid := r.PathValue("project")
	for _, p := range s.org.projects {
		if p.ID == pid {
			return pid, true
		}
	}
	s.errorJSON(w, http.StatusNotFound, "project "+pid+" not found")
	return "", false
}

// apiPrelude is what every API call does first: count, latency, faults,
// auth, and (for traces calls) the organization and project.
func (s *Server) apiPrelude(w http.ResponseWriter, r *http.Request, ep Endpoint, traces bool) (project string, f fault, ok bool) {
	f, handled := s.begin(w, r, ep)
	if handled {
		return "", f, false
	}
	if f.kind == faultDrop {
		hijackClose(w)
		return "", f, false
	}
	if !s.authorized(w, r) {
		return "", f, false
	}
	if traces {
		project, ok = s.project(w, r)
		if !ok {
			return "", f, false
		}
	}
	return project, f, true
}

func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("body is not the expected JSON object: %v", err)
	}
	return nil
}

// --- endpoints ---

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

// sweepTokensLocked forgets expired URLs (bounded memory in long runs).
func (s *Server) sweepTokensLocked(now time.Time) {
	for k, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, k)
			t.open = false
		}
	}
	for name, list := range s.inflight {
		open := list[:0]
		for _, o := range list {
			if o.open {
				open = append(open, o)
			}
		}
		if len(open) == 0 {
			delete(s.inflight, name)
		} else {
			s.inflight[name] = open
		}
	}
}

// closeUploadLocked ends an upload's in-flight period.
func (s *Server) closeUploadLocked(u *presignedURL) {
	if !u.open {
		return
	}
	u.open = false
	list := s.inflight[u.filename]
	for i, o := range list {
		if o == u {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.inflight, u.filename)
	} else {
		s.inflight[u.filename] = list
	}
}

// handlePut is the presigned PUT, with S3's checks in S3's order.
func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	f, handled := s.begin(w, r, EndpointPut)
	token := r.PathValue("token")
	s.mu.Lock()
	u := s.tokens[token]
	if handled && u != nil {
		s.closeUploadLocked(u) // the client saw a failure: it will presign again
	}
	s.mu.Unlock()
	if handled {
		return
	}
	fail := func(status int, code, msg string) {
		if u != nil {
			s.mu.Lock()
			s.closeUploadLocked(u)
			s.mu.Unlock()
		}
		s3Error(w, status, code, msg)
	}
	if len(r.TransferEncoding) > 0 {
		fail(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented: Transfer-Encoding")
		return
	}
	if len(r.Header.Values("Content-Length")) == 0 {
		fail(http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		return
	}
	if u == nil || r.URL.Query().Get("X-Amz-Signature") != u.signature || r.PathValue("filename") != u.filename {
		fail(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		return
	}
	if r.Header.Get("Content-Type") != u.contentType {
		fail(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method. (Content-Type "+strconv.Quote(r.Header.Get("Content-Type"))+" was not the signed "+strconv.Quote(u.contentType)+")")
		return
	}
	s.mu.Lock()
	expired := s.now().After(u.expires)
	s.mu.Unlock()
	if expired {
		fail(http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	if r.ContentLength > maxFileSize {
		fail(http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
		return
	}
	if f.kind == faultDrop {
		_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		s.mu.Lock()
		s.closeUploadLocked(u)
		s.mu.Unlock()
		hijackClose(w)
		return
	}
	// The ETag (S3 sends the MD5 of the body; clients treat it as opaque)
	// is a fast non-cryptographic hash taken as the body arrives.
	data := make([]byte, r.ContentLength)
	h := xxhash.New()
	for off := 0; off < len(data); {
		n, err := r.Body.Read(data[off:min(off+putChunk, len(data))])
		_, _ = h.Write(data[off : off+n])
		off += n
		if err != nil && off < len(data) {
			fail(http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
			return
		}
	}
	obj := &object{data: data, etag: fmt.Sprintf("%016x%016x", h.Sum64(), uint64(len(data))), contentType: u.contentType}
	s.mu.Lock()
	s.objects[objectKey{u.project, u.filename}] = obj
	u.stored = true
	if ci := connOf(r); ci != nil {
		u.conn = ci
	}
	s.mu.Unlock()
	w.Header().Set("ETag", `"`+obj.etag+`"`)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
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
		s.byID.put(t)
		s.persistCreateLocked(t)
	}
	s.sources[sourceKey{project, filename}] += len(datas)
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
	s.sources[sourceKey{t.project, t.filename}]++
}

// timeLayout is ISO 8601 with microseconds, as a Python API sends.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

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

// wireTrace is a trace as the API sends it.
type wireTrace struct {
	ID             string          `json:"id"`
	OrganizationID string          `json:"organization_id"`
	ProjectID      string          `json:"project_id"`
	CreatedAt      string          `json:"created_at"`
	Filename       *string         `json:"filename"`
	Data           json.RawMessage `json:"data"`
	Input          *string         `json:"input"`
	IntegrationID  *string         `json:"integration_id"`
}

type wireEvaluation struct {
	JudgeID      string `json:"judge_id"`
	JudgeName    string `json:"judge_name"`
	JudgeVersion any    `json:"judge_version"`
	CreatedAt    string `json:"created_at"`
	Passed       bool   `json:"passed"`
}

type wireTraceWithEvaluations struct {
	wireTrace
	EvaluationsCount int              `json:"evaluations_count"`
	LastEvaluations  []wireEvaluation `json:"last_evaluations"`
}

func (s *Server) wire(t *trace) wireTrace {
	fn := t.filename
	return wireTrace{ID: t.id, OrganizationID: s.org.id, ProjectID: t.project, CreatedAt: t.createdAt.Format(timeLayout), Filename: &fn, Data: t.data}
}

func (s *Server) wireWithEvaluations(t *trace) wireTraceWithEvaluations {
	w := wireTraceWithEvaluations{wireTrace: s.wire(t), EvaluationsCount: len(t.evaluations), LastEvaluations: []wireEvaluation{}}
	for _, e := range t.evaluations {
		w.LastEvaluations = append(w.LastEvaluations, wireEvaluation{e.judgeID, e.judgeName, e.judgeVersion, e.createdAt.UTC().Format(timeLayout), e.passed})
	}
	return w
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
	var matched []*trace
	for i := range s.traces {
		t := s.traces[i]
		if desc {
			t = s.traces[len(s.traces)-1-i]
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

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
