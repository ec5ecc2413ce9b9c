// Package e2e is latchkey's real-world end-to-end suite: kubectl runs latchkey
// through a kubeconfig exec stanza against a kube-apiserver that trusts Dex,
// and latchkey logs in through headless Chromium or a net/http driver.
//
// Run it with `make e2e`, or by hand:
//
//	eval "$(hack/e2e/tools.sh)"
//	go build -o bin/latchkey ./cmd/latchkey
//	cd hack/e2e && LATCHKEY_BIN=$PWD/../../bin/latchkey go test -v -timeout 20m ./...
//
// Without LATCHKEY_BIN the suite skips, except under CI=true, where it fails.
package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

const parallelism = 20

// TestE2E runs the scenarios of issue 3 in order against one set of servers.
// The steps depend on each other (tokens age, Dex restarts), so the first
// failing step stops the run.
func TestE2E(t *testing.T) {
	e := setup(t)
	total := phase(t, "all scenarios")
	defer total()
	proxy := e.dex.Proxy

	var (
		c1, c5       *client   // the Chromium client, the parallel client
		c1At, c5At   time.Time // when their current token was obtained (at the latest)
		c1Token      string
		lastRefresh  string // hash of the refresh token Dex issued last to c1
		secretClient *client
	)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"1 first kubectl logs in through Chromium", func(t *testing.T) {
			c1 = e.newClient(t, "chromium", clientOpts{chromium: true})
			mark := proxy.Mark()
			r := c1.mustKubectl(t, "auth", "whoami", "-o", "json")
			c1At = time.Now()
			t.Logf("first kubectl auth whoami took %v", r.took.Round(time.Millisecond))
			who := parseWhoami(t, r)
			if want := "oidc:" + e2eUser.Email; who.Username != want {
				t.Errorf("username = %q, want %q", who.Username, want)
			}
			for _, g := range []string{"oidc:e2e-team", "oidc:e2e-other", "system:authenticated"} {
				if !slices.Contains(who.Groups, g) {
					t.Errorf("groups = %q, want %q among them", who.Groups, g)
				}
			}
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want 1", got)
			}
			reqs := proxy.Since(mark)
			if got := harness.CountGrant(reqs, "authorization_code"); got != 1 {
				t.Errorf("authorization_code requests = %d, want 1 (%+v)", got, reqs)
			}
			// RBAC: the bound ClusterRole allows reading pods and namespaces ...
			c1.mustKubectl(t, "get", "pods")
			c1.mustKubectl(t, "get", "namespaces")
			r = c1.mustKubectl(t, "auth", "can-i", "list", "pods")
			if strings.TrimSpace(r.stdout) != "yes" {
				t.Errorf("can-i list pods = %q, want yes", r.stdout)
			}
			// ... and nothing else.
			r = c1.kubectl(t, "get", "secrets")
			if r.err == nil || !strings.Contains(r.stderr, "forbidden") || !strings.Contains(r.stderr, `"oidc:e2e@example.com"`) {
				t.Errorf("get secrets: want forbidden for oidc:e2e@example.com, got %v", r)
			}
			r = c1.kubectl(t, "auth", "can-i", "delete", "pods")
			if strings.TrimSpace(r.stdout) != "no" {
				t.Errorf("can-i delete pods = %q, want no", r.stdout)
			}
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs after 5 more kubectl calls = %d, want 1", got)
			}
		}},
		{"2 second kubectl uses the cached token", func(t *testing.T) {
			mark := proxy.Mark()
			before := c1.cachedTokens(t)
			c1.mustKubectl(t, "auth", "whoami")
			var expiry time.Time
			c1Token, expiry = c1.execCredential(t)
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
			if reqs := proxy.Since(mark); len(reqs) != 0 {
				t.Errorf("token requests = %+v, want none", reqs)
			}
			if after := c1.cachedTokens(t); !cmp.Equal(before, after) {
				t.Errorf("cached tokens changed on a cached call: %s", cmp.Diff(before, after))
			}
			// The token is the ID token Dex issued at the login.
			var issued string
			for _, r := range proxy.Tokens() {
				if r.GrantType == "authorization_code" {
					issued = r.IDTokenHash
				}
			}
			if got := harness.Hash(c1Token); got != issued {
				t.Errorf("cached token is not the ID token of the login")
			}
			cl := claims(t, c1Token)
			if cl["email"] != e2eUser.Email || cl["aud"] != harness.PublicClient {
				t.Errorf("token claims email=%v aud=%v", cl["email"], cl["aud"])
			}
			// client-go runs the plugin again after expirationTimestamp: it
			// must not be later than the token's exp, nor already past.
			if exp, ok := cl["exp"].(float64); !ok || expiry.After(time.Unix(int64(exp), 0)) || !expiry.After(time.Now()) {
				t.Errorf("expirationTimestamp = %v, token exp = %v", expiry, cl["exp"])
			}
		}},
		{"5a 20 parallel kubectl on an empty cache open one browser", func(t *testing.T) {
			c5 = e.newClient(t, "parallel", clientOpts{chromium: true, clientID: harness.ParallelClient})
			mark := proxy.Mark()
			res := c5.parallel(t, parallelism, "get", "pods")
			c5At = time.Now()
			checkAll(t, res)
			if got := c5.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want 1", got)
			}
			if got := harness.CountGrant(proxy.Since(mark), "authorization_code"); got != 1 {
				t.Errorf("authorization_code requests = %d, want 1", got)
			}
		}},
		{"7a access-token mode", func(t *testing.T) {
			c := e.newClient(t, "access-token", clientOpts{accessToken: true, clientID: harness.AccessClient})
			mark := proxy.Mark()
			who := parseWhoami(t, c.mustKubectl(t, "auth", "whoami", "-o", "json"))
			if want := "oidc:" + e2eUser.Email; who.Username != want {
				t.Errorf("username = %q, want %q", who.Username, want)
			}
			tok, _ := c.execCredential(t)
			reqs := proxy.Since(mark)
			if len(reqs) != 1 || reqs[0].GrantType != "authorization_code" {
				t.Fatalf("token requests = %+v, want one authorization_code", reqs)
			}
			if got := harness.Hash(tok); got != reqs[0].AccessTokenHash {
				t.Errorf("token is not Dex's access token (is ID token: %v)", got == reqs[0].IDTokenHash)
			}
			if c.browserRuns(t) != 1 {
				t.Errorf("browser runs = %d, want 1", c.browserRuns(t))
			}
		}},
		{"7b confidential client with a secret", func(t *testing.T) {
			secretClient = e.newClient(t, "confidential", clientOpts{
				clientID: harness.ConfidentialClient, secret: harness.ConfidentialSecret, redirectURL: e.dex.ConfidentialRedirect,
			})
			mark := proxy.Mark()
			who := parseWhoami(t, secretClient.mustKubectl(t, "auth", "whoami", "-o", "json"))
			if want := "oidc:" + e2eUser.Email; who.Username != want {
				t.Errorf("username = %q, want %q", who.Username, want)
			}
			reqs := proxy.Since(mark)
			if len(reqs) != 1 || reqs[0].ClientID != harness.ConfidentialClient || reqs[0].Status != 200 {
				t.Errorf("token requests = %+v, want one by %s", reqs, harness.ConfidentialClient)
			}
			tok, _ := secretClient.execCredential(t)
			if aud := claims(t, tok)["aud"]; aud != harness.ConfidentialClient {
				t.Errorf("aud = %v, want %s", aud, harness.ConfidentialClient)
			}
		}},
		{"7c public client with a fixed redirect URI", func(t *testing.T) {
			c := e.newClient(t, "fixed-redirect", clientOpts{clientID: harness.FixedClient, redirectURL: e.dex.FixedRedirect})
			c.mustKubectl(t, "auth", "whoami")
			if c.browserRuns(t) != 1 {
				t.Errorf("browser runs = %d, want 1", c.browserRuns(t))
			}
		}},
		{"3 expired ID token is refreshed without a browser", func(t *testing.T) {
			e.waitExpired(t, c1At)
			mark := proxy.Mark()
			r := c1.mustKubectl(t, "get", "pods")
			c1At = time.Now()
			reqs := proxy.Since(mark)
			if got := harness.CountGrant(reqs, "refresh_token"); got != 1 || reqs[0].Status != 200 {
				t.Fatalf("token requests = %+v, want one successful refresh; kubectl stderr:\n%s", reqs, r.stderr)
			}
			lastRefresh = reqs[0].RefreshTokenHash
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
			tok, _ := c1.execCredential(t)
			if tok == c1Token || harness.Hash(tok) != reqs[0].IDTokenHash {
				t.Errorf("the token is not the refreshed ID token")
			}
		}},
		{"5b 20 parallel kubectl with an expired token refresh once", func(t *testing.T) {
			e.waitExpired(t, c5At)
			mark := proxy.Mark()
			res := c5.parallel(t, parallelism, "get", "pods")
			c5At = time.Now()
			checkAll(t, res)
			reqs := proxy.Since(mark)
			if got := harness.CountGrant(reqs, "refresh_token"); got != 1 {
				t.Errorf("refresh requests that reached Dex = %d, want 1 (%+v)", got, reqs)
			}
			if got := len(reqs); got != 1 {
				t.Errorf("token requests = %d, want 1", got)
			}
			if got := c5.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
		}},
		{"3b the rotated refresh token was persisted: the next refresh works", func(t *testing.T) {
			e.waitExpired(t, c1At)
			mark := proxy.Mark()
			r := c1.mustKubectl(t, "get", "pods")
			c1At = time.Now()
			reqs := proxy.Since(mark)
			if got := harness.CountGrant(reqs, "refresh_token"); got != 1 || reqs[0].Status != 200 {
				t.Fatalf("token requests = %+v, want one successful refresh; kubectl stderr:\n%s", reqs, r.stderr)
			}
			if reqs[0].RefreshTokenHash == lastRefresh || reqs[0].RefreshTokenHash == "" {
				t.Errorf("Dex did not rotate the refresh token (reuseInterval 0s)")
			}
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
		}},
		{"6 Dex unreachable with an expired token: clear error, no browser, cache intact", func(t *testing.T) {
			e.waitExpired(t, c5At)
			before := c5.cachedTokens(t)
			if len(before) == 0 {
				t.Fatal("empty cache")
			}
			proxy.Stop()
			r := c5.kubectl(t, "get", "pods")
			t.Logf("kubectl with Dex down failed after %v; stderr:\n%s", r.took.Round(time.Millisecond), r.stderr)
			if r.err == nil {
				t.Errorf("kubectl succeeded with Dex down and an expired token")
			}
			if !strings.Contains(r.stderr, "127.0.0.1") && !strings.Contains(strings.ToLower(r.stderr), "refused") {
				t.Errorf("stderr does not say which IdP failed or how")
			}
			if got := c5.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
			if after := c5.cachedTokens(t); !cmp.Equal(before, after) {
				t.Errorf("cached tokens changed while Dex was down (-before +after):\n%s", cmp.Diff(before, after))
			}
			if err := proxy.Start(); err != nil {
				t.Fatal(err)
			}
			mark := proxy.Mark()
			c5.mustKubectl(t, "get", "pods")
			c5At = time.Now()
			if got := harness.CountGrant(proxy.Since(mark), "refresh_token"); got != 1 {
				t.Errorf("refresh requests after Dex came back = %d, want 1", got)
			}
			if got := c5.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
		}},
		{"4 refresh token lost (Dex restarted, memory storage): exactly one browser login", func(t *testing.T) {
			e.dex.Restart()
			e.waitExpired(t, c1At)
			mark := proxy.Mark()
			r := c1.mustKubectl(t, "auth", "whoami", "-o", "json")
			if who := parseWhoami(t, r); who.Username != "oidc:"+e2eUser.Email {
				t.Errorf("username = %q", who.Username)
			}
			reqs := proxy.Since(mark)
			if got := harness.CountGrant(reqs, "refresh_token"); got != 1 || reqs[0].Status == 200 {
				t.Errorf("want one refused refresh, got %+v", reqs)
			}
			if got := harness.CountGrant(reqs, "authorization_code"); got != 1 {
				t.Errorf("authorization_code requests = %d, want 1", got)
			}
			if got := c1.browserRuns(t); got != 2 {
				t.Errorf("browser runs = %d, want 2 (one new login)", got)
			}
			c1.mustKubectl(t, "get", "pods")
			if got := c1.browserRuns(t); got != 2 {
				t.Errorf("browser runs after one more call = %d, want 2", got)
			}
		}},
	}
	for _, s := range steps {
		done := phase(t, s.name)
		ok := t.Run(s.name, s.run)
		done()
		if !ok {
			t.Fatalf("step %q failed; stopping (later steps depend on it)", s.name)
		}
	}
}

func checkAll(t *testing.T, res []result) {
	t.Helper()
	failed := 0
	var slowest time.Duration
	for i, r := range res {
		slowest = max(slowest, r.took)
		if r.err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("kubectl #%d: %v", i, r)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d kubectl runs failed", failed, len(res))
	}
	t.Logf("%d parallel kubectl runs: %d failed, slowest %v", len(res), failed, slowest.Round(time.Millisecond))
}
