package client

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrInvalidFilename is returned (wrapped) by Presign and Create, before any
// request, for a file name that is not valid UTF-8: the API takes names as
// JSON text and would record another name. It is permanent: rename the file.
var ErrInvalidFilename = errors.New("file name is not valid UTF-8: the API would record another name; rename the file")

// Class returns what the uploader should do after this answer, per the
// table of stratix-api.md: on the presigned PUT ("put") a 403 means an
// expired or mismatched signature (ClassRepresign); elsewhere 401 and 403
// mean a rejected key (ClassAuth). A 404 on delete means already gone
// (ClassNotFound); elsewhere it is permanent. 408, 429 and 5xx are
// transient; every other status is permanent.
func (e *APIError) Class() Class {
	switch s := e.StatusCode; {
	case s == http.StatusForbidden && e.Op == "put":
		return ClassRepresign
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return ClassAuth
	case s == http.StatusNotFound && e.Op == "delete":
		return ClassNotFound
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		if e.Op == "put" && s == http.StatusNotImplemented {
			return ClassPermanent // S3: chunked body refused; a retry sends it the same way
		}
		return ClassTransient
	case e.Op == "put" && s == http.StatusBadRequest && (e.Code == "RequestTimeout" || e.Code == "IncompleteBody"):
		return ClassTransient // S3: the body arrived too slowly or was cut: send it again
	}
	return ClassPermanent
}

// Classify tells the uploader what to do after err:
//   - nil: 0;
//   - an *APIError: its Class;
//   - context.Canceled: ClassCanceled;
//   - a deadline, a network error (refused, reset, DNS), a connection cut
//     (EOF), or any other error without an HTTP answer: ClassTransient;
//   - ErrUnsupportedType, ErrTooLarge, ErrBodySize, ErrBadResponse,
//     ErrMissingProject, ErrNoAPIKey, ErrInvalidFilename: ClassPermanent.
func Classify(err error) Class {
	if err == nil {
		return 0
	}
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return ae.Class()
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTransient
	case errors.Is(err, ErrUnsupportedType), errors.Is(err, ErrTooLarge), errors.Is(err, ErrBodySize),
		errors.Is(err, ErrBadResponse), errors.Is(err, ErrMissingProject), errors.Is(err, ErrWrongOrganization), errors.Is(err, ErrNoAPIKey),
		errors.Is(err, ErrInvalidFilename):
		return ClassPermanent
	}
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.As(err, &ne), errors.As(err, &dns),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return ClassTransient
	}
	// An error we cannot place got no usable answer from the server: trying
	// again later is safer than giving up on the file for good.
	return ClassTransient
}

// RetryAfter returns how long the server asked to wait (Retry-After of a 429
// or 503, in seconds or as an HTTP date), or zero.
func RetryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (relative to now). Invalid or past values give zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// readAPIError builds the *APIError of a non-2xx answer from its JSON or
// S3 XML body.
func (c *Client) readAPIError(op string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	code, msg := parseErrorBody(body)
	if key := c.key(); key != "" {
		msg = strings.ReplaceAll(msg, key, "[REDACTED]")
		code = strings.ReplaceAll(code, key, "[REDACTED]")
	}
	return &APIError{
		Op:         op,
		StatusCode: resp.StatusCode,
		Code:       code,
		Message:    msg,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
}

// parseErrorBody extracts a code and message from an error body:
// S3 XML <Error><Code/><Message/></Error>, or JSON {"error": ...},
// {"detail": ...}, {"message": ...} (possibly inside the envelope), or
// else the text itself, shortened.
func parseErrorBody(body []byte) (code, msg string) {
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return "", ""
	}
	if strings.HasPrefix(trimmed, "<") {
		var x struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		if err := xml.Unmarshal([]byte(trimmed), &x); err == nil && (x.Code != "" || x.Message != "") {
			return x.Code, x.Message
		}
	}
	if strings.HasPrefix(trimmed, "{") {
		var j map[string]json.RawMessage
		if err := json.Unmarshal([]byte(trimmed), &j); err == nil {
			if d, ok := j["data"]; ok {
				if _, hasStatus := j["status"]; hasStatus {
					var inner map[string]json.RawMessage
					if json.Unmarshal(d, &inner) == nil {
						for k, v := range inner {
							if _, dup := j[k]; !dup {
								j[k] = v
							}
						}
					}
				}
			}
			for _, k := range []string{"error", "detail", "message", "msg"} {
				if v, ok := j[k]; ok {
					if m := messageOf(v); m != "" {
						return "", m
					}
				}
			}
		}
	}
	return "", shorten(trimmed, 300)
}

// messageOf turns a JSON error value into text: a string as is, an object by
// its "message" (or "msg", "detail"), a list (FastAPI's 422 detail) by its
// items' messages joined.
func messageOf(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(v, &obj) == nil {
		for _, k := range []string{"message", "msg", "detail", "error"} {
			if inner, ok := obj[k]; ok {
				if m := messageOf(inner); m != "" {
					return m
				}
			}
		}
		return shorten(string(v), 300)
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		var parts []string
		for _, item := range list {
			if m := messageOf(item); m != "" {
				parts = append(parts, m)
			}
		}
		return strings.Join(parts, "; ")
	}
	return shorten(string(v), 300)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
