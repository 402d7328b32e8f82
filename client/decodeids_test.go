package client

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var createAnswerCases = []string{
	`[]`, ` [ ] `, `["a"]`, `["a","b"]`, " [\n\"tr_1\" ,\t\"tr_2\"\r] ", `[""]`, `["a",]`, `[,"a"]`, `["a" "b"]`, `["a"`, `["a]`,
	`[1]`, `["a",1]`, `[null]`, `null`, `{}`, `"a"`, `["a\"b"]`, `["\u00e9"]`, `["é"]`, "[\"\xff\"]", "[\"a\tb\"]",
	`["a"] x`, `["a"]]`, `[["a"]]`,
	`{"trace_ids":["a","b"]}`, ` { "trace_ids" : [ "a" , "b" ] } `, `{"trace_ids":[]}`, `{"trace_ids":null}`, `{"trace_ids":[1]}`,
	`{"TRACE_IDS":["a"]}`, `{"trace_ids":["a"],"trace_ids":["b"]}`, `{"trace_ids":["a"],"x":1}`, `{"x":1,"trace_ids":["a"]}`,
	`{"trace_ids":["a\u0041"]}`, `{"trace_ids":["a"]`, `{"trace_ids":"a"}`, `{"trace_ids" ["a"]}`,
}

// refParseCreateIDs is parseCreateIDs as encoding/json alone would do it.
func refParseCreateIDs(raw []byte) ([]string, error) {
	if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
		var ids []string
		err := json.Unmarshal(raw, &ids)
		return ids, err
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

func checkParseCreateIDs(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := refParseCreateIDs(in)
	got, err := parseCreateIDs(in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("parseCreateIDs(%q): error %v, encoding/json: %v", in, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("parseCreateIDs(%q) = %q, encoding/json gives %q", in, got, want)
	}
}

func TestParseCreateIDsMatchesEncodingJSON(t *testing.T) {
	for _, in := range createAnswerCases {
		checkParseCreateIDs(t, []byte(in))
	}
}

func FuzzParseCreateIDs(f *testing.F) {
	for _, in := range createAnswerCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return // parseCreateIDs is only given valid JSON (do parsed the body already)
		}
		checkParseCreateIDs(t, in)
	})
}

// refEnvelopeIDs is unwrap and then parseCreateIDs as encoding/json alone
// would do them.
func refEnvelopeIDs(raw []byte) ([]string, error) {
	var env struct {
		Status json.RawMessage `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, err
	}
	if env.Status != nil && env.Data != nil {
		raw = env.Data
	}
	return refParseCreateIDs(raw)
}

var envelopeCases = []string{
	`{"status":"success","data":{"trace_ids":["a","b"]}}`, `{"data":["a","b"],"status":"success"}`,
	` { "status" : "ok" , "data" : [ "a" ] } `, `{"status":"success","data":[]}`, `{"status":"","data":["a"]}`,
	`{"status":"success","data":{"trace_ids":["a"]},"x":1}`, `{"status":"success","status":"x","data":["a"]}`,
	`{"data":["a"],"data":["b"],"status":"s"}`, `{"status":1,"data":["a"]}`, `{"status":"s\"","data":["a"]}`,
	`{"status":"success","data":{"trace_ids":["a"],"x":1}}`, `{"status":"success","data":"a"}`, `{"status":"success"}`,
	`{"data":["a"]}`, `{"status":"success","data":["a\u0041"]}`, `{"status":"success","data":["a"]`, `{"status":"success" "data":["a"]}`,
	`{"status":"success","data":["a"]} x`, `{"status":"success","data":null}`,
}

func checkEnvelopeIDs(t *testing.T, in string) {
	t.Helper()
	got, ok := plainEnvelopeIDs(in)
	if !ok {
		return // not sure: the caller falls back to encoding/json
	}
	want, err := refEnvelopeIDs([]byte(in))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("plainEnvelopeIDs(%q) = %q; encoding/json gives %q, %v", in, got, want, err)
	}
}

func TestPlainEnvelopeIDsMatchesEncodingJSON(t *testing.T) {
	for _, in := range append(envelopeCases, createAnswerCases...) {
		checkEnvelopeIDs(t, in)
	}
	for _, in := range createAnswerCases {
		for _, wrapped := range []string{`{"status":"success","data":` + in + `}`, `{"data":` + in + `,"status":"success"}`} {
			checkEnvelopeIDs(t, wrapped)
		}
	}
	if ids, ok := plainEnvelopeIDs(`{"status":"success","data":{"trace_ids":["a","b"]}}`); !ok || len(ids) != 2 {
		t.Fatalf("the usual envelope: %q, %v; want the fast path to take it", ids, ok)
	}
}

func FuzzPlainEnvelopeIDs(f *testing.F) {
	for _, in := range envelopeCases {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) { checkEnvelopeIDs(t, in) })
}
