package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
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
	var c ExecCredential
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrExecInfo, err)
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
func WriteExecCredential(w io.Writer, req *ExecCredential, token string, expiry time.Time) error {
	out := ExecCredential{
		APIVersion: req.APIVersion,
		Kind:       "ExecCredential",
		Status:     &ExecCredentialStatus{Token: token},
	}
	if !expiry.IsZero() {
		// metav1.Time is RFC 3339 with second precision; truncating keeps
		// client-go from using the token past its real expiry.
		t := expiry.UTC().Truncate(time.Second)
		out.Status.ExpirationTimestamp = &t
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode ExecCredential: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write ExecCredential: %w", err)
	}
	return nil
}
