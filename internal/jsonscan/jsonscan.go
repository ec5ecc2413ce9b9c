// Package jsonscan reads the members of small JSON objects without
// reflection. It serves the hot path of a cached call, where the set-up of
// encoding/json's decoders, redone in every process, costs more than the
// rest of the call.
//
// The scan is deliberately narrow: it takes member names and string values
// only when they are plain (no escapes, printable ASCII), so that what it
// returns is exactly what json.Unmarshal would decode, and its callers hand
// anything else to encoding/json.
package jsonscan

import "encoding/json"

// Object calls f with the name and the raw value of each member of the JSON
// object data, in order, and reports whether json.Valid accepts data (RFC
// 8259 syntax; like encoding/json, it does not check UTF-8), data is an
// object, all of its member names are plain (see [String]; names inside its
// values are not looked at), and f returned true for every member. It stops at the first failure. A raw value
// is the value's bytes without surrounding white space, as
// json.Unmarshaler.UnmarshalJSON receives it. Validation comes first, at a
// few nanoseconds a byte, so that the scan can find values by their
// delimiters alone.
func Object(data []byte, f func(name string, value []byte) bool) bool {
	if !json.Valid(data) {
		return false
	}
	s := scanner{b: data}
	if s.next() != '{' {
		return false
	}
	s.i++
	if s.next() == '}' {
		return true
	}
	for {
		start := s.i
		s.skip()
		name, ok := String(data[start:s.i])
		if !ok || s.next() != ':' {
			return false
		}
		s.i++
		s.next()
		start = s.i
		s.skip()
		if !f(name, data[start:s.i]) {
			return false
		}
		switch s.next() {
		case ',':
			s.i++
			s.next()
		case '}':
			return true
		default:
			return false
		}
	}
}

// String returns the content of the raw JSON string value if the string is
// plain: no escape sequences and only printable ASCII, so that its content
// is its bytes. It reports false for any other value. Like [Int] and
// [Bool], it expects a value that [Object] passed, which is valid JSON.
func String(value []byte) (string, bool) {
	if len(value) < 2 || value[0] != '"' || value[len(value)-1] != '"' {
		return "", false
	}
	body := value[1 : len(value)-1]
	for _, c := range body {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x7f {
			return "", false
		}
	}
	return string(body), true
}

// Int returns the raw JSON number value as an int if it is a non-negative
// integer of at most nine digits, written without fraction or exponent
// (json.Unmarshal refuses those for an int). The value must be one that
// [Object] passed: Int does not refuse a leading zero, which json.Valid
// does.
func Int(value []byte) (int, bool) {
	if len(value) == 0 || len(value) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range value {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Bool returns the raw JSON value true or false as a bool.
func Bool(value []byte) (v, ok bool) {
	switch string(value) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// Folds reports whether name equals one of names ignoring ASCII case but is
// none of them exactly. encoding/json decodes such a member into the field
// it folds onto; callers that decode names exactly must leave it to
// encoding/json. Member names that [Object] passes are ASCII, so ASCII
// folding is all there is.
func Folds(name string, names ...string) bool {
	for _, n := range names {
		if n != name && len(n) == len(name) && equalFold(n, name) {
			return true
		}
	}
	return false
}

// equalFold compares ASCII strings of equal length ignoring case.
func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// scanner walks valid JSON.
type scanner struct {
	b []byte
	i int
}

// next skips white space and returns the byte at the position, or 0 at the
// end.
func (s *scanner) next() byte {
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// skip moves past the value at the position.
func (s *scanner) skip() {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.skipString()
			if depth == 0 {
				return
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return // the end of the object holding a number or literal
			}
			depth--
			s.i++
			if depth == 0 {
				return
			}
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return
			}
			s.i++
		default:
			s.i++
		}
	}
}

// skipString moves past the string that starts at the position.
func (s *scanner) skipString() {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return
		}
	}
	s.i = len(s.b)
}
