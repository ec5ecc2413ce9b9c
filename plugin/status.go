package plugin

import (
	"errors"
	"time"

	"github.com/latchkey/latchkey/cache"
)

// Status describes one cached login without its secrets.
type Status struct {
	Issuer            string            `json:"issuer,omitempty"`
	ClientID          string            `json:"client_id,omitempty"`
	Subject           string            `json:"subject,omitempty"`
	Email             string            `json:"email,omitempty"`
	Username          string            `json:"preferred_username,omitempty"`
	Groups            []string          `json:"groups,omitempty"`
	Scopes            []string          `json:"scopes,omitempty"`
	ExtraParams       map[string]string `json:"extra_params,omitempty"`
	UseAccessToken    bool              `json:"use_access_token"`
	IDTokenExpiry     *time.Time        `json:"id_token_expiry,omitempty"`
	AccessTokenExpiry *time.Time        `json:"access_token_expiry,omitempty"`
	RefreshToken      bool              `json:"refresh_token"`
	// OfflineNeedsConsent: the provider grants a refresh token only with
	// prompt=consent, which the next login sends.
	OfflineNeedsConsent bool `json:"offline_needs_consent,omitempty"`
	// Storage is where the tokens are: "disk" or "keyring".
	Storage      string         `json:"storage"`
	LoginFailure *cache.Failure `json:"login_failure,omitempty"`
	// LastFailure is the last login or refresh that failed, for any reason.
	LastFailure *cache.Failure `json:"last_failure,omitempty"`
	// Error says why the entry cannot be used.
	Error string `json:"error,omitempty"`
	Path  string `json:"path"`
}

// Status lists the logins cached in the directory of c.Options: for each,
// the issuer that minted its tokens, the client and scopes it logged in
// with (as resolved, for a Flyte login too), whom the ID token is about,
// and until when each token is valid. It reads no keyring and makes no
// request.
func (c *Client) Status() ([]Status, error) {
	store := cache.Open(c.Options.CacheDir)
	ids, err := store.List()
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		s := Status{Path: store.Path(id)}
		e, err := store.Load(id)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			s.Error = err.Error()
			out = append(out, s)
			continue
		}
		s.describe(e)
		out = append(out, s)
	}
	return out, nil
}

// describe fills s from entry e.
func (s *Status) describe(e *cache.Entry) {
	if k := e.Key; k != nil {
		s.Issuer, s.ClientID, s.Scopes, s.ExtraParams, s.UseAccessToken = k.Issuer, k.ClientID, k.Scopes, k.ExtraParams, k.UseAccessToken
		var o Options
		o.FromKey(*k)
		if src, p := o.source(), providerOf(e); p != nil && src.fits(p) {
			l := src.resolve(p)
			s.ClientID, s.Scopes = l.clientID, l.scopes
		}
	}
	if minted := mintedBy(e); minted != "" {
		s.Issuer = minted
	}
	if e.IDToken != "" {
		if cl, err := ParseClaims(e.IDToken); err == nil {
			s.Subject, s.Email, s.Username, s.Groups = cl.Subject, cl.Email, cl.Username, cl.Groups
			if s.Issuer == "" {
				s.Issuer = cl.Issuer
			}
		}
		s.IDTokenExpiry = timePtr(e.IDTokenExpiry)
	}
	if e.AccessToken != "" {
		s.AccessTokenExpiry = timePtr(e.Expiry)
	}
	s.RefreshToken = e.RefreshToken != ""
	s.OfflineNeedsConsent = e.OfflineNeedsConsent
	s.Storage = "disk"
	if e.Secrets == cache.SecretsInKeyring {
		// The tokens are in the OS keyring; status does not unlock it.
		s.Storage = "keyring"
	}
	s.LoginFailure, s.LastFailure = e.LoginFailure, e.LastFailure
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
