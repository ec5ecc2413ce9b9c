package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true,"Interactive":false}}`)
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1","KIND":"x","kind":"ExecCredential","spec":null,"status":{}}`)
	f.Fuzz(func(t *testing.T, s string) {
		// The reflection-free scan decodes what json.Unmarshal decodes.
		if c, ok := scanExecInfo(s); ok {
			var ref ExecCredential
			if err := json.Unmarshal([]byte(s), &ref); err != nil {
				t.Fatalf("scanExecInfo took %q, json.Unmarshal refuses it: %v", s, err)
			}
			if diff := cmp.Diff(ref, c); diff != "" {
				t.Fatalf("scanExecInfo(%q) (-json.Unmarshal +scan):\n%s", s, diff)
			}
		}
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

// TestScanExecInfoTakesClientGoRequests: requests as client-go's types
// encode them take the reflection-free path unless they carry cluster
// information.
func TestScanExecInfoTakesClientGoRequests(t *testing.T) {
	for _, interactive := range []bool{false, true} {
		v1, err := json.Marshal(clientauthv1.ExecCredential{
			TypeMeta: metav1.TypeMeta{APIVersion: APIVersionV1, Kind: "ExecCredential"},
			Spec:     clientauthv1.ExecCredentialSpec{Interactive: interactive},
		})
		if err != nil {
			t.Fatal(err)
		}
		v1beta1, err := json.Marshal(clientauthv1beta1.ExecCredential{
			TypeMeta: metav1.TypeMeta{APIVersion: APIVersionV1beta1, Kind: "ExecCredential"},
			Spec:     clientauthv1beta1.ExecCredentialSpec{Interactive: interactive},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range [][]byte{v1, v1beta1} {
			c, ok := scanExecInfo(string(req))
			if !ok || c.Spec.Interactive != interactive || c.Kind != "ExecCredential" {
				t.Errorf("scanExecInfo(%s) = %+v, %v", req, c, ok)
			}
		}
	}
	withCluster, err := json.Marshal(clientauthv1.ExecCredential{
		TypeMeta: metav1.TypeMeta{APIVersion: APIVersionV1, Kind: "ExecCredential"},
		Spec:     clientauthv1.ExecCredentialSpec{Cluster: &clientauthv1.Cluster{Server: "https://k"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := scanExecInfo(string(withCluster)); ok {
		t.Errorf("scanExecInfo took cluster information, which it does not decode: %s", withCluster)
	}
	if req, err := ParseExecInfo(string(withCluster)); err != nil || req.Spec.Cluster == nil || req.Spec.Cluster.Server != "https://k" {
		t.Errorf("ParseExecInfo(%s) = %+v, %v; want the cluster", withCluster, req, err)
	}
}

// marshalExecCredential is what WriteExecCredential writes, through
// encoding/json's reflection: the reference for its hand-written encoding.
func marshalExecCredential(req *ExecCredential, token string, expiry time.Time) ([]byte, error) {
	out := ExecCredential{APIVersion: req.APIVersion, Kind: "ExecCredential", Status: &ExecCredentialStatus{Token: token}}
	if !expiry.IsZero() {
		t := expiry.UTC().Truncate(time.Second)
		out.Status.ExpirationTimestamp = &t
	}
	b, err := json.Marshal(out)
	return append(b, '\n'), err
}

// FuzzWriteExecCredential: the answer is byte for byte what json.Marshal
// makes of the same ExecCredential, for any apiVersion, token and expiry,
// and it fails exactly when json.Marshal does.
func FuzzWriteExecCredential(f *testing.F) {
	f.Add(APIVersionV1, benchToken, int64(1_795_000_000), int64(999_999_999))
	f.Add(APIVersionV1beta1, "", int64(0), int64(0))
	f.Add(APIVersionV1, "a\"b\\c\n\t\x00<>&\u2028\xff\x7f é", int64(-62135596800), int64(1))
	f.Add("v\x01", "tok", int64(253402300800), int64(0)) // 10000-01-01
	f.Add("", "tok", int64(-62135596801), int64(0))      // 0000-12-31
	f.Add("", "tok", int64(-62167219201), int64(0))      // year -1
	f.Fuzz(func(t *testing.T, apiVersion, token string, sec, nsec int64) {
		var exp time.Time
		if sec != 0 || nsec != 0 {
			exp = time.Unix(sec, nsec)
		}
		req := &ExecCredential{APIVersion: apiVersion}
		want, wantErr := marshalExecCredential(req, token, exp)
		var buf bytes.Buffer
		err := WriteExecCredential(&buf, req, token, exp)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, json.Marshal's %v", err, wantErr)
		}
		if err != nil {
			if buf.Len() != 0 {
				t.Errorf("wrote %q before failing", buf.Bytes())
			}
			return
		}
		if got := buf.Bytes(); !bytes.Equal(got, want) {
			t.Errorf("wrote\n%q\njson.Marshal gives\n%q", got, want)
		}
	})
}
