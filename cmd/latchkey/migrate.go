package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/latchkey/latchkey/plugin"
)

// optionalPath is a flag that may be given alone (--from-kubelogin) or with
// a path (--from-kubelogin=FILE).
type optionalPath struct {
	set  bool
	path string
}

func (p *optionalPath) String() string { return p.path }

func (p *optionalPath) Set(s string) error {
	p.set = true
	if s != "true" {
		p.path = s
	}
	return nil
}

func (p *optionalPath) IsBoolFlag() bool { return true }

// kubeloginArgs returns the get-token flags of an exec that runs kubelogin
// (kubectl oidc-login get-token, kubelogin get-token, kubectl-oidc_login
// get-token), and whether it does.
func kubeloginArgs(command string, args []string) ([]string, bool) {
	switch strings.TrimSuffix(filepath.Base(command), ".exe") {
	case "kubectl":
		if len(args) >= 2 && args[0] == "oidc-login" && args[1] == "get-token" {
			return args[2:], true
		}
	case "kubelogin", "kubectl-oidc_login", "kubectl-oidc-login":
		if len(args) >= 1 && args[0] == "get-token" {
			return args[1:], true
		}
	}
	return nil, false
}

// fromKubelogin is setup --from-kubelogin: it rewrites the users of the
// kubeconfig at path ("" means the first file of $KUBECONFIG, else
// ~/.kube/config) whose exec runs kubelogin's get-token to run latchkey
// get-token with the same flags, through kubectl as setup writes, keeping
// everything else. A user whose flags latchkey would refuse is left as it
// is, and said so (exit 1).
func (c *cli) fromKubelogin(ctx context.Context, path string) int {
	if path == "" {
		path = filepath.SplitList(c.getenv("KUBECONFIG") + string(filepath.ListSeparator))[0]
	}
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c.fail(err)
		}
		path = filepath.Join(home, ".kube", "config")
	}
	kubectl, err := lookPath(c.getenv("PATH"), "kubectl")
	if err != nil {
		return c.fail(errNoKubectl)
	}
	out, err := c.kubectl(ctx, kubectl, "--kubeconfig="+path, "config", "view", "--raw", "-o", "json")
	if err != nil {
		return c.fail(fmt.Errorf("read kubeconfig %s: %w", path, err))
	}
	var cfg struct {
		Users []struct {
			Name string `json:"name"`
			User struct {
				Exec *struct {
					Command string   `json:"command"`
					Args    []string `json:"args"`
				} `json:"exec"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		return c.fail(fmt.Errorf("read kubeconfig %s: %w", path, err))
	}
	users, code := map[string]execUser{}, 0
	for _, u := range cfg.Users {
		if u.User.Exec == nil {
			continue
		}
		flags, ok := kubeloginArgs(u.User.Exec.Command, u.User.Exec.Args)
		if !ok {
			continue
		}
		if err := checkGetTokenArgs(flags); err != nil {
			fmt.Fprintf(c.stderr, "latchkey: user %q left as it is: %v\n", u.Name, err)
			code = 1
			continue
		}
		next := execUser{Command: c.self(), Args: append([]string{"get-token"}, flags...)}
		fmt.Fprintf(c.stdout, "user %q\n  - %s\n  + %s\n", u.Name, shJoin(u.User.Exec.Command, redactArgs(u.User.Exec.Args)),
			shJoin(next.Command, redactArgs(next.Args)))
		users[u.Name] = next
	}
	if len(users) == 0 {
		fmt.Fprintf(c.stderr, "latchkey: no user in %s runs kubelogin get-token\n", path)
		return code
	}
	bak, err := c.writeUsers(ctx, path, users)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "\nWrote %d users to %s with kubectl (previous version in %s).\n", len(users), path, bak)
	return code
}

// checkGetTokenArgs parses args as get-token's flags and checks them as
// get-token would before logging in.
func checkGetTokenArgs(args []string) error {
	var o plugin.Options
	fs := flag.NewFlagSet("get-token", flag.ContinueOnError)
	o.RegisterFlags(fs)
	ignoreKlogFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return o.Validate()
}

// secretFlags are the flags whose values are secrets, never shown.
var secretFlags = []string{"oidc-client-secret", "password"}

// redactArgs returns args with the values of secretFlags replaced.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(out[i], "-"), "=")
		if !strings.HasPrefix(out[i], "-") || !slices.Contains(secretFlags, name) {
			continue
		}
		if hasValue {
			out[i] = "--" + name + "=REDACTED"
		} else if i+1 < len(out) {
			i++
			out[i] = "REDACTED"
		}
	}
	return out
}

// shJoin is a command line as a POSIX shell reads it.
func shJoin(command string, args []string) string {
	parts := []string{shQuote(command)}
	for _, a := range args {
		parts = append(parts, shQuote(a))
	}
	return strings.Join(parts, " ")
}
