package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// TestDexKubeloginLoginFlags runs, against Dex and headless Chromium, the
// login flags a kubeconfig brings from kubelogin: --oidc-request-header on
// every request to the provider, the loopback redirect over https
// (--local-server-cert and --local-server-key, with the https redirect URI
// registered at Dex, which takes no unregistered https loopback), and
// --open-url-after-authentication, where the browser ends up.
func TestDexKubeloginLoginFlags(t *testing.T) {
	dexBin := need(t, "E2E_DEX", "dex")
	latchkey := need(t, "LATCHKEY_BIN")
	chromium := need(t, "E2E_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
	dir := t.TempDir()
	pki, err := harness.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	done := phase(t, "start Dex, build the browser driver")
	dex := harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: dir, PKI: pki, IDTokenTTL: time.Minute, User: e2eUser, RecordHeader: "X-E2e-Tenant"})
	driver := buildDriver(t, dir, "./cmd/browser-chromedp")
	done()

	after := dex.Issuer + "/.well-known/openid-configuration"
	blog := filepath.Join(dir, "browser.log")
	args := []string{
		"get-token",
		"--oidc-issuer-url=" + dex.Issuer,
		"--oidc-client-id=" + harness.TLSClient,
		"--oidc-extra-scope=email,groups",
		"--certificate-authority=" + pki.CACert,
		"--token-cache-dir=" + filepath.Join(dir, "cache"),
		"--browser-command=" + driver,
		"--authentication-timeout-sec=90",
		"--oidc-request-header=X-E2e-Tenant=t1",
		"--oidc-redirect-url=" + dex.TLSRedirect,
		"--local-server-cert=" + pki.ServingCert,
		"--local-server-key=" + pki.ServingKey,
		"--open-url-after-authentication=" + after,
	}
	env := []string{
		"KUBERNETES_EXEC_INFO=" + execInfoNonInteractive,
		"E2E_BROWSER_LOG=" + blog,
		"E2E_LOGIN_USER=" + e2eUser.Email,
		"E2E_LOGIN_PASSWORD=" + e2eUser.Password,
		"E2E_LOGIN_CA=" + pki.CACert,
		"E2E_CHROMIUM=" + chromium,
		"E2E_AFTER_URL=" + after,
	}
	lk := startLatchkey(t, latchkey, args, env...)
	out := lk.wait(t)
	if lk.err != nil {
		t.Fatalf("get-token: %v\n%s", lk.err, lk.stderrText())
	}
	token, _ := decodeExecCredential(t, out)
	if c := claims(t, token); c["aud"] != harness.TLSClient || c["email"] != e2eUser.Email {
		t.Errorf("ID token aud=%v email=%v, want %s %s", c["aud"], c["email"], harness.TLSClient, e2eUser.Email)
	}
	// The browser went through latchkey's https callback (Dex redirects
	// only to the registered https URI) and on to the after-login URL (the
	// driver succeeds only there).
	if b, err := os.ReadFile(blog); err != nil || strings.Count(string(b), "\n") != 1 {
		t.Errorf("browser runs: %q, %v; want one", b, err)
	}
	// latchkey's requests carried the header; the browser's did not.
	h := dex.Proxy.Headers()
	for _, path := range []string{"/dex/.well-known/openid-configuration", "/dex/token", "/dex/keys"} {
		if v := h[path]; len(v) == 0 || v[0] != "t1" {
			t.Errorf("requests to %s carried X-E2e-Tenant %q, want t1", path, v)
		}
	}
	// latchkey's own check of the authorization request carries it; the
	// browser's request, the last one, does not.
	if v := h["/dex/auth"]; len(v) == 0 || v[len(v)-1] != "" {
		t.Errorf("the browser's authorization request carried X-E2e-Tenant %q, want none", v)
	}
}

// buildDriver builds a browser driver (a package under ./cmd) into dir.
func buildDriver(t *testing.T, dir, pkg string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", dir+"/", pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return filepath.Join(dir, filepath.Base(pkg))
}
