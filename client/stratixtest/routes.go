// Routing, the request log, and the checks every API call passes first: faults, key, organization, project.

package stratixtest

import (
	"crypto/subtle"
	"net/http"
	"time"
)

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
