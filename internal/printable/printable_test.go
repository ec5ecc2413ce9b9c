package printable

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: é, 東京, tab\there":      "plain text: é, 東京, tab\there",
		"502 \x1b]0;owned\x07\x1b[2J":       `502 \x1b]0;owned\a\x1b[2J`,
		"nel\u0085 del\x7f csi\u009b":       `nel\u0085 del\x7f csi\u009b`,
		"bidi \u202egnp.exe and line\u2028": `bidi \u202egnp.exe and line\u2028`,
		"bad \xff utf8":                     `bad \xff utf8`,
		"new\nline":                         `new\nline`,
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("\x1b[31mred")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		for _, r := range out {
			if unsafe(r) {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
		if !needsEscape(s) && out != s {
			t.Fatalf("String changed safe text %q", s)
		}
	})
}
