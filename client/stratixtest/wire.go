// The traces API's wire format: the JSON envelope, error and request bodies, and a trace's JSON shape.

package stratixtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxJSONBody bounds API request bodies (they are tiny).
const maxJSONBody = 1 << 20

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

// timeLayout is ISO 8601 with microseconds, as a Python API sends.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

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

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
