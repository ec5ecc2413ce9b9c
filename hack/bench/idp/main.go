// Command idp prepares the warm token cache that `make bench` measures: it
// starts an in-process OpenID Connect provider (plugin/idptest) on loopback,
// logs in once with `latchkey get-token`, playing the browser itself, and
// stops the provider. A cached call makes no network request, so the cache
// stays usable for the token lifetime (one hour) with the provider gone.
//
//	idp warm -latchkey BIN -dir DIR
//	idp browse URL
//
// warm prints on stdout the get-token arguments that hit the warm entry, one
// per line. browse follows URL (the authorization request) to the redirect,
// as a browser whose user is already logged in would; warm passes
// "<this program> browse" as --browser-command.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/latchkey/latchkey/plugin/idptest"
)

// timeout bounds the whole login.
const timeout = 60 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: idp warm -latchkey BIN -dir DIR | idp browse URL")
		return 2
	}
	var err error
	switch args[0] {
	case "warm":
		err = warm(ctx, args[1:], stdout, stderr)
	case "browse":
		if len(args) != 2 {
			err = errors.New("usage: idp browse URL")
			break
		}
		err = idptest.Browse(ctx, nil, args[1])
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "idp: %v\n", err)
		return 1
	}
	return 0
}

// warm logs in once against a fresh provider and prints the arguments of a
// cached call.
func warm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("latchkey", "bin/latchkey", "latchkey binary")
	dir := fs.String("dir", "", "token cache directory to warm (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("warm: -dir is required")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("warm: find own path: %w", err)
	}
	if strings.ContainsAny(self, " \t") || strings.ContainsAny(*dir, " \t") {
		// --browser-command is split on spaces, and the arguments printed
		// on stdout are too.
		return fmt.Errorf("warm: paths must not contain spaces: %q, %q", self, *dir)
	}

	idp := idptest.NewServer(idptest.Config{})
	defer idp.Close()
	tokenArgs := []string{
		"get-token",
		"--oidc-issuer-url=" + idp.URL,
		"--oidc-client-id=" + idptest.DefaultClientID,
		"--token-cache-dir=" + *dir,
	}
	cmd := exec.CommandContext(ctx, *bin, append(tokenArgs, "--browser-command="+self+" browse")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	cmd.Env = append(os.Environ(), "KUBERNETES_EXEC_INFO=")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("warm: %s get-token: %w", *bin, err)
	}
	if !bytes.Contains(out.Bytes(), []byte(`"token":`)) {
		return fmt.Errorf("warm: get-token printed no token")
	}
	c := idp.Counts()
	fmt.Fprintf(stderr, "idp: login made %d discovery, %d JWKS, %d authorize, %d code exchange requests\n",
		c.Discovery, c.JWKS, c.Authorize, c.CodeExchange)
	for _, a := range tokenArgs {
		fmt.Fprintln(stdout, a)
	}
	return nil
}
