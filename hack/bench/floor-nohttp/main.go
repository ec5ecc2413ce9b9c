// Command floor-nohttp is hack/bench/floor without net/http: it reads one
// small file (a token cache entry) and prints an ExecCredential. `make bench`
// reports the ratio to it for the record; the target is against floor.
//
//	floor-nohttp FILE
package main

import (
	"os"

	"github.com/latchkey/latchkey/hack/bench/internal/floor"
)

func main() {
	os.Exit(floor.Run(os.Args[1:], os.Stdout, os.Stderr))
}
