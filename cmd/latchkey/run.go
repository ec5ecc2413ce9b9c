package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/latchkey/latchkey/plugin"
)

// version is stamped at release time with -ldflags "-X main.version=...".
var version = ""

const usage = `latchkey: OpenID Connect credentials for kubectl and other tools

Usage:
  latchkey get-token --oidc-issuer-url=URL --oidc-client-id=ID [flags]
  latchkey version

Commands:
  get-token   print an ExecCredential for a kubeconfig exec stanza
  version     print the version

Run 'latchkey get-token --help' for its flags.
`

// run is the whole program but for process setup: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "get-token":
		return getToken(ctx, args[1:], getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "latchkey %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "latchkey: unknown command %q (see latchkey help)\n", args[0])
	return 2
}

const getTokenExamples = `
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
`

func getToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var o plugin.Options
	fs := flag.NewFlagSet("get-token", flag.ContinueOnError)
	o.RegisterFlags(fs)
	switch err := parseFlags(fs, args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stdout, "Usage: latchkey get-token --oidc-issuer-url=URL --oidc-client-id=ID [flags]\n\n"+
			"Prints an ExecCredential with a token from the cache, a refresh, or a browser login.\n\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprint(stdout, getTokenExamples)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "latchkey get-token: %v (see latchkey get-token --help)\n", err)
		return 2
	}
	log := newLogger(stderr, o.Verbose)
	req, err := plugin.ParseExecInfo(getenv(plugin.ExecInfoEnv))
	if err != nil {
		return fail(stderr, err)
	}
	if o.InsecureSkipTLSVerify {
		log.Warn("--insecure-skip-tls-verify is set: the provider's TLS certificate is NOT verified, anyone on the network path can steal your tokens")
	}
	c := &plugin.Client{Options: o, Logger: log, Getenv: getenv, Stderr: stderr, Interactive: isTerminal(stderr)}
	tok, err := c.Token(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	if err := plugin.WriteExecCredential(stdout, req, tok.Value, tok.Expiry); err != nil {
		return fail(stderr, err)
	}
	return 0
}

// fail prints err as one line and returns the exit code for it.
func fail(stderr io.Writer, err error) int {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintf(stderr, "latchkey: %s\n", msg)
	if errors.Is(err, plugin.ErrUsage) {
		return 2
	}
	return 1
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// newLogger returns a logger writing "latchkey: message key=value" lines to
// w: info and above, or debug too when verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(&lineHandler{mu: new(sync.Mutex), w: w, level: level})
}

// parseFlags parses args into fs without printing anything: errors come back
// as one line for the caller to print, and flag.ErrHelp for -h/--help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// isTerminal tells whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
