package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// KubeOptions configure etcd and kube-apiserver.
type KubeOptions struct {
	EtcdBin, APIServerBin, KubectlBin string
	Dir                               string
	PKI                               *PKI
	// Issuer, Audiences: the JWT authenticator (Dex's issuer, its client ids).
	Issuer    string
	Audiences []string
	// Group is bound to the ClusterRole ViewerRole (after the "oidc:" prefix).
	Group string
}

// ViewerRole is the ClusterRole bound to the OIDC group: get/list/watch of
// pods and namespaces, nothing else. (The aggregated view/edit roles stay
// empty without kube-controller-manager, so the suite makes its own.)
const ViewerRole = "latchkey-e2e-viewer"

// Kube is a running etcd + kube-apiserver.
type Kube struct {
	Server          string // https://127.0.0.1:port
	AdminKubeconfig string
	opts            KubeOptions
}

// StartKube starts etcd and kube-apiserver on loopback, waits for readiness,
// and binds ViewerRole to the group.
func StartKube(t testing.TB, o KubeOptions) *Kube {
	t.Helper()
	ctx := context.Background()
	etcdClient, etcdPeer := FreePort(t), FreePort(t)
	etcdURL := "http://" + Addr(etcdClient)
	etcd := StartProc(t, o.Dir, "etcd", o.EtcdBin, []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(o.Dir, "etcd-data"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=http://" + Addr(etcdPeer),
		"--initial-advertise-peer-urls=http://" + Addr(etcdPeer),
		"--initial-cluster=e2e=http://" + Addr(etcdPeer),
		"--listen-metrics-urls=http://" + Addr(FreePort(t)),
		"--log-level=warn",
	}, nil)
	if err := WaitFor(ctx, "etcd", etcd, 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, etcdURL+"/health")
	}); err != nil {
		t.Fatal(err)
	}

	authCfg := filepath.Join(o.Dir, "authentication-config.json")
	caPEM, err := os.ReadFile(o.PKI.CACert)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(AuthenticationConfig(o.Issuer, string(caPEM), o.Audiences), "", "  ")
	if err := os.WriteFile(authCfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	k := &Kube{Server: "https://" + Addr(port), opts: o}
	api := StartProc(t, o.Dir, "kube-apiserver", o.APIServerBin, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=10.96.0.1", // only published in the kubernetes Service; nothing binds it
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(o.Dir, "apiserver-certs"),
		"--tls-cert-file=" + o.PKI.ServingCert,
		"--tls-private-key-file=" + o.PKI.ServingKey,
		"--client-ca-file=" + o.PKI.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + o.PKI.SAPub,
		"--service-account-signing-key-file=" + o.PKI.SAKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=RBAC",
		"--authentication-config=" + authCfg,
		"--anonymous-auth=false",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--watch-cache=false",
		"--v=1",
	}, nil)
	admin, err := k.adminClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(ctx, "kube-apiserver", api, 120*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, admin, k.Server+"/readyz")
	}); err != nil {
		t.Fatal(err)
	}

	k.AdminKubeconfig = filepath.Join(o.Dir, "admin.kubeconfig")
	if err := os.WriteFile(k.AdminKubeconfig, AdminKubeconfig(k.Server, o.PKI), 0o600); err != nil {
		t.Fatal(err)
	}
	rbac := filepath.Join(o.Dir, "rbac.json")
	if err := os.WriteFile(rbac, RBAC(ViewerRole, "oidc:"+o.Group), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := k.Admin(ctx, "apply", "-f", rbac); err != nil {
		t.Fatalf("apply RBAC: %v\n%s", err, out)
	}
	return k
}

// Admin runs kubectl as the system:masters admin.
func (k *Kube) Admin(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, k.opts.KubectlBin, append([]string{"--kubeconfig=" + k.AdminKubeconfig}, args...)...)
	return cmd.CombinedOutput()
}

func (k *Kube) adminClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(k.opts.PKI.AdminCert, k.opts.PKI.AdminKey)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(k.opts.PKI.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

func httpOK(ctx context.Context, hc *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("%s: %s: %.500s", u, resp.Status, b.String())
	}
	return nil
}

// AuthenticationConfig is kube-apiserver's structured authentication
// configuration (--authentication-config) with one JWT authenticator: the
// equivalent of --oidc-issuer-url, --oidc-client-id, --oidc-ca-file,
// --oidc-username-claim=email, --oidc-groups-claim=groups and the "oidc:"
// prefixes, except that it accepts several audiences (one per Dex client).
func AuthenticationConfig(issuer, caPEM string, audiences []string) map[string]any {
	return map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"jwt": []map[string]any{{
			"issuer": map[string]any{
				"url":                  issuer,
				"certificateAuthority": caPEM,
				"audiences":            audiences,
				"audienceMatchPolicy":  "MatchAny",
			},
			"claimMappings": map[string]any{
				"username": map[string]any{"claim": "email", "prefix": "oidc:"},
				"groups":   map[string]any{"claim": "groups", "prefix": "oidc:"},
			},
		}},
	}
}

// RBAC returns a List with the ClusterRole role (read pods and namespaces)
// and its binding to group.
func RBAC(role, group string) []byte {
	list := map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items": []any{
			map[string]any{
				"apiVersion": "rbac.authorization.k8s.io/v1",
				"kind":       "ClusterRole",
				"metadata":   map[string]any{"name": role},
				"rules": []any{map[string]any{
					"apiGroups": []string{""},
					"resources": []string{"pods", "namespaces"},
					"verbs":     []string{"get", "list", "watch"},
				}},
			},
			map[string]any{
				"apiVersion": "rbac.authorization.k8s.io/v1",
				"kind":       "ClusterRoleBinding",
				"metadata":   map[string]any{"name": role},
				"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
				"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}},
			},
		},
	}
	b, _ := json.MarshalIndent(list, "", "  ")
	return b
}
