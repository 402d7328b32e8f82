package tracefile

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkValidate measures the validator alone on an in-memory 8 MiB
// JSONL buffer.
func BenchmarkValidate(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 8<<20-200; i++ {
		fmt.Fprintf(&sb, `{"trace_id":"t-2-%d","spans":[{"name":"llm.call","duration_ms":%d,"ok":true,"text":"lorem ipsum dolor sit amet \u00e9 \"quoted\""}],"score":0.%d}`+"\n", i, i*7%1000, i%10)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		v := NewValidator(FormatJSONL)
		v.Write(data)
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
