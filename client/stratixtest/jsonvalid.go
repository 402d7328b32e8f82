// The fake's own JSON parser, which checks what is created without the uploader's validator.

package stratixtest

import "encoding/binary"

// maxNesting is encoding/json's nesting limit: deeper input is invalid.
const maxNesting = 10000

// validJSON reports whether b is one valid JSON value (with optional
// surrounding whitespace): exactly what encoding/json's Valid accepts,
// including its nesting limit and its leniency about invalid UTF-8 inside
// strings. It is the fake's own parser, written apart from the uploader's
// streaming validator so that each checks the other (a fuzz test compares
// it with json.Valid), and it is several times faster than json.Valid on
// the large uploads a benchmark sends.
func validJSON(b []byte) bool {
	p := jsonParser{b: b}
	p.space()
	if !p.value() {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

type jsonParser struct {
	b     []byte
	i     int
	depth int
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value() bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	}
	return false
}

func (p *jsonParser) literal(lit string) bool {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}

func (p *jsonParser) object() bool {
	if p.depth++; p.depth > maxNesting {
		return false
	}
	p.i++ // '{'
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return true
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' || !p.str() {
			return false
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.space()
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.space()
		case '}':
			p.i++
			p.depth--
			return true
		default:
			return false
		}
	}
}

func (p *jsonParser) array() bool {
	if p.depth++; p.depth > maxNesting {
		return false
	}
	p.i++ // '['
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return true
	}
	for {
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.space()
		case ']':
			p.i++
			p.depth--
			return true
		default:
			return false
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainWord reports whether none of the 8 bytes of w ends or escapes a
// string or is a control character: no '"', no '\\', nothing below 0x20.
func plainWord(w uint64) bool {
	quote := w ^ ('"' * lsb)
	bslash := w ^ ('\\' * lsb)
	// A byte x is zero (or below 0x20) when (x - k) borrows into its top
	// bit while x's own top bit is clear.
	special := ((quote - lsb) &^ quote) | ((bslash - lsb) &^ bslash) | ((w - 0x20*lsb) &^ w)
	return special&msb == 0
}

// str reads a string starting at its opening quote.
func (p *jsonParser) str() bool {
	b := p.b
	i := p.i + 1
	for {
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			p.i = i + 1
			return true
		case c == '\\':
			i++
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 {
					return false
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
}

func (p *jsonParser) digits() int {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

func (p *jsonParser) number() bool {
	b := p.b
	if b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(b) {
		return false
	}
	switch c := b[p.i]; {
	case c == '0':
		p.i++
	case '1' <= c && c <= '9':
		p.digits()
	default:
		return false
	}
	if p.i < len(b) && b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return false
		}
	}
	if p.i < len(b) && (b[p.i] == 'e' || b[p.i] == 'E') {
		p.i++
		if p.i < len(b) && (b[p.i] == '+' || b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return false
		}
	}
	return true
}
