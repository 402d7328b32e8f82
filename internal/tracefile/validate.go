// Package tracefile says what a trace file must be to be uploaded: a .json
// file holding one whole JSON value, or a .jsonl file of whole JSON values,
// one a line, each plain or compressed (gzip or zstd, read through
// NewReader). Its Validator checks a file in one streaming pass, and its
// errors tell a file still being written (ErrIncomplete) from one that can
// never be uploaded as it is (*SyntaxError). It knows nothing of uploads,
// the store or the API.
package tracefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Format is how a trace file's bytes are laid out, decided by its extension.
type Format uint8

const (
	// FormatJSON is a file that is one JSON value as a whole (.json).
	FormatJSON Format = iota + 1
	// FormatJSONL is a file whose every non-empty line is one JSON value,
	// ending with a newline (.jsonl).
	FormatJSONL
)

// String returns the format's name: "json" or "jsonl".
func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatJSONL:
		return "jsonl"
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// FormatOf returns the format of a file by its extension (case-insensitive),
// of the name it stands for when compressed (x.jsonl.gz is jsonl); false
// for anything that is neither .json nor .jsonl.
func FormatOf(name string) (Format, bool) {
	_, name = CompressionOf(name)
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return FormatJSON, true
	case ".jsonl":
		return FormatJSONL, true
	}
	return 0, false
}

// ErrIncomplete is returned (wrapped in an *IncompleteError) when the input
// ends in the middle of a JSON value, or a .jsonl file's last line has no
// trailing newline: the file is probably still being written.
var ErrIncomplete = errors.New("incomplete JSON")

// ErrNoValues is returned when a file holds only whitespace: there is
// nothing to upload.
var ErrNoValues = errors.New("no JSON value in the file")

// IncompleteError says where the input ended too early. errors.Is(err,
// ErrIncomplete) is true for it.
type IncompleteError struct {
	Line   int64 // 1-based line of the end of input
	Offset int64 // byte offset of the end of input (the file size)
	Reason string
}

// Error says where the input ended and why that is too early.
func (e *IncompleteError) Error() string {
	return fmt.Sprintf("incomplete JSON at line %d (byte offset %d): %s", e.Line, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrIncomplete) true.
func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }

// SyntaxError is a real syntax error: the file can never be uploaded as it is.
type SyntaxError struct {
	Line   int64 // 1-based
	Column int64 // 1-based, in bytes
	Offset int64 // 0-based byte offset of the offending byte
	Msg    string
}

// Error says where the input is invalid and why.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at line %d, column %d (byte offset %d): %s", e.Line, e.Column, e.Offset, e.Msg)
}

// maxDepth bounds nesting so that memory stays bounded whatever the input.
const maxDepth = 10000

type vstate uint8

const (
	stValue      vstate = iota // a value must start here
	stArrFirst                 // after '[': a value or ']'
	stObjFirst                 // after '{': a key or '}'
	stObjKey                   // after ',' in an object: a key
	stColon                    // after a key: ':'
	stAfterValue               // a value ended inside a container: ',' or the closing bracket
	stString                   // inside a string
	stStringEsc                // after a backslash
	stStringU                  // inside \uXXXX, uleft hex digits to go
	stNeg                      // after '-'
	stZero                     // after a leading 0
	stInt                      // in the integer digits
	stDot                      // after '.': a digit must follow
	stFrac                     // in the fraction digits
	stExp                      // after 'e': sign or digit
	stExpSign                  // after the exponent sign: a digit
	stExpDigits                // in the exponent digits
	stLiteral                  // inside true, false or null
	stDone                     // JSON: the top-level value is complete; only whitespace may follow
	stLineStart                // JSONL: at the start of a line
	stLineEnd                  // JSONL: a line's value is complete; only whitespace, then '\n'
)

// Validator checks that bytes written to it form a valid .json or .jsonl
// file, in one streaming pass with memory bounded by the nesting depth
// (never by the file size). Write the bytes, then call Close for the
// verdict. It does not check UTF-8.
//
// The zero Validator is not usable: use NewValidator.
type Validator struct {
	format    Format
	state     vstate
	inKey     bool   // the string being scanned is an object key
	uleft     uint8  // hex digits left in \uXXXX
	lit       string // the rest of the literal being matched
	stack     []byte // open containers: '{' or '['
	off       int64  // bytes consumed
	line      int64  // current line, 1-based
	lineStart int64  // offset of the current line's first byte
	values    int64  // complete top-level values (JSONL: lines)
	err       error
}

// NewValidator returns a Validator for format f.
func NewValidator(f Format) *Validator {
	v := &Validator{format: f, line: 1}
	if f == FormatJSONL {
		v.state = stLineStart
	}
	return v
}

// Values returns how many complete top-level values (for JSONL, records)
// have been seen so far.
func (v *Validator) Values() int64 { return v.values }

// Validate reads r to the end and returns nil, an *IncompleteError, a
// *SyntaxError, ErrNoValues, or the read error.
func Validate(r io.Reader, f Format) error {
	v := NewValidator(f)
	if _, err := io.Copy(v, r); err != nil {
		return err
	}
	return v.Close()
}

func (v *Validator) syntax(i int, msg string) error {
	off := v.off + int64(i)
	v.err = &SyntaxError{Line: v.line, Column: off - v.lineStart + 1, Offset: off, Msg: msg}
	return v.err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// endValue is called when a value completes.
func (v *Validator) endValue() {
	if len(v.stack) > 0 {
		v.state = stAfterValue
		return
	}
	v.values++
	if v.format == FormatJSONL {
		v.state = stLineEnd
	} else {
		v.state = stDone
	}
}

// Write feeds p to the validator. It returns len(p), or the first syntax
// error (which sticks: later calls return it too).
func (v *Validator) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n := len(p)
	i := 0
	for i < n {
		c := p[i]
		switch v.state {
		case stString:
			// Fast path: plain string bytes, 8 at a time, then one by one.
			for i+8 <= n && plainWord(binary.LittleEndian.Uint64(p[i:])) {
				i += 8
			}
			for i < n {
				c = p[i]
				if c == '"' || c == '\\' || c < 0x20 {
					break
				}
				i++
			}
			if i == n {
				continue
			}
			switch {
			case c == '"':
				if v.inKey {
					v.inKey = false
					v.state = stColon
				} else {
					v.endValue()
				}
			case c == '\\':
				v.state = stStringEsc
			default:
				if c == '\n' && v.format == FormatJSONL {
					return 0, v.syntax(i, "line ends inside a string (each .jsonl line must hold one whole JSON value)")
				}
				return 0, v.syntax(i, "invalid control character "+quoteByte(c)+" in string")
			}
			i++
			continue
		case stStringEsc:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.state = stString
			case 'u':
				v.state = stStringU
				v.uleft = 4
			default:
				return 0, v.syntax(i, "invalid escape "+quoteByte(c)+" in string")
			}
			i++
			continue
		case stStringU:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" in \\u escape")
			}
			v.uleft--
			if v.uleft == 0 {
				v.state = stString
			}
			i++
			continue
		case stLiteral:
			if c != v.lit[0] {
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" in literal")
			}
			v.lit = v.lit[1:]
			if v.lit == "" {
				v.endValue()
			}
			i++
			continue
		case stNeg:
			switch {
			case c == '0':
				v.state = stZero
			case '1' <= c && c <= '9':
				v.state = stInt
			default:
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after '-' (a digit must follow)")
			}
			i++
			continue
		case stZero, stInt, stFrac, stExpDigits:
			switch {
			case '0' <= c && c <= '9':
				if v.state == stZero {
					return 0, v.syntax(i, "invalid digit after a leading zero")
				}
				i++
				continue
			case c == '.' && (v.state == stZero || v.state == stInt):
				v.state = stDot
				i++
				continue
			case (c == 'e' || c == 'E') && v.state != stExpDigits:
				v.state = stExp
				i++
				continue
			}
			// The number ended; this byte belongs to what follows.
			v.endValue()
			continue
		case stDot:
			if c < '0' || c > '9' {
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after decimal point (a digit must follow)")
			}
			v.state = stFrac
			i++
			continue
		case stExp:
			switch {
			case c == '+' || c == '-':
				v.state = stExpSign
			case '0' <= c && c <= '9':
				v.state = stExpDigits
			default:
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" in exponent")
			}
			i++
			continue
		case stExpSign:
			if c < '0' || c > '9' {
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" in exponent (a digit must follow)")
			}
			v.state = stExpDigits
			i++
			continue
		}

		// Structural states: whitespace first.
		if isSpace(c) {
			if c == '\n' {
				if v.format == FormatJSONL {
					switch v.state {
					case stLineStart:
					case stLineEnd:
						v.state = stLineStart
					default:
						return 0, v.syntax(i, "line ends inside a JSON value (each .jsonl line must hold one whole JSON value)")
					}
				}
				v.line++
				v.lineStart = v.off + int64(i) + 1
			}
			i++
			continue
		}

		switch v.state {
		case stValue, stArrFirst, stLineStart:
			if c == ']' && v.state == stArrFirst {
				v.stack = v.stack[:len(v.stack)-1]
				v.endValue()
				i++
				continue
			}
			if err := v.beginValue(c, i); err != nil {
				return 0, err
			}
		case stObjFirst, stObjKey:
			switch {
			case c == '"':
				v.inKey = true
				v.state = stString
			case c == '}' && v.state == stObjFirst:
				v.stack = v.stack[:len(v.stack)-1]
				v.endValue()
			default:
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" looking for an object key (a string in double quotes)")
			}
		case stColon:
			if c != ':' {
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after object key (':' expected)")
			}
			v.state = stValue
		case stAfterValue:
			top := v.stack[len(v.stack)-1]
			switch {
			case c == ',' && top == '{':
				v.state = stObjKey
			case c == ',':
				v.state = stValue
			case c == '}' && top == '{', c == ']' && top == '[':
				v.stack = v.stack[:len(v.stack)-1]
				v.endValue()
			case top == '{':
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after object value (',' or '}' expected)")
			default:
				return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after array element (',' or ']' expected)")
			}
		case stDone:
			return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after the top-level value (a .json file holds exactly one JSON value)")
		case stLineEnd:
			return 0, v.syntax(i, "invalid character "+quoteByte(c)+" after the line's JSON value (one value per line)")
		}
		i++
	}
	v.off += int64(n)
	return n, nil
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
	// bit while x's own top bit is clear; the test is exact for "any byte".
	special := ((quote - lsb) &^ quote) | ((bslash - lsb) &^ bslash) | ((w - 0x20*lsb) &^ w)
	return special&msb == 0
}

// beginValue starts the value whose first byte is c.
func (v *Validator) beginValue(c byte, i int) error {
	switch {
	case c == '{' || c == '[':
		if len(v.stack) >= maxDepth {
			return v.syntax(i, fmt.Sprintf("nesting deeper than %d", maxDepth))
		}
		v.stack = append(v.stack, c)
		if c == '{' {
			v.state = stObjFirst
		} else {
			v.state = stArrFirst
		}
	case c == '"':
		v.inKey = false
		v.state = stString
	case c == '-':
		v.state = stNeg
	case c == '0':
		v.state = stZero
	case '1' <= c && c <= '9':
		v.state = stInt
	case c == 't':
		v.lit, v.state = "rue", stLiteral
	case c == 'f':
		v.lit, v.state = "alse", stLiteral
	case c == 'n':
		v.lit, v.state = "ull", stLiteral
	default:
		return v.syntax(i, "invalid character "+quoteByte(c)+" looking for the beginning of a value")
	}
	return nil
}

// Close ends the input and returns the verdict: nil when the bytes are one
// valid JSON value (.json) or valid JSON lines ending in a newline (.jsonl),
// an *IncompleteError when the input stopped too early, ErrNoValues when it
// held only whitespace, or the *SyntaxError Write already returned.
func (v *Validator) Close() error {
	if v.err != nil {
		return v.err
	}
	incomplete := func(reason string) error {
		v.err = &IncompleteError{Line: v.line, Offset: v.off, Reason: reason}
		return v.err
	}
	switch v.state {
	case stDone:
		return nil
	case stLineStart:
		if v.values == 0 {
			v.err = ErrNoValues
			return v.err
		}
		return nil
	case stLineEnd:
		return incomplete("the last line has no trailing newline")
	case stZero, stInt, stFrac, stExpDigits:
		if len(v.stack) == 0 {
			if v.format == FormatJSONL {
				return incomplete("the last line has no trailing newline")
			}
			v.values++
			v.state = stDone
			return nil
		}
	case stValue:
		if len(v.stack) == 0 {
			v.err = ErrNoValues
			return v.err
		}
	}
	if v.format == FormatJSONL {
		return incomplete("the file ends in the middle of a line")
	}
	return incomplete("the file ends in the middle of a JSON value")
}
