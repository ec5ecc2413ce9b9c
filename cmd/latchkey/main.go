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
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
