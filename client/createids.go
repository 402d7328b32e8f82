package client

// createids.go owns reading create's answer: the trace ids, in either
// envelope form, without building a generic JSON tree for the common ones.

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

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
