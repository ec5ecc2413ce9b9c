package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/internal/printable"
	"github.com/latchkey/latchkey/plugin"
)

var logoutCommand = command{
	name:    "logout",
	summary: "revoke the tokens at the provider and remove them from the cache",
	usage:   "logout --oidc-issuer-url=URL --oidc-client-id=ID [flags] | logout --all [--token-cache-dir=DIR]",
	help: `
Revokes the refresh and access tokens at the provider's revocation endpoint
(RFC 7009) when discovery advertises one, then deletes the cache entry and its
lock. A failed revocation still removes the local entry, and says so.

Examples:
  latchkey logout --oidc-issuer-url=https://issuer.example.com --oidc-client-id=kubernetes
  latchkey logout --all
`,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		var o plugin.Options
		o.RegisterProviderFlags(fs)
		all := fs.Bool("all", false, "log out of every cached login (in --token-cache-dir)")
		ignoreLoginFlags(fs)
		ignoreKlogFlags(fs)
		return func(ctx context.Context) int {
			if err := o.ApplyFlyteConfig(c.getenv); err != nil {
				return c.fail(err)
			}
			cl := c.client(o, false)
			if !*all {
				res, err := cl.Logout(ctx)
				if errors.Is(err, plugin.ErrNoEntry) {
					fmt.Fprintf(c.stderr, "latchkey: %v\n", err)
					return 0
				}
				if err != nil {
					return c.fail(err)
				}
				return c.loggedOut(res)
			}
			done, err := cl.LogoutAll(ctx)
			code := 0
			for i := range done {
				code = max(code, c.loggedOut(&done[i]))
			}
			if err != nil {
				return c.fail(err)
			}
			if len(done) == 0 {
				fmt.Fprintf(c.stderr, "latchkey: no cached logins in %s\n", cache.Open(o.CacheDir).Dir)
			}
			return code
		}
	},
}

// tokenNames are token type hints for people: "refresh token and access
// token".
func tokenNames(hints []string) string {
	return strings.ReplaceAll(strings.Join(hints, " and "), "_", " ")
}

// loggedOut tells the person what a logout did and returns the exit code:
// 1 if revocation failed.
func (c *cli) loggedOut(res *plugin.Logout) int {
	switch {
	case res.Login == "":
		fmt.Fprintf(c.stderr, "latchkey: removed %s (%v)\n", res.Path, res.RevokeErr)
	case errors.Is(res.RevokeErr, plugin.ErrNoRevocation):
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s on this machine: removed %s; %v\n", res.Login, res.Path, res.RevokeErr)
	case res.RevokeErr != nil:
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s on this machine (removed %s), but revocation failed: %s\n", res.Login, res.Path,
			printable.String(strings.Join(strings.Fields(res.RevokeErr.Error()), " ")))
		return 1
	case len(res.Revoked) > 0:
		msg := fmt.Sprintf("latchkey: logged out of %s: revoked the %s", res.Login, tokenNames(res.Revoked))
		if len(res.Unrevocable) > 0 {
			msg += fmt.Sprintf(" (the provider does not revoke the %s: it stays valid until it expires)", tokenNames(res.Unrevocable))
		}
		fmt.Fprintf(c.stderr, "%s, removed %s\n", msg, res.Path)
	default:
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s: removed %s\n", res.Login, res.Path)
	}
	return 0
}

var cleanCommand = command{
	name:    "clean",
	summary: "remove every cached login, without revoking anything (logout --all revokes)",
	usage:   "clean [--token-cache-dir=DIR]",
	help: `
Removes the cache entries in the cache directory (and their lock files and
OS keyring items), as kubelogin's clean does. Nothing is sent to the
providers: the tokens stay valid until they expire. Other files in the
directory are left alone.

Example:
  latchkey clean
  latchkey clean --token-cache-dir=~/.kube/cache/oidc-login
`,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		var o plugin.Options
		o.RegisterCacheFlags(fs)
		return func(context.Context) int {
			removed, err := c.client(o, false).Clean()
			for _, p := range removed {
				fmt.Fprintf(c.stderr, "latchkey: removed %s\n", p)
			}
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintf(c.stderr, "latchkey: removed %d cached logins from %s\n", len(removed), cache.Open(o.CacheDir).Dir)
			return 0
		}
	},
}
