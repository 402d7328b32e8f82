package client

// createids.go owns reading create's answer: the trace ids, in either
// envelope form, without building a generic JSON tree for the common ones.

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// createAnswer is what do decodes a create answer into: the ids, when the
// body is {"trace_ids": [...]} alone with plain ids, else the payload (the
// body, or the envelope's data) for parseCreateIDs.
type createAnswer struct {
	ids     []string
	payload json.RawMessage
}

func parseCreateIDs(raw json.RawMessage) ([]string, error) {
	if ids, ok := plainCreateAnswer(string(raw)); ok {
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
// escapes: the ids are slices of raw, so the 200,000 ids a 50 MiB upload
// makes cost no copy and one allocation, their slice. false means "not
// sure": parseCreateIDs then uses encoding/json, which decides.
func plainCreateAnswer(raw string) ([]string, bool) {
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
func plainTraceIDsObject(raw string) ([]string, bool) {
	ids, end, ok := plainTraceIDsObjectAt(raw, skipJSONSpace(raw, 0))
	if !ok || skipJSONSpace(raw, end) != len(raw) {
		return nil, false
	}
	return ids, true
}

// plainTraceIDsObjectAt decodes the object {"trace_ids": [...]} at raw[i:]
// and returns the index after its '}'.
func plainTraceIDsObjectAt(raw string, i int) (ids []string, end int, ok bool) {
	if i >= len(raw) || raw[i] != '{' {
		return nil, 0, false
	}
	i = skipJSONSpace(raw, i+1)
	const key = `"trace_ids"`
	if !strings.HasPrefix(raw[i:], key) {
		return nil, 0, false
	}
	i = skipJSONSpace(raw, i+len(key))
	if i == len(raw) || raw[i] != ':' {
		return nil, 0, false
	}
	ids, end, ok = plainStringList(raw, skipJSONSpace(raw, i+1))
	if !ok {
		return nil, 0, false
	}
	end = skipJSONSpace(raw, end)
	if end == len(raw) || raw[end] != '}' {
		return nil, 0, false
	}
	return ids, end + 1, true
}

// plainEnvelopeIDs decodes raw when it is the envelope {"status": "…",
// "data": …} (those two keys alone, in either order, the status a plain
// string) around a plain create answer: {"trace_ids": [...]} or the list.
// It is what unwrap and then plainCreateAnswer find, without parsing the
// ids' list with encoding/json first.
func plainEnvelopeIDs(raw string) ([]string, bool) {
	i := skipJSONSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		return nil, false
	}
	var ids []string
	var sawStatus, sawData bool
	for n := range 2 {
		i = skipJSONSpace(raw, i+1)
		var key string
		switch {
		case strings.HasPrefix(raw[i:], `"status"`) && !sawStatus:
			key, sawStatus = `"status"`, true
		case strings.HasPrefix(raw[i:], `"data"`) && !sawData:
			key, sawData = `"data"`, true
		default:
			return nil, false
		}
		i = skipJSONSpace(raw, i+len(key))
		if i == len(raw) || raw[i] != ':' {
			return nil, false
		}
		i = skipJSONSpace(raw, i+1)
		var ok bool
		switch {
		case key == `"status"`:
			i, ok = plainStringAt(raw, i)
		case i < len(raw) && raw[i] == '[':
			ids, i, ok = plainStringList(raw, i)
		default:
			ids, i, ok = plainTraceIDsObjectAt(raw, i)
		}
		if !ok {
			return nil, false
		}
		i = skipJSONSpace(raw, i)
		if i == len(raw) || (n == 0 && raw[i] != ',') || (n == 1 && raw[i] != '}') {
			return nil, false
		}
	}
	if skipJSONSpace(raw, i+1) != len(raw) {
		return nil, false
	}
	return ids, true
}

// plainStringAt checks that raw[i:] starts with a string of printable
// ASCII without a backslash and returns the index after it.
func plainStringAt(raw string, i int) (int, bool) {
	if i >= len(raw) || raw[i] != '"' {
		return 0, false
	}
	j := strings.IndexByte(raw[i+1:], '"')
	if j < 0 {
		return 0, false
	}
	j += i + 1
	for k := i + 1; k < j; k++ {
		if c := raw[k]; c < 0x20 || c > 0x7e || c == '\\' {
			return 0, false
		}
	}
	return j + 1, true
}

func skipJSONSpace(b string, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainStringList decodes the JSON array of strings at b[i:] when every
// string is printable ASCII without a backslash, and returns the index
// after its ']'; false otherwise. The strings are slices of b.
func plainStringList(b string, i int) (ids []string, end int, ok bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, 0, false
	}
	start := i
	// First pass: check the shape and count the ids.
	count := 0
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return []string{}, i + 1, true
	}
	for {
		after, ok := plainStringAt(b, i)
		if !ok {
			return nil, 0, false
		}
		count++
		i = skipJSONSpace(b, after)
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
	// The shape is known good: slice the ids out of b.
	ids = make([]string, 0, count)
	for i := start; i < end; i++ {
		if b[i] != '"' {
			continue
		}
		j := i + 1 + strings.IndexByte(b[i+1:], '"')
		ids = append(ids, b[i+1:j])
		i = j
	}
	return ids, end, true
}
