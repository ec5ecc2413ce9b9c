package cache

import (
	"encoding/json"

	"github.com/latchkey/latchkey/internal/jsonscan"
)

// Peek reads id's entry like [Cache.Load], for callers on a hot path that
// need only its tokens: it decodes Version, IDToken, IDTokenExpiry,
// AccessToken, TokenType, Expiry, RefreshToken and Secrets (fetching the
// tokens from the keyring as Load does), and leaves Key, Issuer, Provider,
// LoginFailure and RefreshFailure nil. It checks only what it decodes
// (beyond the JSON syntax of the whole), so it returns the tokens of an
// entry whose other members Load would refuse; its errors are otherwise
// Load's.
//
// Peek exists for speed: kubectl runs a cached get-token for each command,
// and decoding a whole entry with encoding/json, whose reflection over
// Entry's types is set up anew in each process, costs as much as the rest of
// the call.
func (c *Cache) Peek(id string) (*Entry, error) {
	return c.load(id, peekTokens)
}

// tokens are the members of an [Entry] that Peek decodes, with Entry's JSON
// names: the format version, the id it was saved under, what a Keyring
// holds, and where it is.
type tokens struct {
	Version int    `json:"version"`
	ID      string `json:"id,omitempty"`
	secrets
	Secrets string `json:"secrets,omitempty"`
}

// tokenNames are the JSON names of tokens' fields.
var tokenNames = [...]string{"version", "id", "id_token", "id_token_expiry", "access_token", "token_type", "expiry", "refresh_token", "secrets"}

// entry returns an Entry holding t.
func (t *tokens) entry() *Entry {
	e := &Entry{Version: t.Version, ID: t.ID, Secrets: t.Secrets}
	t.secrets.fill(e)
	return e
}

// peekTokens decodes the tokens of an entry read from path, with decode's
// errors. It scans data itself when the entry is as Save writes it and
// leaves anything unusual to json.Unmarshal, with the same result.
func peekTokens(path string, data []byte) (*Entry, error) {
	if len(data) == 0 {
		return nil, invalid(path, "file is empty")
	}
	var t tokens
	if !scanTokens(data, &t) {
		t = tokens{}
		if err := json.Unmarshal(data, &t); err != nil {
			return nil, invalid(path, jsonReason(err))
		}
	}
	if err := checkVersion(path, t.Version); err != nil {
		return nil, err
	}
	return t.entry(), nil
}

// scanTokens sets t from the JSON object data and reports true, or reports
// false, leaving t in any state, when data has anything it does not decode
// as json.Unmarshal would (see [jsonscan.Object]): besides, a string must be
// plain, the version a small integer, an expiry one that time.Time accepts,
// and no member name may fold onto one of tokenNames. Other members are
// skipped, unchecked beyond JSON syntax, as json.Unmarshal skips them. Later
// duplicates win, as they do for json.Unmarshal.
func scanTokens(data []byte, t *tokens) bool {
	return jsonscan.Object(data, func(name string, v []byte) bool {
		var ok bool
		switch name {
		case "version":
			t.Version, ok = jsonscan.Int(v)
		case "id":
			t.ID, ok = jsonscan.String(v)
		case "id_token":
			t.IDToken, ok = jsonscan.String(v)
		case "access_token":
			t.AccessToken, ok = jsonscan.String(v)
		case "token_type":
			t.TokenType, ok = jsonscan.String(v)
		case "refresh_token":
			t.RefreshToken, ok = jsonscan.String(v)
		case "secrets":
			t.Secrets, ok = jsonscan.String(v)
		case "id_token_expiry":
			// time.Time decodes itself from the raw value, for
			// json.Unmarshal too.
			ok = t.IDTokenExpiry.UnmarshalJSON(v) == nil
		case "expiry":
			ok = t.Expiry.UnmarshalJSON(v) == nil
		default:
			ok = !jsonscan.Folds(name, tokenNames[:]...)
		}
		return ok
	})
}
