package stratixtest

import (
	"encoding/json"
	"strings"
	"testing"
)

// validJSONCases are inputs where hand-written validators usually go wrong;
// the expected verdict is encoding/json's.
var validJSONCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, "\t[\n]\r", `{`, `}`, `[`, `[1,]`, `[,1]`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`,
	`{"a" : 1 , "b" : [ true , false , null ] }`, `{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `{}{}`, `{} x`, `[]]`,
	`0`, `-0`, `-`, `01`, `-01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `1.5e3`, `-1.5E-3`, `1ee5`, `+1`, `1.2.3`,
	`true`, `tru`, `truex`, `false`, `fals`, `null`, `nul`, `NULL`, `nan`, `Infinity`,
	`""`, `"`, `"abc`, `"a\"b"`, `"a\\"`, `"a\\\"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u12"`, `"\x"`, `"\/"`, `"\b\f\n\r\t"`,
	"\"a\tb\"", "\"a\nb\"", "\"\x00\"", "\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"", "\"\xc3\xa9\"", "\"é\"",
	`"12345678"`, `"1234567\"`, `"12345678\"9"`, `"abcdefghijklmnopqrstuvwxyz"`, `"abcdefgh\\ijklmnop"`,
	"\"abcdefg\x01hijklmnop\"", `"abcdefghijklmnop`,
	`[[[[]]]]`, `[[[[]]]`, `{"a":{"b":{"c":[1,{"d":"e"}]}}}`,
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, in := range validJSONCases {
		if got, want := validJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", in, got, want)
		}
	}
	// The nesting limit: encoding/json accepts 10,000 levels, not 10,001.
	for _, depth := range []int{maxNesting, maxNesting + 1} {
		for _, open := range []string{"[", `{"k":`} {
			closer := "]"
			if open != "[" {
				closer = "}"
			}
			in := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(closer, depth))
			if got, want := validJSON(in), json.Valid(in); got != want {
				t.Errorf("validJSON at depth %d of %q = %v, json.Valid says %v", depth, open, got, want)
			}
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, in := range validJSONCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := validJSON(in), json.Valid(in); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", in, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 8<<20; i++ {
		sb.WriteString(`{"trace_id":"bench-0123456789abcdef-1-` + strings.Repeat("7", i%5) + `","agent_name":"bench","n":-12.5e3,"ok":true,"pad":"` + strings.Repeat("x", 200) + `"}`)
	}
	line := []byte(`{"trace_id":"t","spans":[{"name":"llm.call","duration_ms":12,"ok":true,"text":"lorem ipsum dolor sit amet \u00e9 \"quoted\""}],"score":0.5}`)
	for _, c := range []struct {
		name string
		data []byte
	}{{"object-line", line}, {"8MiB", []byte("[" + strings.ReplaceAll(sb.String(), "}{", "},{") + "]")}} {
		b.Run(c.name+"/validJSON", func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				if !validJSON(c.data) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(c.name+"/json.Valid", func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				if !json.Valid(c.data) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
