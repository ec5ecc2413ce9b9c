package jsonscan

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type member struct{ Name, Value string }

// scan returns the members Object passes, and its result.
func scan(data []byte) ([]member, bool) {
	var got []member
	ok := Object(data, func(name string, value []byte) bool {
		got = append(got, member{name, string(value)})
		return true
	})
	return got, ok
}

func TestObject(t *testing.T) {
	tests := []struct {
		in   string
		want []member
		ok   bool
	}{
		{`{}`, nil, true},
		{" \t{ \n}\r ", nil, true},
		{`{"a":1,"b" : "x" ,"c":{"d":[1,"]}",{}]},"e":null,"f":true,"g":-1.5e3,"h":"\"}"}`, []member{
			{"a", "1"}, {"b", `"x"`}, {"c", `{"d":[1,"]}",{}]}`}, {"e", "null"}, {"f", "true"}, {"g", "-1.5e3"}, {"h", `"\"}"`},
		}, true},
		{`{"a":1,"a":2}`, []member{{"a", "1"}, {"a", "2"}}, true},
		{`{"a\u0062":1}`, nil, false}, // escaped name
		{`{"é":1}`, nil, false},       // non-ASCII name
		{`{"a":1,}`, nil, false},      // invalid JSON
		{`{"a":1}x`, nil, false},
		{`[{"a":1}]`, nil, false},
		{`"a"`, nil, false},
		{``, nil, false},
	}
	for _, tt := range tests {
		got, ok := scan([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("Object(%q) = %v, want %v", tt.in, ok, tt.ok)
		}
		if ok {
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Object(%q) members (-want +got):\n%s", tt.in, diff)
			}
		}
	}
	// The callback's false stops the scan.
	n := 0
	if Object([]byte(`{"a":1,"b":2}`), func(string, []byte) bool { n++; return false }) || n != 1 {
		t.Errorf("Object with a failing callback: called %d times, want 1 and false", n)
	}
}

func TestFolds(t *testing.T) {
	names := []string{"id_token", "expiry"}
	for name, want := range map[string]bool{
		"id_token": false, "ID_TOKEN": true, "Id_Token": true, "expiry": false, "EXPIRY": true,
		"id_tokens": false, "idtoken": false, "other": false, "": false,
	} {
		if got := Folds(name, names...); got != want {
			t.Errorf("Folds(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzObject: whatever Object accepts, json.Unmarshal decodes into a map
// with the same names and the same raw values (the last of duplicates), and
// String, Int and Bool agree with json.Unmarshal on each value they take.
func FuzzObject(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"id_token":"a.b.c","expiry":"2026-11-21T13:04:05Z","provider":{"jwks":{"keys":[]}}}`,
		`{"a":"\\","b":"\"","c":"é","d":"\u0041","e":"x\u007fy"}`,
		`{"n":0,"n":-0,"m":01,"k":123456789,"l":1234567890,"o":1e2,"p":1.0}`,
		`{"t":true,"f":false,"z":null,"s":" "}`,
		`{"a" :[ ] , "b":{ } }`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := scan(data)
		if !ok {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("Object took %q, json.Unmarshal refuses it: %v", data, err)
		}
		last := make(map[string]json.RawMessage)
		for _, m := range got {
			last[m.Name] = json.RawMessage(m.Value)
		}
		if diff := cmp.Diff(want, last); diff != "" {
			t.Fatalf("Object(%q) (-json.Unmarshal +Object):\n%s", data, diff)
		}
		for _, m := range got {
			v := []byte(m.Value)
			if s, ok := String(v); ok {
				var ref string
				if err := json.Unmarshal(v, &ref); err != nil || ref != s {
					t.Errorf("String(%s) = %q; json.Unmarshal: %q, %v", v, s, ref, err)
				}
			}
			if n, ok := Int(v); ok {
				var ref int
				if err := json.Unmarshal(v, &ref); err != nil || ref != n {
					t.Errorf("Int(%s) = %d; json.Unmarshal: %d, %v", v, n, ref, err)
				}
			}
			if b, ok := Bool(v); ok {
				var ref bool
				if err := json.Unmarshal(v, &ref); err != nil || ref != b {
					t.Errorf("Bool(%s) = %v; json.Unmarshal: %v, %v", v, b, ref, err)
				}
			}
		}
	})
}
