package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin"
)

var statusCommand = command{
	name:    "status",
	summary: "list the cached logins: who, for which client, until when (never a token)",
	usage:   "status [--token-cache-dir=DIR] [--json]",
	help: `
Examples:
  latchkey status
  latchkey status --json | jq '.[] | select(.refresh_token | not)'
`,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		dir := fs.String("token-cache-dir", "", "token cache directory (default $XDG_CACHE_HOME/latchkey)")
		asJSON := fs.Bool("json", false, "print a JSON array for scripts")
		return func(context.Context) int {
			st, err := readStatus(cache.Open(*dir), time.Now())
			if err != nil {
				return c.fail(err)
			}
			if *asJSON {
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return c.fail(err)
				}
				fmt.Fprintf(c.stdout, "%s\n", b)
				return 0
			}
			if len(st) == 0 {
				fmt.Fprintf(c.stderr, "latchkey: no cached logins in %s\n", cache.Open(*dir).Dir)
				return 0
			}
			now := time.Now()
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ISSUER\tCLIENT\tSUBJECT\tSCOPES\tID TOKEN\tACCESS TOKEN\tREFRESH\tFILE")
			for _, s := range st {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", or(s.Issuer, "?"), or(s.ClientID, "?"), or(s.Subject, "-"),
					or(strings.Join(s.Scopes, ","), "-"), until(s.IDTokenExpiry, now), until(s.AccessTokenExpiry, now), refresh(s), s.Path)
			}
			tw.Flush()
			return 0
		}
	},
}

// status describes one cache entry without its secrets.
type status struct {
	Issuer            string            `json:"issuer,omitempty"`
	ClientID          string            `json:"client_id,omitempty"`
	Subject           string            `json:"subject,omitempty"`
	Email             string            `json:"email,omitempty"`
	Groups            []string          `json:"groups,omitempty"`
	Scopes            []string          `json:"scopes,omitempty"`
	ExtraParams       map[string]string `json:"extra_params,omitempty"`
	UseAccessToken    bool              `json:"use_access_token"`
	IDTokenExpiry     *time.Time        `json:"id_token_expiry,omitempty"`
	AccessTokenExpiry *time.Time        `json:"access_token_expiry,omitempty"`
	RefreshToken      bool              `json:"refresh_token"`
	Storage           string            `json:"storage"`
	LoginFailure      *cache.Failure    `json:"login_failure,omitempty"`
	Error             string            `json:"error,omitempty"`
	Path              string            `json:"path"`
}

func readStatus(c *cache.Cache, now time.Time) ([]status, error) {
	ids, err := c.List()
	if err != nil {
		return nil, err
	}
	out := make([]status, 0, len(ids))
	for _, id := range ids {
		s := status{Path: c.Path(id)}
		e, err := c.Load(id)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			s.Error = err.Error()
			out = append(out, s)
			continue
		}
		if k := e.Key; k != nil {
			s.Issuer, s.ClientID, s.Scopes, s.ExtraParams, s.UseAccessToken = k.Issuer, k.ClientID, k.Scopes, k.ExtraParams, k.UseAccessToken
		}
		if e.IDToken != "" {
			if cl, err := plugin.ParseClaims(e.IDToken); err == nil {
				s.Subject, s.Email, s.Groups = cl.Subject, cl.Email, cl.Groups
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
		s.Storage = "disk"
		if e.Secrets == cache.SecretsInKeyring {
			// The tokens are in the OS keyring; status does not unlock it.
			s.Storage = "keyring"
		}
		s.LoginFailure = e.LoginFailure
		out = append(out, s)
	}
	return out, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// until says when t is, relative to now.
func until(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "expired " + (-d).String() + " ago"
	}
	return d.String() + " left"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func refresh(s status) string {
	switch {
	case s.Storage == "keyring":
		return "(keyring)"
	case s.RefreshToken:
		return "yes"
	}
	return "no"
}
