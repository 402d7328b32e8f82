package tracefile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validateChunks feeds data in chunks of size n (all at once when n <= 0).
func validateChunks(data []byte, f Format, n int) error {
	v := NewValidator(f)
	if n <= 0 {
		n = len(data) + 1
	}
	for len(data) > 0 {
		k := min(n, len(data))
		if _, err := v.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return v.Close()
}

func TestValidateJSON(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "ok", "incomplete", "syntax", "novalues"
		line     int64
		offset   int64
	}{
		{"object", `{"a": [1, 2.5, -3e10, true, false, null, "x\u00e9\n"]}`, "ok", 0, 0},
		{"array", ` [ {} , [] , "" ] `, "ok", 0, 0},
		{"number only", `42`, "ok", 0, 0},
		{"number trailing ws", "-0.5E+3\n", "ok", 0, 0},
		{"string only", `"hi"`, "ok", 0, 0},
		{"nested", `{"a":{"b":{"c":[[[]]]}}}`, "ok", 0, 0},
		{"whitespace only", " \n\t ", "novalues", 0, 0},
		{"truncated object", `{"a": [1, 2`, "incomplete", 0, 0},
		{"truncated string", `{"a": "abc`, "incomplete", 0, 0},
		{"truncated literal", `[tru`, "incomplete", 0, 0},
		{"truncated after colon", `{"a":`, "incomplete", 0, 0},
		{"truncated exponent", `1e`, "incomplete", 0, 0},
		{"trailing comma", `{"a": 1,}`, "syntax", 1, 8},
		{"two values", "{}\n{}", "syntax", 2, 3},
		{"bad literal", `[trux]`, "syntax", 1, 4},
		{"leading zero", `01`, "syntax", 1, 1},
		{"single quotes", `{'a': 1}`, "syntax", 1, 1},
		{"bad escape", `"\x"`, "syntax", 1, 2},
		{"control char", "\"a\tb\"", "syntax", 1, 2},
		{"missing colon", "{\n  \"a\" 1}", "syntax", 2, 8},
		{"mismatched close", `[1}`, "syntax", 1, 2},
		{"key not string", `{1:2}`, "syntax", 1, 1},
		{"bare minus", `[-]`, "syntax", 1, 2},
		{"dot without digits", `[1.]`, "syntax", 1, 3},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 3} {
			err := validateChunks([]byte(tt.in), FormatJSON, chunk)
			checkVerdict(t, tt.name, chunk, err, tt.want, tt.line, tt.offset)
		}
		if got, want := json.Valid([]byte(tt.in)), tt.want == "ok"; got != want {
			t.Errorf("%s: test case disagrees with encoding/json: json.Valid = %v", tt.name, got)
		}
	}
}

func checkVerdict(t *testing.T, name string, chunk int, err error, want string, line, offset int64) {
	t.Helper()
	var se *SyntaxError
	switch want {
	case "ok":
		if err != nil {
			t.Errorf("%s (chunk %d): got %v, want valid", name, chunk, err)
		}
	case "novalues":
		if !errors.Is(err, ErrNoValues) {
			t.Errorf("%s (chunk %d): got %v, want ErrNoValues", name, chunk, err)
		}
	case "incomplete":
		if !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s (chunk %d): got %v, want incomplete", name, chunk, err)
		}
	case "syntax":
		if !errors.As(err, &se) {
			t.Errorf("%s (chunk %d): got %v, want a syntax error", name, chunk, err)
			return
		}
		if se.Line != line || se.Offset != offset {
			t.Errorf("%s (chunk %d): syntax error at line %d offset %d, want line %d offset %d (%v)", name, chunk, se.Line, se.Offset, line, offset, se)
		}
	}
}

func TestValidateJSONL(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		line     int64
		offset   int64
	}{
		{"two lines", "{\"a\":1}\n[2]\n", "ok", 0, 0},
		{"blank lines and crlf", "\n{\"a\":1}\r\n\n  \n3\n", "ok", 0, 0},
		{"numbers per line", "1\n2\n", "ok", 0, 0},
		{"no trailing newline", "{\"a\":1}\n{\"b\":2}", "incomplete", 0, 0},
		{"number no trailing newline", "1\n2", "incomplete", 0, 0},
		{"cut mid value", "{\"a\":1}\n{\"b\":", "incomplete", 0, 0},
		{"blank only", "\n\n \n", "novalues", 0, 0},
		{"value split over lines", "{\"a\":\n1}\n", "syntax", 1, 5},
		{"two values on a line", "{} {}\n", "syntax", 1, 3},
		{"bad second line", "{}\n{oops}\n", "syntax", 2, 4},
		{"string with raw newline", "\"ab\ncd\"\n", "syntax", 1, 3},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 2} {
			err := validateChunks([]byte(tt.in), FormatJSONL, chunk)
			checkVerdict(t, tt.name, chunk, err, tt.want, tt.line, tt.offset)
		}
	}
}

// TestValidateSamples checks the project's sample traces are valid.
func TestValidateSamples(t *testing.T) {
	files, _ := filepath.Glob("/work/shared/testdata/traces/*")
	if len(files) == 0 {
		files, _ = filepath.Glob("testdata/*.json*")
	}
	for _, name := range files {
		f, ok := FormatOf(name)
		if !ok {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateChunks(data, f, 7); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if f == FormatJSONL {
			// Every line parses with encoding/json too.
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<24)
			for sc.Scan() {
				if l := strings.TrimSpace(sc.Text()); l != "" && !json.Valid([]byte(l)) {
					t.Errorf("%s: encoding/json rejects a line the validator accepted", name)
				}
			}
		}
	}
}

func TestValidateDepthBounded(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1)
	var se *SyntaxError
	if err := validateChunks([]byte(deep), FormatJSON, 0); !errors.As(err, &se) {
		t.Fatalf("nesting %d deep: got %v, want a syntax error", maxDepth+1, err)
	}
}

// FuzzValidate checks the validator against encoding/json for .json input,
// and that the verdict does not depend on how the input is split.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `[1.5e3,-0,"\u0041"]`, `tru`, "{}\n{}", `"abc`, " ", "1\n2\n", "{\"x\":\"y\"}\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole := validateChunks(data, FormatJSON, 0)
		split := validateChunks(data, FormatJSON, int(chunk%17)+1)
		if (whole == nil) != (split == nil) || errors.Is(whole, ErrIncomplete) != errors.Is(split, ErrIncomplete) {
			t.Fatalf("verdict depends on chunking: whole %v, split %v", whole, split)
		}
		if got, want := whole == nil, json.Valid(data); got != want {
			t.Fatalf("validator says %v (%v), encoding/json says valid=%v for %q", got, whole, want, data)
		}
		wl := validateChunks(data, FormatJSONL, 0)
		sl := validateChunks(data, FormatJSONL, int(chunk%5)+1)
		if (wl == nil) != (sl == nil) {
			t.Fatalf("jsonl verdict depends on chunking: whole %v, split %v", wl, sl)
		}
		if wl == nil {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(bytes.TrimSpace(line)) > 0 && !json.Valid(line) {
					t.Fatalf("jsonl accepted, but encoding/json rejects line %q", line)
				}
			}
		}
	})
}
