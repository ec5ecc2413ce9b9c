// Command floor-https is hack/bench/floor with an HTTPS client linked in: it
// reads one small file (a token cache entry) and prints an ExecCredential,
// and only when given a second argument, which the benchmark never does, it
// GETs that URL. `make bench` reports latchkey's ratio to it for the record:
// it is the cost of carrying the code of an HTTPS client (net/http's client,
// crypto/tls, crypto/x509), which a blank import of net/http does not link.
//
//	floor-https FILE [URL]
package main

import (
	"net/http"
	"os"

	"github.com/latchkey/latchkey/hack/bench/internal/floor"
)

func main() {
	if len(os.Args) > 2 {
		resp, err := http.Get(os.Args[2])
		if err != nil {
			os.Stderr.WriteString("floor-https: " + err.Error() + "\n")
			os.Exit(1)
		}
		resp.Body.Close()
	}
	os.Exit(floor.Run(os.Args[1:min(2, len(os.Args))], os.Stdout, os.Stderr))
}
