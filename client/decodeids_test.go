package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

var decodeIDsCases = []string{
	`[]`, ` [ ] `, `["a"]`, `["a","b"]`, " [\n\"tr_1\" ,\t\"tr_2\"\r] ", `[""]`, `["a",]`, `[,"a"]`, `["a" "b"]`, `["a"`, `["a]`,
	`[1]`, `["a",1]`, `[null]`, `null`, `{}`, `"a"`, `["a\"b"]`, `["\u00e9"]`, `["é"]`, "[\"\xff\"]", "[\"a\tb\"]",
	`["a"] x`, `["a"]]`, `[["a"]]`,
}

// decodeIDs must decode exactly as json.Unmarshal into []string does.
func checkDecodeIDs(t *testing.T, in []byte) {
	t.Helper()
	var want []string
	wantErr := json.Unmarshal(in, &want)
	got, err := decodeIDs(in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeIDs(%q): error %v, json.Unmarshal: %v", in, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeIDs(%q) = %q, json.Unmarshal gives %q", in, got, want)
	}
}

func TestDecodeIDsMatchesEncodingJSON(t *testing.T) {
	for _, in := range decodeIDsCases {
		checkDecodeIDs(t, []byte(in))
	}
}

func FuzzDecodeIDs(f *testing.F) {
	for _, in := range decodeIDsCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return // decodeIDs is only given valid JSON (the body was parsed already)
		}
		checkDecodeIDs(t, in)
	})
}
