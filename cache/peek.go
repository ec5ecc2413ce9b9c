package cache

import "github.com/latchkey/latchkey/internal/jsonscan"

// Peek reads id's entry like [Cache.Load], for callers on a hot path that
// need only its tokens: it decodes Version, IDToken, IDTokenExpiry,
// AccessToken, TokenType, Expiry, RefreshToken and Secrets (fetching the
// tokens from the keyring as Load does), and leaves Key, Provider,
// LoginFailure and RefreshFailure nil. It does not check the parts it does
// not decode, so it may return tokens from an entry that Load calls
// invalid; its errors are otherwise Load's.
//
// Peek exists for speed: kubectl runs a cached get-token for each command,
// and decoding a whole entry with encoding/json, whose reflection over
// Entry's types is set up anew in each process, costs as much as the rest of
// the call.
func (c *Cache) Peek(id string) (*Entry, error) {
	return c.load(id, peekTokens)
}

// peekTokens decodes the token members of an entry read from path, with
// decode's errors. It scans data itself when the entry is as Save writes it
// and leaves anything unusual to encoding/json, so that it decodes exactly
// what json.Unmarshal would into those fields.
func peekTokens(path string, data []byte) (*Entry, error) {
	var e Entry
	if !scanTokens(data, &e) {
		full, err := decode(path, data)
		if err != nil {
			return nil, err
		}
		e = tokensOf(full)
	}
	if err := checkVersion(path, e.Version); err != nil {
		return nil, err
	}
	return &e, nil
}

// tokensOf returns the members of e that Peek decodes.
func tokensOf(e *Entry) Entry {
	return Entry{
		Version:       e.Version,
		IDToken:       e.IDToken,
		IDTokenExpiry: e.IDTokenExpiry,
		AccessToken:   e.AccessToken,
		TokenType:     e.TokenType,
		Expiry:        e.Expiry,
		RefreshToken:  e.RefreshToken,
		Secrets:       e.Secrets,
	}
}

// scanTokens sets the members of e that Peek decodes from the JSON object
// data and reports true, or reports false, leaving e in any state, when data
// has anything it does not decode the way json.Unmarshal does: see
// jsonscan.Object. Besides, a wanted string must be plain, the version a
// small integer, an expiry one that time.Time accepts, and no member name
// may fold onto a wanted one. Other members are skipped unchecked beyond
// JSON syntax. Later duplicates win, as they do for json.Unmarshal.
func scanTokens(data []byte, e *Entry) bool {
	return jsonscan.Object(data, func(name string, v []byte) bool {
		var ok bool
		switch name {
		case "version":
			e.Version, ok = jsonscan.Int(v)
		case "id_token":
			e.IDToken, ok = jsonscan.String(v)
		case "access_token":
			e.AccessToken, ok = jsonscan.String(v)
		case "token_type":
			e.TokenType, ok = jsonscan.String(v)
		case "refresh_token":
			e.RefreshToken, ok = jsonscan.String(v)
		case "secrets":
			e.Secrets, ok = jsonscan.String(v)
		case "id_token_expiry":
			// time.Time decodes itself from the raw value, for
			// json.Unmarshal too.
			ok = e.IDTokenExpiry.UnmarshalJSON(v) == nil
		case "expiry":
			ok = e.Expiry.UnmarshalJSON(v) == nil
		default:
			ok = !jsonscan.Folds(name, peekNames[:]...)
		}
		return ok
	})
}

// peekNames are the JSON names of the members scanTokens decodes.
var peekNames = [...]string{"version", "id_token", "access_token", "token_type", "refresh_token", "secrets", "id_token_expiry", "expiry"}
