package tracefile

import (
	"strings"
	"testing"
)

// TestValidateLongStrings checks the validator's 8-bytes-at-a-time string
// scan against encoding/json: a quote, backslash or control byte at every
// position of a long string, in every chunking.
func TestValidateLongStrings(t *testing.T) {
	for _, special := range []string{`"`, `\\`, `\"`, `\u00e9`, `\x`, "\t", "\n", "\x00", "\x1f", "\x7f", "\xc3\xa9", "\xff", " "} {
		for pos := 0; pos <= 20; pos++ {
			s := strings.Repeat("a", pos) + special + strings.Repeat("b", 20-pos)
			for _, doc := range []string{`{"k":"` + s + `"}`, `["` + s + `", "` + s + `"]`, `"` + s + `"`} {
				for _, chunk := range []int{0, 1, 3, 7, 8, 9} {
					checkAgainstOracle(t, []byte(doc), FormatJSON, chunk)
					checkAgainstOracle(t, []byte(doc+"\n"), FormatJSONL, chunk)
				}
			}
		}
	}
}
