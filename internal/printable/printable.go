// Package printable makes strings that came from the network safe to show on
// a terminal: a hostile provider must not retitle the window, clear the
// screen or print fake instructions through an error description, a user
// code or a claim.
package printable

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s with every control character (C0 but tab, DEL, C1),
// bidirectional formatting character (U+202A-U+202E, U+2066-U+2069) and line
// or paragraph separator written as a Go escape (\x1b, \u202e), and invalid
// UTF-8 as \xNN. Anything else is left as it is, so that ordinary text
// reads the same.
func String(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i]), 16))
		case unsafe(r):
			q := strconv.QuoteRuneToASCII(r) // 'x', with the escape inside
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unsafe(r) {
			return true
		}
	}
	return false
}

func unsafe(r rune) bool {
	return r != '\t' && unicode.IsControl(r) ||
		'\u202a' <= r && r <= '\u202e' || '\u2066' <= r && r <= '\u2069' || r == '\u2028' || r == '\u2029'
}
