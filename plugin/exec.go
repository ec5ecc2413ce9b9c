package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/latchkey/latchkey/internal/jsonscan"
)

// API versions of the client.authentication.k8s.io group that latchkey speaks.
const (
	APIVersionV1      = "client.authentication.k8s.io/v1"
	APIVersionV1beta1 = "client.authentication.k8s.io/v1beta1"
)

// ExecInfoEnv is the environment variable through which client-go passes an
// ExecCredential describing the request to the plugin.
const ExecInfoEnv = "KUBERNETES_EXEC_INFO"

// ErrExecInfo reports a KUBERNETES_EXEC_INFO value latchkey cannot use.
var ErrExecInfo = errors.New("invalid " + ExecInfoEnv)

// ExecCredential mirrors the few fields of client.authentication.k8s.io
// ExecCredential (v1 and v1beta1 share them) that a token plugin reads or
// writes. It is kept local so the binary does not link the Kubernetes type
// machinery, which would multiply its start-up time.
type ExecCredential struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Spec       ExecCredentialSpec    `json:"spec"`
	Status     *ExecCredentialStatus `json:"status,omitempty"`
}

// ExecCredentialSpec is the request part of an ExecCredential.
type ExecCredentialSpec struct {
	// Interactive is true when the plugin may interact with the person at
	// the terminal through stdin (interactiveMode and a terminal allow it).
	Interactive bool `json:"interactive"`
	// Cluster is present when the kubeconfig sets provideClusterInfo.
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Cluster is the cluster information client-go passes with
// provideClusterInfo: true.
type Cluster struct {
	Server                   string          `json:"server,omitempty"`
	TLSServerName            string          `json:"tls-server-name,omitempty"`
	CertificateAuthorityData []byte          `json:"certificate-authority-data,omitempty"`
	Config                   json.RawMessage `json:"config,omitempty"`
}

// ExecCredentialStatus is the response part of an ExecCredential.
type ExecCredentialStatus struct {
	// ExpirationTimestamp tells client-go when to run the plugin again.
	ExpirationTimestamp *time.Time `json:"expirationTimestamp,omitempty"`
	// Token is the bearer token client-go sends to the API server.
	Token string `json:"token,omitempty"`
}

// ParseExecInfo decodes the value of KUBERNETES_EXEC_INFO. An empty value
// (the plugin run by hand, or by a tool other than client-go) yields a
// v1beta1 request, the version that needs no interactiveMode.
func ParseExecInfo(s string) (*ExecCredential, error) {
	if s == "" {
		return &ExecCredential{APIVersion: APIVersionV1beta1, Kind: "ExecCredential"}, nil
	}
	c, ok := scanExecInfo(s)
	if !ok {
		// Cluster information, or anything unusual: encoding/json.
		c = ExecCredential{}
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrExecInfo, err)
		}
	}
	switch c.APIVersion {
	case APIVersionV1, APIVersionV1beta1:
	case "":
		return nil, fmt.Errorf("%w: apiVersion missing", ErrExecInfo)
	default:
		return nil, fmt.Errorf("%w: unsupported apiVersion %q (want %s or %s)", ErrExecInfo, c.APIVersion, APIVersionV1, APIVersionV1beta1)
	}
	if c.Kind != "ExecCredential" {
		return nil, fmt.Errorf("%w: kind %q, want ExecCredential", ErrExecInfo, c.Kind)
	}
	return &c, nil
}

// WriteExecCredential writes the ExecCredential answering req with token,
// valid until expiry, as one JSON document and a newline. The apiVersion is
// req's, as client-go requires.
//
// The bytes are those json.Marshal gives for the equivalent ExecCredential
// value, written without reflection: this runs on every cached kubectl call,
// where building encoding/json's type encoders costs more than the rest of
// the answer.
func WriteExecCredential(w io.Writer, req *ExecCredential, token string, expiry time.Time) error {
	b := make([]byte, 0, 160+len(token))
	b = append(b, `{"apiVersion":`...)
	b = appendJSONString(b, req.APIVersion)
	b = append(b, `,"kind":"ExecCredential","spec":{"interactive":false},"status":{`...)
	if !expiry.IsZero() {
		// metav1.Time is RFC 3339 with second precision; truncating keeps
		// client-go from using the token past its real expiry.
		t := expiry.UTC().Truncate(time.Second)
		if y := t.Year(); y < 0 || y > 9999 {
			// RFC 3339 has four-digit years; time.Time.MarshalJSON refuses too.
			return fmt.Errorf("encode ExecCredential: expiry year %d outside [0,9999]", y)
		}
		b = append(b, `"expirationTimestamp":"`...)
		b = t.AppendFormat(b, time.RFC3339)
		b = append(b, '"')
		if token != "" {
			b = append(b, ',')
		}
	}
	if token != "" {
		b = append(b, `"token":`...)
		b = appendJSONString(b, token)
	}
	b = append(b, "}}\n"...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write ExecCredential: %w", err)
	}
	return nil
}

// scanExecInfo decodes the request as client-go sends it without cluster
// information, as json.Unmarshal would but without its reflection (see
// package jsonscan), and reports false for anything else.
func scanExecInfo(s string) (ExecCredential, bool) {
	var c ExecCredential
	ok := jsonscan.Object([]byte(s), func(name string, v []byte) bool {
		var ok bool
		switch name {
		case "apiVersion":
			c.APIVersion, ok = jsonscan.String(v)
		case "kind":
			c.Kind, ok = jsonscan.String(v)
		case "spec":
			ok = jsonscan.Object(v, func(name string, v []byte) bool {
				var ok bool
				switch name {
				case "interactive":
					c.Spec.Interactive, ok = jsonscan.Bool(v)
				case "cluster":
					// Left to encoding/json.
				default:
					ok = !jsonscan.Folds(name, "interactive", "cluster")
				}
				return ok
			})
		case "status":
			// Never in a request; left to encoding/json.
		default:
			ok = !jsonscan.Folds(name, "apiVersion", "kind", "spec", "status")
		}
		return ok
	})
	return c, ok
}

// appendJSONString appends s as a JSON string, exactly as json.Marshal
// encodes it. Tokens are base64url and dots, so the loop is the whole work;
// anything that needs escaping goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
