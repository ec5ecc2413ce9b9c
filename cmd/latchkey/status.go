package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/internal/printable"
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
		var o plugin.Options
		o.RegisterCacheFlags(fs)
		asJSON := fs.Bool("json", false, "print a JSON array for scripts")
		return func(context.Context) int {
			cl := c.client(o, false)
			st, err := cl.Status()
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
				fmt.Fprintf(c.stderr, "latchkey: no cached logins in %s\n", cache.Open(o.CacheDir).Dir)
				return 0
			}
			now := time.Now()
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ISSUER\tCLIENT\tUSER\tSCOPES\tID TOKEN\tACCESS TOKEN\tREFRESH\tFILE")
			for _, s := range st {
				// Who, as people know them: Dex's subject is opaque.
				user := or(s.Email, or(s.Username, or(s.Subject, "-")))
				p := printable.String // claims and reasons came from the provider
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p(or(s.Issuer, "?")), p(or(s.ClientID, "?")), p(user),
					p(or(strings.Join(s.Scopes, ","), "-")), until(s.IDTokenExpiry, now), until(s.AccessTokenExpiry, now), refresh(s), s.Path)
			}
			tw.Flush()
			// Why the last login or refresh failed: callers that swallow
			// stderr (flytectl) show only an exit status.
			for _, s := range st {
				if f := s.LastFailure; f != nil {
					fmt.Fprintf(c.stdout, "\n%s: last failure %s ago: %s\n", s.Path, now.Sub(f.At).Round(time.Second), printable.String(f.Reason))
				}
			}
			return 0
		}
	},
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

func refresh(s plugin.Status) string {
	switch {
	case s.Storage == "keyring":
		return "(keyring)"
	case s.RefreshToken:
		return "yes"
	case s.OfflineNeedsConsent:
		return "no (next login asks with prompt=consent)"
	}
	return "no"
}
