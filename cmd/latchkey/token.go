package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/latchkey/latchkey/plugin"
)

var tokenCommand = command{
	name:    "token",
	summary: "print a bare token, for tools that take a command's output as a bearer token",
	usage:   "token --oidc-issuer-url=URL --oidc-client-id=ID [--id-token] [--output token|header|json] [flags]",
	help: `
Prints the access token (or the ID token with --id-token) and a newline, with
the same cache, lock and refresh rules as get-token.

Examples:
  curl -H "Authorization: Bearer $(latchkey token --oidc-issuer-url=https://issuer --oidc-client-id=cli)" https://api.example.com
  curl -H "$(latchkey token --output header ...)" https://api.example.com

  # flytectl / flytekit config.yaml
  admin:
    authType: ExternalCommand
    command: ["latchkey", "token", "--flyte-endpoint=https://flyte.example.com"]
`,
	ownsSignals: true,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		var o plugin.Options
		o.RegisterFlags(fs)
		ignoreKlogFlags(fs)
		idToken := fs.Bool("id-token", false, "print the ID token instead of the access token")
		output := fs.String("output", "token", "what to print: token, header (Authorization: Bearer ...) or json")
		return func(ctx context.Context) int {
			if err := o.ApplyFlyteConfig(c.getenv); err != nil {
				return c.fail(err)
			}
			switch *output {
			case "token", "header", "json":
			default:
				return c.fail(fmt.Errorf("%w: --output %q (want token, header or json)", plugin.ErrUsage, *output))
			}
			if *idToken && o.FlyteEndpoint != "" {
				return c.fail(fmt.Errorf("%w: --id-token: a Flyte login has no ID token (Flyte's scopes leave out openid)", plugin.ErrUsage))
			}
			o.UseAccessToken = !*idToken
			if tok, ok := c.client(o, false).Cached(); ok {
				return c.printToken(tok, *output)
			}
			ctx, stop := c.interruptible(ctx)
			defer stop()
			tty := c.ttyForPeople()
			if tty != nil {
				defer tty.Close()
				cc := *c
				cc.stderr = tty
				c = &cc
			}
			cl := c.client(o, isTerminal(c.stdin))
			// flytectl swallows stderr: with no terminal either, a login
			// that needs the person fails at once (status keeps why).
			cl.StderrUnseen = !c.personAtStderr && tty == nil
			tok, err := c.token(ctx, cl)
			if err != nil {
				return c.fail(err)
			}
			return c.printToken(tok, *output)
		}
	},
}

// printToken prints tok as output says: token, header or json.
func (c *cli) printToken(tok *plugin.Token, output string) int {
	switch output {
	case "header":
		fmt.Fprintf(c.stdout, "Authorization: Bearer %s\n", tok.Value)
	case "json":
		e := tok.Entry
		b, err := json.Marshal(struct {
			AccessToken string    `json:"access_token,omitempty"`
			IDToken     string    `json:"id_token,omitempty"`
			TokenType   string    `json:"token_type,omitempty"`
			Expiry      time.Time `json:"expiry"`
		}{e.AccessToken, e.IDToken, e.TokenType, tok.Expiry.UTC()})
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	default:
		fmt.Fprintln(c.stdout, tok.Value)
	}
	return 0
}

// ttyForPeople opens the controlling terminal when stderr is not one: tools
// that run a token command (flytectl, flytekit) swallow its stderr, so the
// login URL and errors would never reach the person. It returns nil when
// stderr is a terminal or there is no terminal.
func (c *cli) ttyForPeople() *os.File {
	if isTerminal(c.stderr) || runtime.GOOS == "windows" {
		return nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return tty
}
