package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchkey/latchkey/internal/printable"
	"github.com/latchkey/latchkey/plugin"
)

var setupCommand = command{
	name:    "setup",
	summary: "log in, show what the API server will see, and print (or write) the kubeconfig user",
	usage:   "setup --oidc-issuer-url=URL --oidc-client-id=ID [get-token flags] [--kubeconfig=FILE --user=NAME]",
	help: `
Runs a real login (or uses the cache), prints the ID token's claims, the
kube-apiserver flags that accept them, a kubeconfig users entry and the
equivalent kubectl command. With --kubeconfig and --user it runs that kubectl
command on the file (kubectl must be on PATH), after keeping a .bak copy.

With --from-kubelogin it logs in nowhere: it finds the kubeconfig users whose
exec runs kubelogin's get-token (kubectl oidc-login get-token, kubelogin
get-token, kubectl-oidc_login get-token), shows each change, and makes them
run latchkey get-token with the same flags, keeping everything else.

Examples:
  latchkey setup --oidc-issuer-url=https://dex.example.com --oidc-client-id=kubernetes --oidc-extra-scope=email,groups
  latchkey setup ... --kubeconfig=$HOME/.kube/config --user=oidc
  latchkey setup --from-kubelogin                 # $KUBECONFIG or ~/.kube/config
  latchkey setup --from-kubelogin=$HOME/.kube/prod.yaml
`,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		var o plugin.Options
		o.RegisterFlags(fs)
		ignoreKlogFlags(fs)
		kubeconfig := fs.String("kubeconfig", "", "kubeconfig file to write the user entry into")
		user := fs.String("user", "oidc", "name of the kubeconfig user")
		var from optionalPath
		fs.Var(&from, "from-kubelogin", "rewrite the kubeconfig users that run kubelogin get-token to run latchkey with the same flags (=KUBECONFIG; default $KUBECONFIG or ~/.kube/config)")
		return func(ctx context.Context) int {
			if from.set {
				return c.fromKubelogin(ctx, cmp.Or(from.path, *kubeconfig))
			}
			if err := o.ApplyFlyteConfig(c.getenv); err != nil {
				return c.fail(err)
			}
			args := append([]string{"get-token"}, reusableArgs(fs, c.args)...)
			u := execUser{
				APIVersion:      plugin.APIVersionV1,
				Command:         c.self(),
				Args:            args,
				InteractiveMode: "IfAvailable",
				InstallHint:     "Install latchkey: go install github.com/latchkey/latchkey/cmd/latchkey@latest",
			}
			if err := u.check(*user); *kubeconfig != "" && err != nil {
				return c.fail(fmt.Errorf("%w: %w", plugin.ErrUsage, err))
			}
			// Only a person runs setup: never held by the cool-down that
			// keeps background callers from opening browser after browser.
			cl := c.client(o, isTerminal(c.stdin))
			cl.Attended = true
			tok, err := c.token(ctx, cl)
			if err != nil {
				return c.fail(err)
			}
			c.printSetup(c.stdout, &o, tok, *user, u)
			if *kubeconfig != "" {
				bak, err := c.writeUsers(ctx, *kubeconfig, map[string]execUser{*user: u})
				if err != nil {
					return c.fail(err)
				}
				fmt.Fprintf(c.stdout, "\nWrote user %q to %s with kubectl", *user, *kubeconfig)
				if bak != "" {
					fmt.Fprintf(c.stdout, " (previous version in %s)", bak)
				}
				fmt.Fprintln(c.stdout, ".")
			}
			return 0
		}
	},
}

func (c *cli) printSetup(w io.Writer, o *plugin.Options, tok *plugin.Token, name string, u execUser) {
	fmt.Fprintln(w, "## Logged in")
	cl, err := plugin.ParseClaims(tok.Entry.IDToken)
	if err != nil {
		cl = &plugin.Claims{}
	} else {
		// The claims came from the provider: shown escaped.
		p := printable.String
		fmt.Fprintf(w, "  issuer:   %s\n  subject:  %s\n", p(cl.Issuer), p(cl.Subject))
		if cl.Email != "" {
			verified := "not said"
			if cl.EmailVerified != nil {
				verified = strconv.FormatBool(*cl.EmailVerified)
			}
			fmt.Fprintf(w, "  email:    %s (verified: %s)\n", p(cl.Email), verified)
		}
		if len(cl.Groups) > 0 {
			fmt.Fprintf(w, "  groups:   %s\n", p(strings.Join(cl.Groups, ", ")))
		}
		fmt.Fprintf(w, "  expires:  %s (in %s)\n", cl.Expiry.Format(time.RFC3339), time.Until(cl.Expiry).Round(time.Second))
	}
	flags, notes := apiserverFlags(cl)
	fmt.Fprintf(w, "\n## kube-apiserver flags that accept these tokens\n  --oidc-issuer-url=%s\n  --oidc-client-id=%s\n", cmp.Or(cl.Issuer, o.IssuerURL), o.ClientID)
	for _, f := range flags {
		fmt.Fprintf(w, "  %s\n", f)
	}
	for _, n := range notes {
		fmt.Fprintf(w, "  # %s\n", n)
	}
	fmt.Fprintln(w, "\n## kubeconfig user")
	fmt.Fprintf(w, "users:\n%s\n", strings.Join(u.yaml(name), "\n"))
	fmt.Fprintln(w, "\n## or run")
	cmd := []string{"kubectl config set-credentials " + shQuote(name)}
	for _, a := range u.credentialFlags() {
		cmd = append(cmd, shQuote(a))
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(cmd, " \\\n    "))
}

// apiserverFlags returns the username and groups flags of kube-apiserver
// for an ID token with claims cl, naming only claims the token has (an API
// server told to read a claim a token lacks rejects every request with
// it), and notes on what is missing and how to get it.
func apiserverFlags(cl *plugin.Claims) (flags, notes []string) {
	switch {
	case cl.Email != "" && (cl.EmailVerified == nil || *cl.EmailVerified):
		flags = append(flags, "--oidc-username-claim=email")
	case cl.Username != "":
		flags = append(flags, "--oidc-username-claim=preferred_username", "--oidc-username-prefix=oidc:")
	default:
		flags = append(flags, "--oidc-username-claim=sub", "--oidc-username-prefix=oidc:")
	}
	switch {
	case cl.Email == "":
		notes = append(notes, "the ID token has no email claim: ask for it with --oidc-extra-scope=email; certified providers that put "+
			"scope claims in the userinfo response only (oidc-provider) also need "+
			`--oidc-auth-request-extra-params=claims={"id_token":{"email":null}}`+" (or the provider's setting to put them in the ID token)")
	case cl.EmailVerified != nil && !*cl.EmailVerified:
		notes = append(notes, "email_verified is false: kube-apiserver refuses email as the user name then")
	}
	if len(cl.Groups) > 0 {
		flags = append(flags, "--oidc-groups-claim=groups")
	} else {
		notes = append(notes, "the ID token has no groups claim: ask for it with --oidc-extra-scope=groups (Dex, Okta), or map groups into "+
			"the ID token at the provider")
	}
	return flags, notes
}

// reusableArgs returns the flags of args that belong in a kubeconfig: all
// but setup's own and one-off ones, each as --name=value.
func reusableArgs(fs *flag.FlagSet, args []string) []string {
	skip := map[string]bool{"kubeconfig": true, "user": true, "force-refresh": true, "v": true}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		isBool := false
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			isBool = true
		}
		if !hasVal && !isBool && i+1 < len(args) {
			i++
			val, hasVal = args[i], true
		}
		if skip[name] {
			continue
		}
		if hasVal {
			out = append(out, "--"+name+"="+val)
		} else {
			out = append(out, "--"+name)
		}
	}
	return out
}

// self is how a kubeconfig runs this latchkey: "latchkey" when that is
// what PATH finds, else the executable's path.
func (c *cli) self() string {
	if exe, err := os.Executable(); err == nil && !onPath(c.getenv("PATH"), exe) {
		return exe
	}
	return "latchkey"
}

// onPath tells whether exe is what "latchkey" resolves to on path ($PATH).
func onPath(path, exe string) bool {
	p, err := lookPath(path, "latchkey")
	if err != nil {
		return false
	}
	fa, err := os.Stat(p)
	if err != nil {
		return false
	}
	fb, err := os.Stat(exe)
	return err == nil && os.SameFile(fa, fb)
}

// shQuote quotes s for a POSIX shell when it needs it.
func shQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=/.,:@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
