package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The API answers are decoded from whatever the server sends: these fuzz
// targets serve arbitrary bodies (and statuses, and Retry-After headers)
// through a real *Client over an in-memory transport. Whatever comes back,
// the client never panics, never leaks the key, classifies every non-2xx
// as an *APIError, and what it decodes from a 2xx survives being encoded
// and served again. Seed corpora: testdata/fuzz/<FuzzName>.

const fuzzKey = "sk-fuzz-SECRET-4242"

// cannedTransport answers every request with one status, header and body.
type cannedTransport struct {
	status     int
	retryAfter string
	body       []byte
}

func (c *cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{}
	if c.retryAfter != "" {
		h.Set("Retry-After", c.retryAfter)
	}
	return &http.Response{
		StatusCode: c.status, Header: h, Request: req,
		Body: io.NopCloser(bytes.NewReader(c.body)), ContentLength: int64(len(c.body)),
	}, nil
}

// fuzzClient returns a client pinned to an organization and project (no
// discovery request) whose every request gets the canned answer.
func fuzzClient(t *testing.T, ct *cannedTransport) *Client {
	t.Helper()
	c, err := New(Config{
		BaseURL: "http://stratix.invalid/api/v1", APIKey: fuzzKey,
		OrganizationID: "org-1", ProjectID: "proj-1",
		HTTPClient: &http.Client{Transport: ct},
		Now:        func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkErr checks what every failed call must satisfy.
func checkErr(t *testing.T, op string, status int, body []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), fuzzKey) {
		t.Fatalf("%s: status %d body %q: the error shows the API key: %v", op, status, body, err)
	}
	var ae *APIError
	if status < 200 || status > 299 {
		if !errors.As(err, &ae) || ae.StatusCode != status || ae.Op != op {
			t.Fatalf("%s: status %d: got %v (%T), want an *APIError with that status and op", op, status, err, err)
		}
		if strings.Contains(ae.Message, fuzzKey) || strings.Contains(ae.Code, fuzzKey) {
			t.Fatalf("%s: status %d: the APIError carries the key: %+v", op, status, ae)
		}
		if ae.RetryAfter < 0 {
			t.Fatalf("%s: negative Retry-After %v", op, ae.RetryAfter)
		}
		if c := Classify(err); c == 0 || c == ClassCanceled {
			t.Fatalf("%s: status %d classified %v", op, status, c)
		}
		return
	}
	if Classify(err) != ClassPermanent || !errors.Is(err, ErrBadResponse) {
		t.Fatalf("%s: a 2xx with body %q failed with %v (class %v): want ErrBadResponse, permanent", op, body, err, Classify(err))
	}
}

func fuzzStatus(s uint16) int {
	return 200 + int(s)%400 // 200..599
}

func FuzzCreateResponse(f *testing.F) {
	for _, s := range []string{
		`{"trace_ids":["a","b"]}`, `{"status":"success","data":["a"]}`, `{"status":"success","data":{"trace_ids":[]}}`,
		`{"trace_ids":null}`, `[]`, `null`, `{"status":"error"}`, `{"data":["x"]}`, `{"trace_ids":[1]}`, ``,
	} {
		f.Add(uint16(0), "", []byte(s))
	}
	f.Add(uint16(229), "3", []byte(`{"error":"slow down"}`))
	f.Add(uint16(201), "", []byte(`{"detail":[{"msg":"bad"},{"msg":"`+fuzzKey+`"}]}`))
	f.Fuzz(func(t *testing.T, st uint16, retryAfter string, body []byte) {
		status := fuzzStatus(st)
		ct := &cannedTransport{status: status, retryAfter: retryAfter, body: body}
		c := fuzzClient(t, ct)
		ids, err := c.Create(context.Background(), "dir/t.json")
		checkErr(t, "create", status, body, err)
		if err != nil {
			return
		}
		// Round trip: the ids, served in both forms the API may use, decode
		// to the same ids.
		for _, form := range []any{
			map[string]any{"trace_ids": ids},
			map[string]any{"status": "success", "data": ids},
			map[string]any{"status": "success", "data": map[string]any{"trace_ids": ids}},
		} {
			ct.body, _ = json.Marshal(form)
			again, err := c.Create(context.Background(), "t.json")
			if err != nil || !reflect.DeepEqual(nilIfEmpty(again), nilIfEmpty(ids)) {
				t.Fatalf("body %q decoded to %q; served again as %s: %q, %v", body, ids, ct.body, again, err)
			}
		}
	})
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func FuzzListResponse(f *testing.F) {
	for _, s := range []string{
		`{"traces":[{"id":"t1","created_at":"2026-01-02T03:04:05Z","filename":"a.json","data":{"k":1}}],"count":1,"total_count":7}`,
		`{"status":"success","data":{"traces":[],"count":0}}`,
		`{"traces":[{"id":"t","created_at":"2026-01-02 03:04:05.123","filename":null,"last_evaluations":[{"judge_id":"j","created_at":null,"passed":true}]}]}`,
		`{"traces":[{"created_at":"yesterday"}]}`, `{"traces":{}}`, `{"count":"3"}`, `{}`, `[1]`,
	} {
		f.Add(uint16(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, st uint16, body []byte) {
		status := fuzzStatus(st)
		ct := &cannedTransport{status: status, body: body}
		c := fuzzClient(t, ct)
		res, err := c.List(context.Background(), ListOptions{})
		checkErr(t, "list", status, body, err)
		if err != nil {
			return
		}
		// Round trip: what was decoded, encoded as the API would send it
		// and decoded again, is the same.
		ct.body = encodeList(t, res)
		again, err := c.List(context.Background(), ListOptions{})
		if err != nil {
			t.Fatalf("body %q decoded, but its re-encoding %s does not: %v", body, ct.body, err)
		}
		if !sameList(res, again) {
			t.Fatalf("body %q: decoded %+v, re-encoded %s, decoded again %+v", body, res, ct.body, again)
		}
	})
}

// encodeList writes res the way the API sends it.
func encodeList(t *testing.T, res ListResult) []byte {
	t.Helper()
	type wireEval struct {
		JudgeID      string `json:"judge_id"`
		JudgeName    string `json:"judge_name"`
		JudgeVersion any    `json:"judge_version"`
		CreatedAt    string `json:"created_at"`
		Passed       bool   `json:"passed"`
	}
	ts := func(tm time.Time) string {
		if tm.IsZero() {
			return ""
		}
		return tm.Format(time.RFC3339Nano)
	}
	var traces []map[string]any
	for _, tr := range res.Traces {
		var evs []wireEval
		for _, e := range tr.LastEvaluations {
			evs = append(evs, wireEval{e.JudgeID, e.JudgeName, e.JudgeVersion, ts(e.CreatedAt), e.Passed})
		}
		traces = append(traces, map[string]any{
			"id": tr.ID, "organization_id": tr.OrganizationID, "project_id": tr.ProjectID,
			"created_at": ts(tr.CreatedAt), "filename": tr.Filename, "data": tr.Data,
			"input": tr.Input, "integration_id": tr.IntegrationID,
			"evaluations_count": tr.EvaluationsCount, "last_evaluations": evs,
		})
	}
	b, err := json.Marshal(map[string]any{"traces": traces, "count": res.Count, "total_count": res.TotalCount})
	if err != nil {
		t.Fatalf("encode %+v: %v", res, err)
	}
	return b
}

func sameList(a, b ListResult) bool {
	if a.Count != b.Count || a.TotalCount != b.TotalCount || len(a.Traces) != len(b.Traces) {
		return false
	}
	for i := range a.Traces {
		x, y := a.Traces[i], b.Traces[i]
		if x.ID != y.ID || !x.CreatedAt.Equal(y.CreatedAt) || !reflect.DeepEqual(x.Filename, y.Filename) ||
			x.EvaluationsCount != y.EvaluationsCount || len(x.LastEvaluations) != len(y.LastEvaluations) {
			return false
		}
		// Data went through JSON once already: a second pass is stable.
		dx, _ := json.Marshal(x.Data)
		dy, _ := json.Marshal(y.Data)
		if !bytes.Equal(dx, dy) {
			return false
		}
	}
	return true
}

func FuzzDiscoverResponse(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"id":"org-1","name":"n","owner_id":"u","projects":[{"id":"p1","name":"a"},{"id":"p2","name":"b"}]}}`,
		`{"status":"success","data":{"id":"org-1","projects":[]}}`, `{"id":"org-1","projects":[{"id":"p"}]}`,
		`{"status":"success","data":{"id":"","projects":[{"id":"p"}]}}`, `{"status":"success","data":null}`,
	} {
		f.Add(uint16(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, st uint16, body []byte) {
		status := fuzzStatus(st)
		ct := &cannedTransport{status: status, body: body}
		c, err := New(Config{BaseURL: "http://stratix.invalid/api/v1", APIKey: fuzzKey, HTTPClient: &http.Client{Transport: ct}})
		if err != nil {
			t.Fatal(err)
		}
		target, err := c.Discover(context.Background())
		if err != nil {
			if strings.Contains(err.Error(), fuzzKey) {
				t.Fatalf("body %q: the error shows the API key: %v", body, err)
			}
			if status >= 200 && status <= 299 && Classify(err) != ClassPermanent {
				t.Fatalf("body %q: discovery failed with %v, classified %v: want permanent", body, err, Classify(err))
			}
			return
		}
		if status < 200 || status > 299 {
			t.Fatalf("status %d: discovery succeeded", status)
		}
		if target.OrganizationID == "" || target.ProjectID == "" {
			t.Fatalf("body %q: discovered %+v, want both ids", body, target)
		}
		// Served again in the form it was read from, the same target.
		ct.body, _ = json.Marshal(map[string]any{"status": "success", "data": map[string]any{"id": target.OrganizationID, "projects": []map[string]string{{"id": target.ProjectID}}}})
		c2, _ := New(Config{BaseURL: "http://stratix.invalid/api/v1", APIKey: fuzzKey, HTTPClient: &http.Client{Transport: ct}})
		again, err := c2.Discover(context.Background())
		if err != nil || again != target {
			t.Fatalf("body %q discovered %+v; served again as %s: %+v, %v", body, target, ct.body, again, err)
		}
	})
}

func FuzzPresignResponse(f *testing.F) {
	for _, s := range []string{
		`{"organization_id":"o","project_id":"p","url":"http://s3/x?X-Amz-Signature=abc"}`,
		`{"status":"success","data":{"url":"u"}}`, `{"url":""}`, `{"url":7}`, `{"status":1,"data":null}`,
	} {
		f.Add(uint16(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, st uint16, body []byte) {
		status := fuzzStatus(st)
		ct := &cannedTransport{status: status, body: body}
		c := fuzzClient(t, ct)
		p, err := c.Presign(context.Background(), "t.jsonl", "application/jsonl", 10)
		checkErr(t, "presign", status, body, err)
		if err != nil {
			return
		}
		if p.URL == "" {
			t.Fatalf("body %q: presign succeeded without a url", body)
		}
		ct.body, _ = json.Marshal(map[string]any{"status": "success", "data": p})
		again, err := c.Presign(context.Background(), "t.jsonl", "application/jsonl", 10)
		if err != nil || again != p {
			t.Fatalf("body %q decoded to %+v; served again as %s: %+v, %v", body, p, ct.body, again, err)
		}
	})
}

// FuzzErrorBody serves error answers (S3 XML on the presigned PUT, JSON
// elsewhere) and checks the code and message read from them.
func FuzzErrorBody(f *testing.F) {
	for _, s := range []string{
		`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`,
		`<Error><Code>SignatureDoesNotMatch</Code></Error>`, `<Error><Message>` + fuzzKey + `</Message></Error>`, `<Error>`, `<html>oops</html>`,
		`{"error":"bad key ` + fuzzKey + `"}`, `{"status":"error","data":{"message":"m"}}`, `{"detail":[{"msg":"a"},{"msg":"b"}]}`,
		`{"error":{"message":"nested"}}`, "plain text", ``,
	} {
		f.Add(uint16(203), "", []byte(s), true)
		f.Add(uint16(229), "Wed, 21 Oct 2026 07:28:00 GMT", []byte(s), false)
	}
	f.Fuzz(func(t *testing.T, st uint16, retryAfter string, body []byte, put bool) {
		status := 400 + int(st)%200 // 400..599: always an error
		ct := &cannedTransport{status: status, retryAfter: retryAfter, body: body}
		c := fuzzClient(t, ct)
		var err error
		op := "delete"
		if put {
			op = "put"
			_, err = c.Put(context.Background(), "http://s3.invalid/b/t.json?X-Amz-Signature=s", "application/json", strings.NewReader("{}"), 2)
		} else {
			err = c.Delete(context.Background(), "t1")
		}
		if err == nil {
			t.Fatalf("%s: status %d: no error", op, status)
		}
		checkErr(t, op, status, body, err)
		var ae *APIError
		errors.As(err, &ae)
		if n := utf8.RuneCountInString(ae.Message); n > maxErrorBody {
			t.Fatalf("message of %d runes from a body of %d bytes", n, len(body))
		}
		// Round trip: a code and message read from a body, written as S3
		// XML again, read back the same.
		if ae.Code == "" && ae.Message == "" || !xmlSafe(ae.Code) || !xmlSafe(ae.Message) ||
			strings.Contains(ae.Code+ae.Message, "[REDACTED]") || strings.TrimSpace(ae.Code) != ae.Code || strings.TrimSpace(ae.Message) != ae.Message {
			return
		}
		var buf bytes.Buffer
		buf.WriteString("<Error><Code>")
		_ = xml.EscapeText(&buf, []byte(ae.Code))
		buf.WriteString("</Code><Message>")
		_ = xml.EscapeText(&buf, []byte(ae.Message))
		buf.WriteString("</Message></Error>")
		code, msg := parseErrorBody(buf.Bytes())
		if ae.Code != "" && (code != ae.Code || msg != ae.Message) {
			t.Fatalf("body %q read as code %q message %q; written as %s it reads %q %q", body, ae.Code, ae.Message, buf.Bytes(), code, msg)
		}
	})
}

// xmlSafe reports whether s survives XML text escaping unchanged: valid
// UTF-8 of characters XML allows, without carriage returns (normalized).
func xmlSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n':
		case r < 0x20 || r == '\r' || r == 0xFFFD || r == 0xFFFE || r == 0xFFFF:
			return false
		case r >= 0xD800 && r <= 0xDFFF:
			return false
		}
	}
	return true
}
