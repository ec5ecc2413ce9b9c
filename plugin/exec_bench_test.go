package plugin

import (
	"io"
	"strings"
	"testing"
	"time"
)

// benchToken is the size of a typical RS256 ID token with a few claims.
var benchToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoIn0." + strings.Repeat("x", 600) + "." + strings.Repeat("y", 342)

// BenchmarkWriteExecCredential measures the encoding of the answer that a
// cached get-token prints.
func BenchmarkWriteExecCredential(b *testing.B) {
	req := &ExecCredential{APIVersion: APIVersionV1, Kind: "ExecCredential"}
	exp := time.Date(2026, 11, 21, 13, 4, 5, 999_000_000, time.UTC)
	b.SetBytes(int64(len(benchToken)))
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteExecCredential(io.Discard, req, benchToken, exp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseExecInfo measures the decoding of KUBERNETES_EXEC_INFO as
// client-go sets it: without and with cluster information.
func BenchmarkParseExecInfo(b *testing.B) {
	for _, bc := range []struct{ name, info string }{
		{"unset", ""},
		{"v1", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}`},
		{"v1-cluster", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{` +
			`"cluster":{"server":"https://127.0.0.1:6443","certificate-authority-data":"` + strings.Repeat("QUJD", 300) + `",` +
			`"config":{"audience":"kubernetes"}},"interactive":true}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseExecInfo(bc.info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
