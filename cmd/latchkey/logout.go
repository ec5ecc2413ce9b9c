package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/latchkey/latchkey/cache"
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
		o.RegisterFlags(fs)
		all := fs.Bool("all", false, "log out of every cached login")
		return func(ctx context.Context) int {
			if !*all {
				return c.logout(ctx, o)
			}
			store := cache.Open(o.CacheDir)
			ids, err := store.List()
			if err != nil {
				return c.fail(err)
			}
			code := 0
			for _, id := range ids {
				e, err := store.Load(id)
				if err != nil || e.Key == nil {
					if err := store.Delete(id); err != nil {
						return c.fail(err)
					}
					fmt.Fprintf(c.stderr, "latchkey: removed %s (unreadable entry, nothing revoked)\n", store.Path(id))
					continue
				}
				oo := o
				oo.FromKey(*e.Key)
				if e.Secrets == cache.SecretsInKeyring {
					oo.Storage = "keyring"
				}
				if c.logout(ctx, oo) != 0 {
					code = 1
				}
			}
			if len(ids) == 0 {
				fmt.Fprintf(c.stderr, "latchkey: no cached logins in %s\n", store.Dir)
			}
			return code
		}
	},
}

func (c *cli) logout(ctx context.Context, o plugin.Options) int {
	res, err := c.client(o, false).Logout(ctx)
	if errors.Is(err, plugin.ErrNoEntry) {
		fmt.Fprintf(c.stderr, "latchkey: %v\n", err)
		return 0
	}
	if err != nil {
		return c.fail(err)
	}
	who := o.Describe()
	switch {
	case errors.Is(res.RevokeErr, plugin.ErrNoRevocation):
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s on this machine: removed %s; %v\n", who, res.Path, res.RevokeErr)
	case res.RevokeErr != nil:
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s on this machine (removed %s), but revocation failed: %s\n", who, res.Path, strings.Join(strings.Fields(res.RevokeErr.Error()), " "))
		return 1
	case len(res.Revoked) > 0:
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s: revoked the %s, removed %s\n", who, strings.ReplaceAll(strings.Join(res.Revoked, " and "), "_", " "), res.Path)
	default:
		fmt.Fprintf(c.stderr, "latchkey: logged out of %s: removed %s\n", who, res.Path)
	}
	return 0
}
