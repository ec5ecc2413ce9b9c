package cache

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// peeked returns what Peek makes of an entry e.
func peeked(e *Entry) *Entry {
	t := tokens{Version: e.Version, ID: e.ID, secrets: secretsOf(e), Secrets: e.Secrets}
	return t.entry()
}

// TestTokensMatchEntry: tokens' fields are Entry's, with the same types and
// JSON tags, and tokenNames are their JSON names.
func TestTokensMatchEntry(t *testing.T) {
	et, tt := reflect.TypeFor[Entry](), reflect.TypeFor[tokens]()
	var names []string
	for _, f := range reflect.VisibleFields(tt) {
		if f.Anonymous {
			continue
		}
		ef, ok := et.FieldByName(f.Name)
		if !ok || ef.Type != f.Type || ef.Tag != f.Tag {
			t.Errorf("tokens.%s %v `%s` is not Entry's (%v `%s`)", f.Name, f.Type, f.Tag, ef.Type, ef.Tag)
		}
		names = append(names, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	if diff := cmp.Diff(names, tokenNames[:]); diff != "" {
		t.Errorf("tokenNames (-tokens' tags +tokenNames):\n%s", diff)
	}
	// peeked and entry copy every field.
	e := testEntry()
	e.Secrets = "x"
	if diff := cmp.Diff(e, peeked(e), cmpopts.IgnoreFields(Entry{}, "Key", "Issuer", "Provider", "LoginFailure", "RefreshFailure")); diff != "" {
		t.Errorf("peeked (-entry +peeked):\n%s", diff)
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
			e.Provider = json.RawMessage(`{"client_config":{"endpoint":"dns:///flyte.example.com"},"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"\u003cx","y":"y","n":[1,2.5e3,true,null,{}]}]}}`)
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
			var got tokens
			if !scanTokens(data, &got) {
				t.Fatalf("scanTokens declined an entry as Save writes it:\n%s", data)
			}
			if diff := cmp.Diff(peeked(e), got.entry()); diff != "" {
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
	if diff := cmp.Diff(peeked(want), got); diff != "" {
		t.Errorf("Peek (-want +got):\n%s", diff)
	}
}

// TestPeekChecksOnlyTokens: an entry whose other members Load refuses still
// yields its tokens, however they are written; a damaged token member does
// not.
func TestPeekChecksOnlyTokens(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	c := Open(t.TempDir())
	for _, tt := range []struct {
		name, data string
		want       string // the ID token; "" means ErrInvalid
	}{
		{"plain", `{"version":1,"id_token":"a.b.c","id_token_expiry":"` + exp + `","key":5}`, "a.b.c"},
		{"escaped", `{"version":1,"id_token":"a.b\u002fc","id_token_expiry":"` + exp + `","key":5}`, "a.b/c"},
		{"damaged token", `{"version":1,"id_token":5,"id_token_expiry":"` + exp + `"}`, ""},
		{"damaged expiry", `{"version":1,"id_token":"a.b.c","id_token_expiry":"soon"}`, ""},
		{"damaged JSON elsewhere", `{"version":1,"id_token":"a.b.c","provider":{]}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(c.Path(testID), []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Load(testID); !errors.Is(err, ErrInvalid) {
				t.Errorf("Load = %v; want ErrInvalid", err)
			}
			e, err := c.Peek(testID)
			switch {
			case tt.want == "" && !errors.Is(err, ErrInvalid):
				t.Errorf("Peek = %v, %v; want ErrInvalid", e, err)
			case tt.want != "" && (err != nil || e.IDToken != tt.want):
				t.Errorf("Peek = %v, %v; want ID token %q", e, err, tt.want)
			}
		})
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
	if diff := cmp.Diff(peeked(want), got); diff != "" {
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
// same tokens from it; Peek succeeds exactly when json.Unmarshal decodes the
// tokens with a supported version, and then agrees with Load whenever Load
// succeeds; Peek's errors are ErrInvalid.
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
		`{"version":1,"key":"\\","id_token":"y","provider":5}`,
		`{"version":1,"x":tru}`,
		` {"version" : 1 , "secrets" : "keyring" } `,
		`[{"version":1}]`,
		`{"version":1}{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ref tokens
		refErr := json.Unmarshal(data, &ref)
		var scanned tokens
		if scanTokens(data, &scanned) {
			if refErr != nil {
				t.Fatalf("scanTokens took what json.Unmarshal refuses (%v): %q", refErr, data)
			}
			if diff := cmp.Diff(ref.entry(), scanned.entry()); diff != "" {
				t.Fatalf("scanTokens (-json.Unmarshal +scanTokens) of %q:\n%s", data, diff)
			}
		}
		peek, err := peekTokens("x.json", data)
		if refErr == nil && ref.Version >= 1 && ref.Version <= Version {
			if err != nil {
				t.Fatalf("json.Unmarshal decodes the tokens of %q, Peek refuses them: %v", data, err)
			}
			if diff := cmp.Diff(ref.entry(), peek); diff != "" {
				t.Fatalf("Peek (-json.Unmarshal +Peek) of %q:\n%s", data, diff)
			}
		} else if !errors.Is(err, ErrInvalid) || peek != nil {
			t.Fatalf("peekTokens(%q) = %v, %v; want ErrInvalid", data, peek, err)
		}
		if full, err := decode("x.json", data); err == nil {
			if diff := cmp.Diff(peeked(full), peek); diff != "" {
				t.Fatalf("Peek (-Load +Peek) of %q:\n%s", data, diff)
			}
		}
	})
}

// TestEntryBoundToItsID: an entry copied under another configuration's name
// is not served for it, by Peek or Load (its refresh token would then go to
// that configuration's issuer); an entry written before the id was stored is
// checked against its key.
func TestEntryBoundToItsID(t *testing.T) {
	c := Open(t.TempDir())
	e := testEntry()
	if err := c.Save(testID, e); err != nil {
		t.Fatal(err)
	}
	const other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	data, err := os.ReadFile(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path(other), data, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(string) (*Entry, error){"Peek": c.Peek, "Load": c.Load} {
		if _, err := read(other); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s of a copied entry = %v, want ErrInvalid", name, err)
		}
		if _, err := read(testID); err != nil {
			t.Errorf("%s of the entry itself: %v", name, err)
		}
	}
	// Before the id: the key decides.
	k := Key{Issuer: "https://issuer.example.com", ClientID: "k"}
	legacy := `{"version":1,"key":{"issuer":"https://issuer.example.com","client_id":"k"},"id_token":"a.b.c","id_token_expiry":"2099-01-01T00:00:00Z"}`
	for id, ok := range map[string]bool{k.ID(): true, other: false} {
		if err := os.WriteFile(c.Path(id), []byte(legacy), 0o600); err != nil {
			t.Fatal(err)
		}
		for name, read := range map[string]func(string) (*Entry, error){"Peek": c.Peek, "Load": c.Load} {
			if _, err := read(id); (err == nil) != ok {
				t.Errorf("%s of a legacy entry under its own id %v: %v", name, ok, err)
			}
		}
	}
}
