package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubeStarts starts etcd and kube-apiserver (issuer unreachable) and
// checks RBAC was applied. It runs when E2E_KUBE_APISERVER is set.
func TestKubeStarts(t *testing.T) {
	apiserver := os.Getenv("E2E_KUBE_APISERVER")
	if apiserver == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("E2E_KUBE_APISERVER is not set (run hack/e2e/tools.sh)")
		}
		t.Skip("E2E_KUBE_APISERVER is not set (run hack/e2e/tools.sh)")
	}
	etcd, err := LookBin("E2E_ETCD", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := LookBin("E2E_KUBECTL", "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k := StartKube(t, KubeOptions{EtcdBin: etcd, APIServerBin: apiserver, KubectlBin: kubectl, Dir: dir, PKI: p,
		Issuer: "https://127.0.0.1:1/dex", Audiences: []string{"a"}, Group: "g"})
	t.Logf("etcd + kube-apiserver ready and RBAC applied in %v", time.Since(start).Round(time.Millisecond))
	out, err := k.Admin(t.Context(), "get", "clusterrolebinding", ViewerRole, "-o", "jsonpath={.subjects[0].name}")
	if err != nil || strings.TrimSpace(string(out)) != "oidc:g" {
		t.Errorf("binding subject = %q, %v", out, err)
	}
}
