package tracefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The validator's verdicts are checked against encoding/json, the oracle:
// it never accepts what json.Valid rejects and never rejects what it
// accepts (.json: the whole input; .jsonl: line by line). The seed corpus is
// in testdata/fuzz/<FuzzName>; `make fuzz` runs each target for a fixed time.

// isBlank reports whether b holds only JSON whitespace.
func isBlank(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// jsonlOracle is what encoding/json says of a .jsonl file: ok when every
// line is blank or one valid JSON value, at least one is not blank, and the
// last one ends with a newline.
func jsonlOracle(data []byte) (ok bool, blank bool) {
	lines := bytes.Split(data, []byte("\n"))
	last := lines[len(lines)-1]
	values := 0
	for _, line := range lines[:len(lines)-1] {
		if isBlank(line) {
			continue
		}
		if !json.Valid(line) {
			return false, false
		}
		values++
	}
	if !isBlank(last) {
		return false, false
	}
	return values > 0, values == 0
}

// verdictKind names a Validator verdict for messages.
func verdictKind(err error) string {
	var se *SyntaxError
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, ErrNoValues):
		return "no values"
	case errors.Is(err, ErrIncomplete):
		return "incomplete"
	case errors.As(err, &se):
		return "syntax"
	}
	return "unexpected error " + err.Error()
}

func checkAgainstOracle(t *testing.T, data []byte, format Format, chunk int) {
	t.Helper()
	err := validateChunks(data, format, chunk)
	whole := validateChunks(data, format, 0)
	if verdictKind(err) != verdictKind(whole) {
		t.Fatalf("%s %q: fed in chunks of %d: %v; fed at once: %v (the verdict must not depend on how reads split the file)", format, data, chunk, err, whole)
	}
	var want, blank bool
	if format == FormatJSON {
		want, blank = json.Valid(data), isBlank(data)
	} else {
		want, blank = jsonlOracle(data)
	}
	switch kind := verdictKind(err); {
	case want && err != nil:
		t.Fatalf("%s %q: encoding/json accepts it, the validator says %v", format, data, err)
	case !want && err == nil:
		t.Fatalf("%s %q: encoding/json rejects it, the validator accepts it", format, data)
	case blank != (kind == "no values"):
		t.Fatalf("%s %q: blank=%v but the validator says %v", format, data, blank, err)
	case kind != "valid" && kind != "no values" && kind != "incomplete" && kind != "syntax":
		t.Fatalf("%s %q: %s", format, data, kind)
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		if se.Offset < 0 || se.Offset >= int64(len(data)) || se.Line < 1 || se.Column < 1 {
			t.Fatalf("%s %q: syntax error position out of range: %+v", format, data, se)
		}
	}
	if err == nil {
		// A valid file read while it is still being written (any prefix of
		// it) must never be judged invalid: it would be quarantined.
		step := max(1, len(data)/16)
		for n := 0; n < len(data); n += step {
			if v := validateChunks(data[:n], format, 0); verdictKind(v) == "syntax" {
				t.Fatalf("%s %q is valid, but its first %d bytes are judged invalid: %v", format, data, n, v)
			}
		}
	}
	var ie *IncompleteError
	if errors.As(err, &ie) && ie.Offset != int64(len(data)) {
		t.Fatalf("%s %q: incomplete at offset %d, want the end of input %d", format, data, ie.Offset, len(data))
	}
}

func FuzzValidateJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2.5e-3,true,false,null,"\u00e9"]}`, `"x"`, `-0`, `1e`, `{"a":`, " \n ", `01`, `[1,]`, "\"a\tb\"", `{"a" 1}`, "{}\n{}", "\xff", `"\ud800"`} {
		f.Add([]byte(s), uint8(1))
	}
	for _, p := range sampleTraces(f, ".json") {
		f.Add(p, uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		checkAgainstOracle(t, data, FormatJSON, int(chunk))
	})
}

func FuzzValidateJSONL(f *testing.F) {
	for _, s := range []string{"{}\n", "{}\n[1]\n", "{}", "\n\n", "{}\r\n \n", "{\"a\":\n1}\n", "1\n2\n", "{}\n  ", "\"x\ny\"\n", "{} {}\n"} {
		f.Add([]byte(s), uint8(1))
	}
	for _, p := range sampleTraces(f, ".jsonl") {
		f.Add(p, uint8(5))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		checkAgainstOracle(t, data, FormatJSONL, int(chunk))
	})
}

// sampleTraces returns the shared sample traces with extension ext, when
// the checkout has them beside it.
func sampleTraces(f *testing.F, ext string) [][]byte {
	f.Helper()
	paths, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "traces", "*"+ext))
	var out [][]byte
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) < 4<<10 {
			out = append(out, b)
		}
	}
	return out
}
