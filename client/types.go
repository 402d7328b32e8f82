// Package client is a Go client for the Stratix traces API (LayerLens), as
// described in shared/stratix-api.md: typed, context-aware, and without
// retries of its own (the uploader owns retries).
//
// It knows nothing of files on disk, of the store or of syncing rules.
package client

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// DefaultBaseURL is the API the official SDK talks to when none is given.
const DefaultBaseURL = "https://api.layerlens.ai/api/v1"

// MaxFileSize is the largest file the API accepts (50 MiB); the SDK refuses
// larger files before any request, and so do we.
const MaxFileSize int64 = 50 << 20

// ErrNoAPIKey is returned by New when Config.APIKey is empty.
var ErrNoAPIKey = errors.New("no API key")

// ErrUnsupportedType is returned for a filename that is neither .json nor .jsonl.
var ErrUnsupportedType = errors.New("unsupported file type: only .json and .jsonl are accepted")

// ContentType returns the content type the API expects for a filename:
// application/jsonl for .jsonl, application/json for .json.
func ContentType(filename string) (string, error) {
	switch strings.ToLower(filepath.Ext(filename)) {
	case ".jsonl":
		return "application/jsonl", nil
	case ".json":
		return "application/json", nil
	}
	return "", fmt.Errorf("%s: %w", filename, ErrUnsupportedType)
}

// Config configures a Client. The zero value of each optional field is noted.
type Config struct {
	BaseURL        string       // empty: DefaultBaseURL
	APIKey         string       // required; never logged, never in an error
	HTTPClient     *http.Client // nil: a client on NewTransport() (5 s connect, TLS and response-header timeouts); a call's total time is bounded by its context, else Timeout
	PutHTTPClient  *http.Client // the client of the presigned PUTs; nil: HTTPClient when that is set, else a client on NewPutTransport()
	UserAgent      string       // empty: "tracesync"
	OrganizationID string       // empty: discovered (GET /organizations)
	ProjectID      string       // empty: the organization's first project
	ProjectName    string       // when set and ProjectID is empty: the project of that name

	// Timeout is the deadline of one call (one HTTP exchange, or the three of
	// Upload) when the caller's context has none. Zero: DefaultTimeout (10 min,
	// as the SDK); negative: none (the context alone bounds the call).
	Timeout time.Duration
	// Now is the clock used to read Retry-After HTTP dates. Nil: time.Now.
	Now func() time.Time
	// ReloadKey, when set, is called after the API answers 401: a key it
	// returns that differs from the one sent replaces it for every later
	// call (a rotated key file, e.g. a Kubernetes Secret, needs no
	// restart). An error or an empty key keeps the old one. Nil: the key
	// never changes.
	ReloadKey func() (string, error)
}

// Target names where traces go: one namespace of the store.
type Target struct {
	BaseURL        string
	OrganizationID string
	ProjectID      string
}

// String is the target's stable key: base URL, organization and project.
func (t Target) String() string {
	return strings.TrimRight(t.BaseURL, "/") + "|" + t.OrganizationID + "|" + t.ProjectID
}

// ParseTarget reads a Target back from its String form (the key the state
// records). It reports false when s is not one.
func ParseTarget(s string) (Target, bool) {
	j := strings.LastIndex(s, "|")
	if j < 0 {
		return Target{}, false
	}
	i := strings.LastIndex(s[:j], "|")
	if i <= 0 || j == len(s)-1 || j == i+1 {
		return Target{}, false
	}
	return Target{BaseURL: s[:i], OrganizationID: s[i+1 : j], ProjectID: s[j+1:]}, true
}

// Organization is the body of GET /organizations.
type Organization struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	OwnerID  string    `json:"owner_id"`
	Projects []Project `json:"projects"`
}

// Project is one project of an Organization.
type Project struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Presigned is the answer of presign: where to PUT the bytes.
type Presigned struct {
	OrganizationID string `json:"organization_id"`
	ProjectID      string `json:"project_id"`
	URL            string `json:"url"`
}

// Trace is one trace as the API returns it.
type Trace struct {
	ID             string         `json:"id"`
	OrganizationID string         `json:"organization_id"`
	ProjectID      string         `json:"project_id"`
	CreatedAt      time.Time      `json:"created_at"`
	Filename       *string        `json:"filename"`
	Data           map[string]any `json:"data"`
	Input          *string        `json:"input"`
	IntegrationID  *string        `json:"integration_id"`
}

// Evaluation is one entry of TraceWithEvaluations.LastEvaluations.
type Evaluation struct {
	JudgeID      string    `json:"judge_id"`
	JudgeName    string    `json:"judge_name"`
	JudgeVersion any       `json:"judge_version"`
	CreatedAt    time.Time `json:"created_at"`
	Passed       bool      `json:"passed"`
}

// TraceWithEvaluations is a Trace as list returns it.
type TraceWithEvaluations struct {
	Trace
	EvaluationsCount int          `json:"evaluations_count"`
	LastEvaluations  []Evaluation `json:"last_evaluations"`
}

// ListOptions are the list filters of the SDK. Zero values are not sent,
// except Page and PageSize, which are always sent (defaults 1 and 100;
// PageSize is clamped to 1..500).
type ListOptions struct {
	Page      int
	PageSize  int
	Source    string
	JudgeID   string
	Status    string
	TimeRange string // e.g. "7d", "30d"
	Search    string
	SortBy    string // e.g. "created_at"
	SortOrder string // "asc" or "desc"
}

// ListResult is one page of list.
type ListResult struct {
	Traces     []TraceWithEvaluations `json:"traces"`
	Count      int                    `json:"count"`
	TotalCount int                    `json:"total_count"`
}

// Class is what the uploader should do after an error. The client decides
// it, next to the code that knows the API (stratix-api.md, "Errors").
type Class uint8

const (
	// ClassTransient: network failure, timeout, 408, 429, 5xx: back off and retry
	// (waiting at least RetryAfter when the server gave one).
	ClassTransient Class = iota + 1
	// ClassPermanent: 400, 404 (outside delete), 409, 413, 422, or a local
	// refusal (too large, wrong type): quarantine the file with the message.
	ClassPermanent
	// ClassAuth: 401, or 403 on an API call: the key is wrong; pause every worker.
	ClassAuth
	// ClassRepresign: the presigned URL expired or its signature does not
	// match (403 on the PUT): presign again, do not back off on the same URL.
	ClassRepresign
	// ClassNotFound: 404; on delete this means already gone (done).
	ClassNotFound
	// ClassCanceled: the context was canceled; not a failure of the file.
	ClassCanceled
)

func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassPermanent:
		return "permanent"
	case ClassAuth:
		return "auth"
	case ClassRepresign:
		return "represign"
	case ClassNotFound:
		return "not-found"
	case ClassCanceled:
		return "canceled"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// APIError is a non-2xx answer of the API or of the presigned PUT.
type APIError struct {
	Op         string        // "presign", "put", "create", "get", "list", "delete", "sources", "organizations"
	StatusCode int           // HTTP status
	Code       string        // S3 error code for the PUT (e.g. "AccessDenied", "SignatureDoesNotMatch"), else empty
	Message    string        // the server's message ({"error": ...}, {"detail": ...} or S3 <Message>)
	RetryAfter time.Duration // from Retry-After (seconds or HTTP date); zero when absent
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s: HTTP %d %s: %s", e.Op, e.StatusCode, e.Code, msg)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, msg)
}
