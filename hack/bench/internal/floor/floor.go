// Package floor is the body of the benchmark baselines hack/bench/floor and
// hack/bench/floor-nohttp: the least a cached credential plugin must do, that
// is read one small file and print an ExecCredential built from it.
package floor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// entry holds the fields of a latchkey cache entry that the floor reads.
type entry struct {
	IDToken       string    `json:"id_token"`
	IDTokenExpiry time.Time `json:"id_token_expiry"`
}

// execCredential is the shape of a client.authentication.k8s.io
// ExecCredential response.
type execCredential struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		ExpirationTimestamp time.Time `json:"expirationTimestamp"`
		Token               string    `json:"token"`
	} `json:"status"`
}

// Run reads the JSON file named by args[0] and prints an ExecCredential with
// its id_token on stdout. It returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: floor FILE")
		return 2
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "floor: %v\n", err)
		return 1
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		fmt.Fprintf(stderr, "floor: decode %s: %v\n", args[0], err)
		return 1
	}
	var c execCredential
	c.APIVersion = "client.authentication.k8s.io/v1beta1"
	c.Kind = "ExecCredential"
	c.Status.Token = e.IDToken
	c.Status.ExpirationTimestamp = e.IDTokenExpiry.UTC().Truncate(time.Second)
	out, err := json.Marshal(c)
	if err != nil {
		fmt.Fprintf(stderr, "floor: encode: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		fmt.Fprintf(stderr, "floor: write: %v\n", err)
		return 1
	}
	return 0
}
