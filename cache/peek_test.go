package cache

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// peekFields are the Entry fields Peek decodes.
var peekFields = []string{"Version", "IDToken", "IDTokenExpiry", "AccessToken", "TokenType", "Expiry", "RefreshToken", "Secrets"}

// peekStruct returns a pointer to a new struct of Entry's peekFields, with
// their JSON tags: what json.Unmarshal makes of an entry's tokens is the
// reference for scanTokens.
func peekStruct(t testing.TB) reflect.Value {
	t.Helper()
	et := reflect.TypeFor[Entry]()
	var fields []reflect.StructField
	for _, name := range peekFields {
		f, ok := et.FieldByName(name)
		if !ok {
			t.Fatalf("Entry has no field %s", name)
		}
		f.Index, f.Offset = nil, 0
		fields = append(fields, f)
	}
	return reflect.New(reflect.StructOf(fields))
}

// entryOf copies the fields of a peekStruct into an Entry.
func entryOf(v reflect.Value) Entry {
	var e Entry
	ev := reflect.ValueOf(&e).Elem()
	for _, name := range peekFields {
		ev.FieldByName(name).Set(v.Elem().FieldByName(name))
	}
	return e
}

// TestPeekNames: scanTokens looks for the JSON names of exactly the fields
// Peek documents.
func TestPeekNames(t *testing.T) {
	et := reflect.TypeFor[Entry]()
	var tags []string
	for _, name := range peekFields {
		f, _ := et.FieldByName(name)
		tags = append(tags, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	if diff := cmp.Diff(tags, peekNames[:], cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("peekNames (-Entry's tags +peekNames):\n%s", diff)
	}
}

// TestPeekScansSavedEntries: entries as Save writes them take the fast scan,
// not encoding/json, and Peek returns Load's tokens without the rest.
func TestPeekScansSavedEntries(t *testing.T) {
	at := time.Date(2026, 11, 21, 13, 4, 5, 123456789, time.FixedZone("CET", 3600))
	entries := map[string]func(e *Entry){
		"full": func(e *Entry) {
			e.Key = &Key{Issuer: "https://issuer.example.com", ClientID: "kubectl", Scopes: []string{"openid", "email"}, ExtraParams: map[string]string{"audience": "k\"8s"}}
			e.LoginFailure = &Failure{At: at, Reason: `browser "closed" <early> & \ gone`}
			e.RefreshFailure = &Failure{At: at, Reason: "token endpoint: 503"}
			e.Provider.Client = &ClientConfig{Endpoint: "dns:///flyte.example.com", Scopes: []string{"all"}}
			e.Provider.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"\u003cx","y":"y","n":[1,2.5e3,true,null,{}]}]}`)
			e.Expiry = at
		},
		"access token only": func(e *Entry) { e.IDToken, e.IDTokenExpiry, e.Provider = "", time.Time{}, nil },
		"tokens in keyring": func(e *Entry) { e.IDToken, e.AccessToken, e.RefreshToken, e.Secrets = "", "", "", SecretsInKeyring },
		"no tokens":         func(e *Entry) { e.IDToken, e.AccessToken, e.RefreshToken, e.TokenType = "", "", "", "" },
	}
	for name, edit := range entries {
		t.Run(name, func(t *testing.T) {
			e := testEntry()
			edit(e)
			data, err := json.MarshalIndent(e, "", "\t") // white space too
			if err != nil {
				t.Fatal(err)
			}
			var got Entry
			if !scanTokens(data, &got) {
				t.Fatalf("scanTokens declined an entry as Save writes it:\n%s", data)
			}
			if diff := cmp.Diff(tokensOf(e), got); diff != "" {
				t.Errorf("scanTokens (-want +got):\n%s", diff)
			}
		})
	}

	c := Open(t.TempDir())
	want := testEntry()
	want.Key = &Key{Issuer: "https://issuer.example.com", ClientID: "kubectl"}
	if err := c.Save(testID, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Peek(testID)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	if diff := cmp.Diff(tokensOf(want), *got); diff != "" {
		t.Errorf("Peek (-want +got):\n%s", diff)
	}
}

// TestPeekKeyring: Peek fetches the tokens of a keyring entry as Load does.
func TestPeekKeyring(t *testing.T) {
	c := Open(t.TempDir())
	c.Keyring = &Keyring{ChunkSize: 2048, store: newMemStore(2560)}
	want := testEntry()
	if err := c.Save(testID, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Peek(testID)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	want.Secrets = SecretsInKeyring
	if diff := cmp.Diff(tokensOf(want), *got); diff != "" {
		t.Errorf("Peek (-want +got):\n%s", diff)
	}
}

// TestPeekErrors: Peek fails as Load does on missing and unusable entries.
func TestPeekErrors(t *testing.T) {
	c := Open(t.TempDir())
	if e, err := c.Peek(testID); !errors.Is(err, ErrNotFound) || e != nil {
		t.Errorf("Peek of a missing entry = %v, %v; want ErrNotFound", e, err)
	}
	if _, err := c.Peek("../x"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Peek(../x) = %v; want ErrInvalidID", err)
	}
	// TestLoadInvalid runs checkInvalid, which checks Peek too, on many
	// more files.
}

// FuzzPeek: whenever scanTokens takes an input, json.Unmarshal decodes the
// same tokens from it; whatever Load accepts, Peek accepts with Load's
// tokens; Peek's errors are ErrInvalid.
func FuzzPeek(f *testing.F) {
	for _, e := range []*Entry{testEntry(), {Version: 1}} {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, seed := range []string{
		`{"version":1,"version":2}`,
		`{"version":1,"ID_TOKEN":"a","id_token":"b"}`,
		`{"version":1,"id_token":"b","Id_Token":"a"}`,
		`{"version":1,"id_to\u212aen":"a"}`,
		`{"version":1,"id_token":"a\u002fb"}`,
		`{"version":1,"id_token":null,"expiry":null}`,
		`{"version":01}`,
		`{"version":1.0}`,
		`{"version":1e0}`,
		`{"version":-1}`,
		`{"version":1234567890}`,
		`{"version":1,"expiry":"2026-01-02T03:04:05Z","expiry":"2026-01-02T03:04:05.1+24:00"}`,
		`{"version":1,"expiry":"2026-1-2T03:04:05Z"}`,
		`{"version":1,"provider":{"a":"}\"","b":[{"c":"]"}]},"id_token":"x"}`,
		`{"version":1,"key":"\\","id_token":"y"}`,
		`{"version":1,"x":tru}`,
		` {"version" : 1 , "secrets" : "keyring" } `,
		`[{"version":1}]`,
		`{"version":1}{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Entry
		if scanTokens(data, &got) {
			ref := peekStruct(t)
			if err := json.Unmarshal(data, ref.Interface()); err != nil {
				t.Fatalf("scanTokens took what json.Unmarshal refuses (%v): %q", err, data)
			}
			if diff := cmp.Diff(entryOf(ref), got); diff != "" {
				t.Fatalf("scanTokens (-json.Unmarshal +scanTokens) of %q:\n%s", data, diff)
			}
		}
		peeked, perr := peekTokens("x.json", data)
		if perr != nil && (!errors.Is(perr, ErrInvalid) || peeked != nil) {
			t.Fatalf("peekTokens = %v, %v; want ErrInvalid", peeked, perr)
		}
		full, err := decode("x.json", data)
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("Load accepts %q, Peek refuses it: %v", data, perr)
		}
		if diff := cmp.Diff(tokensOf(full), *peeked); diff != "" {
			t.Fatalf("Peek (-Load +Peek) of %q:\n%s", data, diff)
		}
	})
}
