// Command floor is the start-up baseline of `make bench`: it reads one small
// file (a token cache entry) and prints an ExecCredential, and it links
// net/http, as any single binary that can also refresh a token must.
// Cached `latchkey get-token` is measured against it.
//
//	floor FILE
package main

import (
	"os"

	// Linked for its package initialization and size, not used.
	_ "net/http"

	"github.com/latchkey/latchkey/hack/bench/internal/floor"
)

func main() {
	os.Exit(floor.Run(os.Args[1:], os.Stdout, os.Stderr))
}
