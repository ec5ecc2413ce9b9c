package plugin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A flytectl configuration as flytectl's docs and `flytectl config init`
// write it, with sections latchkey skips.
const flytectlYAML = `# flytectl config
admin:
  # gRPC endpoint
  endpoint: dns:///flyte.example.com:443
  insecure: false
  authType: ClientSecret
  clientId: flytepropeller
  clientSecretLocation: "/etc/secrets/client_secret"   # mounted
  scopes:
    - all
    - 'offline'
  audience: https://flyte.example.com/api
  deviceFlowConfig:
    refreshTime: 5m
  command: ["latchkey", "token", "--flyte-config"]
logger:
  show-source: true
  level: 0
storage:
  type: minio
  stow:
    config:
      endpoint: http://localhost:30084
`

func TestParseFlytectlConfig(t *testing.T) {
	c, err := parseFlytectlConfig(flytectlYAML)
	if err != nil {
		t.Fatal(err)
	}
	want := &flytectlConfig{Endpoint: "dns:///flyte.example.com:443", AuthType: "ClientSecret", ClientID: "flytepropeller",
		ClientSecretLocation: "/etc/secrets/client_secret", Scopes: []string{"all", "offline"}, Audience: "https://flyte.example.com/api"}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
	for doc, want := range map[string]*flytectlConfig{
		"admin:\n  endpoint: localhost:30080\n  insecure: true\n  scopes: [all, \"x y\"]\n": {Endpoint: "localhost:30080", Insecure: true, Scopes: []string{"all", "x y"}},
		"admin:\n    endpoint: 'dns:///a:1'\n    clientSecretEnvVar: FLYTE_SECRET\n":        {Endpoint: "dns:///a:1", ClientSecretEnvVar: "FLYTE_SECRET"},
		"logger:\n  endpoint: nope\n": {},
	} {
		c, err := parseFlytectlConfig(doc)
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("%q (-want +got):\n%s", doc, diff)
		}
	}
	for _, bad := range []string{"admin:\n  endpoint: *alias\n", "admin:\n  insecure: maybe\n", "admin:\n  endpoint: \"open\n", "admin:\n  endpoint |\n"} {
		if _, err := parseFlytectlConfig(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestApplyFlyteConfig: --flyte-config takes the endpoint, insecure and the
// ClientSecret settings from flytectl's file (FLYTECTL_CONFIG when no file
// is named), and flags win over it.
func TestApplyFlyteConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(flytectlYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"FLYTECTL_CONFIG": file}[k] }
	o := Options{FlyteConfig: "-"}
	if err := o.ApplyFlyteConfig(getenv); err != nil {
		t.Fatal(err)
	}
	if ep := (flyteSource{&o}).endpoint(); ep != "https://flyte.example.com:443" || o.GrantType != GrantClientCredentials ||
		o.ClientID != "flytepropeller" || o.ClientSecretFile != "/etc/secrets/client_secret" || !cmp.Equal(o.ExtraScopes, []string{"all", "offline"}) ||
		o.AuthParams["audience"] != "https://flyte.example.com/api" || !o.UseAccessToken {
		t.Errorf("options from the file: %+v (endpoint %s)", o, flyteSource{&o}.endpoint())
	}
	// Flags win.
	o = Options{FlyteConfig: file, FlyteEndpoint: "http://localhost:30080", ClientID: "mine", ClientSecretEnv: "S", ExtraScopes: []string{"x"}}
	if err := o.ApplyFlyteConfig(getenv); err != nil {
		t.Fatal(err)
	}
	if o.FlyteEndpoint != "http://localhost:30080" || o.ClientID != "mine" || o.ClientSecretFile != "" || o.ClientSecretEnv != "S" || !cmp.Equal(o.ExtraScopes, []string{"x"}) {
		t.Errorf("flags lost to the file: %+v", o)
	}
	if err := (&Options{FlyteConfig: file + ".missing"}).ApplyFlyteConfig(getenv); err == nil {
		t.Error("a missing file was accepted")
	}
}

// TestFlyteEndpointForms: --flyte-endpoint takes what flytectl's
// admin.endpoint takes, plain http with --insecure (admin.insecure);
// latchkey used to turn dns:///host into https always.
func TestFlyteEndpointForms(t *testing.T) {
	for _, tt := range []struct {
		in       string
		insecure bool
		want     string
		warn     bool
	}{
		{"dns:///flyte.example.com:443", false, "https://flyte.example.com:443", false},
		{"flyte.example.com", false, "https://flyte.example.com", false},
		{"https://flyte.example.com/", false, "https://flyte.example.com", false},
		{"dns:///localhost:30080", true, "http://localhost:30080", false},
		{"localhost:30080", true, "http://localhost:30080", false},
		{"dns:///flyte.internal:81", true, "http://flyte.internal:81", true},
	} {
		o := Options{FlyteEndpoint: tt.in, Insecure: tt.insecure}
		if got := (flyteSource{&o}).endpoint(); got != tt.want {
			t.Errorf("%s (insecure %v) = %s, want %s", tt.in, tt.insecure, got, tt.want)
		}
		if err := o.Validate(); err != nil {
			t.Errorf("%s: %v", tt.in, err)
		}
		if w := o.InsecureWarning(); (w != "") != tt.warn {
			t.Errorf("%s: warning %q, want one: %v", tt.in, w, tt.warn)
		}
	}
}
