package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientauthv1beta1 "k8s.io/client-go/pkg/apis/clientauthentication/v1beta1"
)

// strictDecode decodes like client-go does, and fails on fields its types
// do not know.
func strictDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if d.More() {
		t.Fatalf("more than one JSON document in %s", b)
	}
}

func TestWriteExecCredentialDecodesWithClientGo(t *testing.T) {
	exp := time.Date(2026, 11, 21, 13, 4, 5, 999_000_000, time.UTC)
	for _, v := range []string{APIVersionV1, APIVersionV1beta1} {
		t.Run(v, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteExecCredential(&buf, &ExecCredential{APIVersion: v, Kind: "ExecCredential"}, "tok.en", exp); err != nil {
				t.Fatal(err)
			}
			out := buf.Bytes()
			if !bytes.HasSuffix(out, []byte("}\n")) || bytes.Count(out, []byte("\n")) != 1 {
				t.Errorf("output is not one JSON line: %q", out)
			}
			var token string
			var got time.Time
			switch v {
			case APIVersionV1:
				var c clientauthv1.ExecCredential
				strictDecode(t, out, &c)
				if c.APIVersion != v || c.Kind != "ExecCredential" {
					t.Errorf("apiVersion/kind = %s/%s", c.APIVersion, c.Kind)
				}
				token, got = c.Status.Token, c.Status.ExpirationTimestamp.Time
			case APIVersionV1beta1:
				var c clientauthv1beta1.ExecCredential
				strictDecode(t, out, &c)
				if c.APIVersion != v || c.Kind != "ExecCredential" {
					t.Errorf("apiVersion/kind = %s/%s", c.APIVersion, c.Kind)
				}
				token, got = c.Status.Token, c.Status.ExpirationTimestamp.Time
			}
			if token != "tok.en" {
				t.Errorf("token = %q", token)
			}
			// Truncated, never rounded up past the real expiry.
			if want := exp.Truncate(time.Second); !got.Equal(want) {
				t.Errorf("expirationTimestamp = %v, want %v", got, want)
			}
		})
	}
}

func TestParseExecInfo(t *testing.T) {
	tests := []struct {
		in      string
		want    *ExecCredential
		wantErr bool
	}{
		{"", &ExecCredential{APIVersion: APIVersionV1beta1, Kind: "ExecCredential"}, false},
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`,
			&ExecCredential{APIVersion: APIVersionV1, Kind: "ExecCredential", Spec: ExecCredentialSpec{Interactive: true}}, false},
		{`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"cluster":{"server":"https://k","config":{"audience":"x"}}}}`,
			&ExecCredential{APIVersion: APIVersionV1beta1, Kind: "ExecCredential", Spec: ExecCredentialSpec{Cluster: &Cluster{Server: "https://k", Config: json.RawMessage(`{"audience":"x"}`)}}}, false},
		{`{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}`, nil, true},
		{`{"kind":"ExecCredential"}`, nil, true},
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"Pod"}`, nil, true},
		{`{"apiVersion":`, nil, true},
		{`null`, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseExecInfo(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrExecInfo) {
				t.Errorf("ParseExecInfo(%q) error = %v, want ErrExecInfo", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseExecInfo(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseExecInfo(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// FuzzParseExecInfo: any KUBERNETES_EXEC_INFO either fails with ErrExecInfo
// or yields a request whose answer client-go accepts.
func FuzzParseExecInfo(f *testing.F) {
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`)
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"cluster":{"server":"https://k","certificate-authority-data":"AAAA","config":{"a":1}}}}`)
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":"yes"}}`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, s string) {
		req, err := ParseExecInfo(s)
		if err != nil {
			if !errors.Is(err, ErrExecInfo) {
				t.Fatalf("error %v is not ErrExecInfo", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteExecCredential(&buf, req, "t", time.Unix(1e9, 0)); err != nil {
			t.Fatal(err)
		}
		var c clientauthv1.ExecCredential
		if err := json.Unmarshal(buf.Bytes(), &c); err != nil || !strings.HasPrefix(c.APIVersion, "client.authentication.k8s.io/") {
			t.Fatalf("answer %s does not decode: %v", buf.Bytes(), err)
		}
	})
}
