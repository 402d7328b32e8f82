package client

// wire.go owns the wire forms of the API's objects: like the exported
// types, but tolerant of what a Python API may send (timestamps without a
// zone, nulls).

import (
	"encoding/json"
	"fmt"
	"time"
)

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
