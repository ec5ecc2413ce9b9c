package main

import (
	"context"
	"flag"

	"github.com/latchkey/latchkey/plugin"
)

var getTokenCommand = command{
	name:    "get-token",
	summary: "print an ExecCredential for a kubeconfig exec stanza",
	usage:   "get-token --oidc-issuer-url=URL --oidc-client-id=ID [flags]",
	help: `
The token comes from the cache when it has more than 10 seconds left, else from
a refresh, else from a browser login. Stdout carries only the ExecCredential.

Example kubeconfig user:
  users:
  - name: oidc
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        interactiveMode: IfAvailable
        command: latchkey
        args:
        - get-token
        - --oidc-issuer-url=https://issuer.example.com
        - --oidc-client-id=kubernetes
        - --oidc-extra-scope=email,groups
`,
	ownsSignals: true,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		var o plugin.Options
		o.RegisterFlags(fs)
		ignoreKlogFlags(fs)
		return func(ctx context.Context) int {
			if err := o.ApplyFlyteConfig(c.getenv); err != nil {
				return c.fail(err)
			}
			req, err := plugin.ParseExecInfo(c.getenv(plugin.ExecInfoEnv))
			if err != nil {
				return c.fail(err)
			}
			if tok, ok := c.client(o, false).Cached(); ok {
				if err := plugin.WriteExecCredential(c.stdout, req, tok.Value, tok.Expiry); err != nil {
					return c.fail(err)
				}
				return 0
			}
			ctx, stop := c.interruptible(ctx)
			defer stop()
			// KUBERNETES_EXEC_INFO says whether stdin is the person's; run
			// by hand (no exec info), it is when it is a terminal.
			stdinHandedOver := req.Spec.Interactive
			if c.getenv(plugin.ExecInfoEnv) == "" {
				stdinHandedOver = isTerminal(c.stdin)
			}
			tok, err := c.token(ctx, c.client(o, stdinHandedOver))
			if err != nil {
				return c.fail(err)
			}
			if err := plugin.WriteExecCredential(c.stdout, req, tok.Value, tok.Expiry); err != nil {
				return c.fail(err)
			}
			return 0
		}
	},
}

// token gets a token with cl, warning first about insecure options.
func (c *cli) token(ctx context.Context, cl *plugin.Client) (*plugin.Token, error) {
	if cl.Options.InsecureSkipTLSVerify {
		cl.Logger.Warn("--insecure-skip-tls-verify is set: the provider's TLS certificate is NOT verified; anyone on the network path can steal your tokens")
	}
	if w := cl.Options.InsecureWarning(); w != "" {
		cl.Logger.Warn(w)
	}
	return cl.Token(ctx)
}
