// Command latchkey is a credential plugin for kubectl and any tool that runs
// an exec-credential command: it prints an OpenID Connect token obtained
// from a file cache, a refresh, or a browser login.
//
//	latchkey get-token --oidc-issuer-url=https://issuer --oidc-client-id=ID
//
// Stdout carries only the credential; everything for people goes to stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
