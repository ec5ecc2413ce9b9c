package plugin

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestParseClaims(t *testing.T) {
	got, err := ParseClaims(jwt(`{"iss":"https://i","sub":"u1","aud":"c","exp":1800000000,"iat":1799996400.5,"email":"a@b","email_verified":true,"groups":["x","y"],"preferred_username":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Claims{
		Issuer: "https://i", Subject: "u1", Audience: []string{"c"},
		Expiry: time.Unix(1800000000, 0).UTC(), IssuedAt: time.Unix(1799996400, 5e8).UTC(),
		Email: "a@b", EmailVerified: ptr(true), Groups: []string{"x", "y"}, Username: "a",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got, err = ParseClaims(jwt(`{"aud":["c","d"],"groups":"solo","email_verified":"true"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got.Audience, []string{"c", "d"}) || !cmp.Equal(got.Groups, []string{"solo"}) || got.EmailVerified == nil || !*got.EmailVerified {
		t.Errorf("aud/groups/email_verified = %v/%v/%v", got.Audience, got.Groups, got.EmailVerified)
	}
}

func TestParseClaimsRejects(t *testing.T) {
	for _, tok := range []string{
		"", "abc", "a.b", "a.b.c.d", "opaque-access-token",
		jwt(`not json`), jwt(`{"exp":"tomorrow"}`), jwt(`{"exp":-1}`), jwt(`{"aud":42}`), jwt(`[]`),
		"x." + strings.Repeat("A", maxJWTBytes) + ".y",
		"x.!!!.y",
	} {
		if _, err := ParseClaims(tok); !errors.Is(err, ErrNotJWT) {
			t.Errorf("ParseClaims(%.40q) error = %v, want ErrNotJWT", tok, err)
		}
	}
}

// FuzzParseClaims: any input either fails with ErrNotJWT or yields claims;
// it never panics, and the error never echoes the token.
func FuzzParseClaims(f *testing.F) {
	f.Add(jwt(`{"iss":"https://i","sub":"u","aud":["c"],"exp":1800000000,"iat":1,"groups":["g"]}`))
	f.Add(jwt(`{"aud":"c","exp":1.5e9}`))
	f.Add("a.b.c")
	f.Add(jwt(`{"exp":1e308}`))
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := ParseClaims(tok)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotJWT) {
			t.Fatalf("error %v is not ErrNotJWT", err)
		}
		if len(tok) > 8 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error echoes the token: %v", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }
