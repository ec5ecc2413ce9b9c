package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// The oidc-provider tests run latchkey against a second real OpenID provider,
// panva's oidc-provider (npm, OpenID Certified), configured close to its
// strict defaults (hack/e2e/oidc-provider/server.mjs): PKCE required, RFC 9207
// iss, refresh tokens rotated on every use and a replayed one revoking the
// grant, offline_access only with prompt=consent, a consent page after the
// login. It serves https with the suite's throwaway CA and records every
// request it answers, which the tests count (there is no proxy in front).

// opEnv is what TestOIDCProvider's steps share.
type opEnv struct {
	dir              string
	latchkey         string
	chromedp, httpDr string
	chromium         string
	pki              *harness.PKI
	op               *harness.OIDCProvider
	ttl              time.Duration
	verbose          bool
}

// startOIDCProvider installs the npm packages (once) and starts oidc-provider
// with the suite's PKI in dir.
func startOIDCProvider(t *testing.T, dir string, pki *harness.PKI, ttl time.Duration) *harness.OIDCProvider {
	t.Helper()
	node := need(t, "E2E_NODE", "node")
	npm := need(t, "E2E_NPM", "npm")
	done := phase(t, "npm ci (oidc-provider)")
	what, err := harness.NPMInstall(npm, node)
	if err != nil {
		t.Fatal(err)
	}
	done()
	t.Logf("oidc-provider packages: %s", what)
	done = phase(t, "start oidc-provider")
	op := harness.StartOIDCProvider(t, harness.OIDCProviderOptions{Node: node, Dir: dir, PKI: pki, TokenTTL: ttl})
	done()
	t.Logf("oidc-provider issuer %s, log %s", op.Issuer, op.Log())
	return op
}

func setupOP(t *testing.T) *opEnv {
	e := &opEnv{dir: t.TempDir(), verbose: os.Getenv("E2E_VERBOSE") != ""}
	e.latchkey = need(t, "LATCHKEY_BIN")
	e.chromium = need(t, "E2E_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
	e.ttl = 20 * time.Second
	if v := os.Getenv("E2E_ID_TOKEN_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 11*time.Second {
			t.Fatalf("E2E_ID_TOKEN_TTL=%q: want a duration of at least 11s (latchkey refreshes with 10 s left)", v)
		}
		e.ttl = d.Round(time.Second)
	}
	done := phase(t, "build browser drivers, PKI")
	bin := filepath.Join(e.dir, "bin")
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/browser-chromedp", "./cmd/browser-http")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build drivers: %v\n%s", err, out)
	}
	e.chromedp, e.httpDr = filepath.Join(bin, "browser-chromedp"), filepath.Join(bin, "browser-http")
	var err error
	if e.pki, err = harness.NewPKI(filepath.Join(e.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	done()
	e.op = startOIDCProvider(t, e.dir, e.pki, e.ttl)
	return e
}

// opClient is one latchkey configuration with its own cache and browser
// record.
type opClient struct {
	e          *opEnv
	clientID   string
	cacheDir   string
	browserLog string
	args       []string
	env        []string
}

type opClientOpts struct {
	clientID string // default harness.OPPublicClient
	secret   string
	chromium bool // the Chromium driver, else browser-http
	extra    []string
}

func (e *opEnv) client(t *testing.T, name string, o opClientOpts) *opClient {
	t.Helper()
	if o.clientID == "" {
		o.clientID = harness.OPPublicClient
	}
	dir := filepath.Join(e.dir, "clients", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &opClient{e: e, clientID: o.clientID, cacheDir: filepath.Join(dir, "cache"), browserLog: filepath.Join(dir, "browser-runs.log")}
	driver := e.httpDr
	if o.chromium {
		driver = e.chromedp
	}
	c.args = []string{
		"get-token",
		"--oidc-issuer-url=" + e.op.Issuer,
		"--oidc-client-id=" + o.clientID,
		"--oidc-extra-scope=email,groups,offline_access",
		// oidc-provider issues a refresh token for offline_access only when
		// the authorization request has prompt=consent (OIDC Core §11).
		// latchkey learns that at the first login without it and asks with
		// it from the next login on (the offline_access step); these
		// clients ask at once, so that their first login has a refresh
		// token.
		"--oidc-auth-request-extra-params=prompt=consent",
		"--certificate-authority=" + e.pki.CACert,
		"--token-cache-dir=" + c.cacheDir,
		"--browser-command=" + driver,
		"--authentication-timeout-sec=90",
	}
	if o.secret != "" {
		c.args = append(c.args, "--oidc-client-secret="+o.secret)
	}
	if e.verbose {
		c.args = append(c.args, "-v")
	}
	c.args = append(c.args, o.extra...)
	c.env = []string{
		"KUBERNETES_EXEC_INFO=" + execInfoNonInteractive,
		"E2E_BROWSER_LOG=" + c.browserLog,
		"E2E_LOGIN_USER=" + e2eUser.Email,
		"E2E_LOGIN_PASSWORD=" + e2eUser.Password,
		"E2E_LOGIN_CA=" + e.pki.CACert,
		"E2E_CHROMIUM=" + e.chromium,
	}
	return c
}

// getToken runs latchkey get-token with the client's flags and extra ones,
// and returns the ExecCredential's token and expiry.
func (c *opClient) getToken(t *testing.T, extra ...string) (string, time.Time) {
	t.Helper()
	out := runLatchkey(t, c.e.latchkey, append(slices.Clone(c.args), extra...), "", c.env...)
	return decodeExecCredential(t, out)
}

func (c *opClient) browserRuns(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(c.browserLog)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	// latchkey gives the browser its login link, never the authorization URL:
	// the state would be in the browser's command line (issue 15.7).
	for line := range strings.Lines(string(b)) {
		if !strings.HasSuffix(line, " link\n") {
			t.Errorf("the browser was started with an authorization URL, not latchkey's login link: %q", line)
		}
	}
	return strings.Count(string(b), "\n")
}

// entry returns the token fields of the client's only cache entry.
func (c *opClient) entry(t *testing.T) (idToken, accessToken, refreshToken string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.cacheDir, "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("cache entries in %s: %q (%v), want one", c.cacheDir, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		IDToken      string `json:"id_token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("cache entry: %v", err)
	}
	return e.IDToken, e.AccessToken, e.RefreshToken
}

// waitExpired sleeps until a token obtained before `after` has expired.
func (e *opEnv) waitExpired(t *testing.T, after time.Time) {
	t.Helper()
	waitTTL(t, after, e.ttl)
}

// checkIDToken checks what oidc-provider puts in an ID token of the code
// flow: iss, aud, sub (the login). With conformIdTokenClaims (the default)
// scope claims such as email are in userinfo only, so they are not checked.
func (e *opEnv) checkIDToken(t *testing.T, token, clientID string) map[string]any {
	t.Helper()
	c := claims(t, token)
	if c["iss"] != e.op.Issuer || c["aud"] != clientID || c["sub"] != e2eUser.Email {
		t.Errorf("ID token iss=%v aud=%v sub=%v, want %s %s %s", c["iss"], c["aud"], c["sub"], e.op.Issuer, clientID, e2eUser.Email)
	}
	return c
}

// postForm posts form to the provider's endpoint (relative to the issuer),
// with HTTP Basic credentials if user is set, and returns the status and the
// decoded JSON answer.
func (e *opEnv) postForm(t *testing.T, path string, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	return opPost(t, e.op, path, form, user, pass)
}

func opPost(t *testing.T, op *harness.OIDCProvider, path string, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, op.Issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := op.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.ContentLength != 0 {
		_ = json.NewDecoder(resp.Body).Decode(&m)
	}
	return resp.StatusCode, m
}

// TestOIDCProvider runs latchkey against oidc-provider, in order (the steps
// share tokens, so the first failure stops the run).
func TestOIDCProvider(t *testing.T) {
	e := setupOP(t)
	total := phase(t, "all oidc-provider steps")
	defer total()

	var (
		c1                       *opClient
		loginAt, refreshAt       time.Time
		loginID, loginRT         string // hashes: the login's ID token and refresh token
		refreshedID, refreshedRT string // the first refresh's
		refreshedRTRaw           string
		loginRTRaw               string
	)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"first login through Chromium (login and consent pages)", func(t *testing.T) {
			c1 = e.client(t, "chromium", opClientOpts{chromium: true})
			mark := e.op.Mark(t)
			start := time.Now()
			token, expiry := c1.getToken(t)
			loginAt = time.Now()
			t.Logf("first get-token (Chromium login and consent) took %v", loginAt.Sub(start).Round(time.Millisecond))
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want 1", got)
			}
			reqs := e.op.Since(t, mark)
			auth := browserAuth(reqs)
			if len(auth) != 1 {
				t.Fatalf("authorization requests = %+v, want 1", auth)
			}
			// Before the browser, latchkey sent the same request once
			// itself, to find a refused one at once.
			if chk := checks(reqs); len(chk) != 1 || chk[0].RedirectURI != auth[0].RedirectURI {
				t.Errorf("latchkey's checks of the authorization request = %+v, want one of the same request", chk)
			}
			a := auth[0]
			if a.Status != http.StatusSeeOther || a.ClientID != harness.OPPublicClient || a.Prompt != "consent" ||
				a.CodeChallengeMethod != "S256" || !strings.Contains(" "+a.Scope+" ", " offline_access ") ||
				!strings.HasPrefix(a.RedirectURI, "http://127.0.0.1:") || !strings.HasSuffix(a.RedirectURI, "/callback") {
				t.Errorf("authorization request = %+v; want client latchkey, prompt=consent, S256, offline_access, a loopback redirect on some port", a)
			}
			toks := harness.OPRoute(reqs, "token")
			if len(toks) != 1 {
				t.Fatalf("token requests = %+v, want one code exchange", toks)
			}
			x := toks[0]
			if x.GrantType != "authorization_code" || x.Status != http.StatusOK || x.ClientAuth != "none" || x.ClientID != harness.OPPublicClient {
				t.Fatalf("code exchange = %+v, want a successful authorization_code request of the public client", x)
			}
			if x.RefreshTokenHash == "" || !strings.Contains(" "+x.ResponseScope+" ", " offline_access ") {
				t.Fatalf("code exchange granted %q and no refresh token: the refresh steps need one", x.ResponseScope)
			}
			if harness.Hash(token) != x.IDTokenHash {
				t.Errorf("the ExecCredential's token is not the ID token of the code exchange")
			}
			c := e.checkIDToken(t, token, harness.OPPublicClient)
			if n, _ := c["nonce"].(string); n == "" {
				t.Errorf("ID token has no nonce")
			}
			if exp, _ := c["exp"].(float64); expiry.After(time.Unix(int64(exp), 0)) || !expiry.After(time.Now()) {
				t.Errorf("expirationTimestamp %v: want in the future and not after the ID token's exp %v", expiry, time.Unix(int64(exp), 0))
			}
			id, _, rt := c1.entry(t)
			if harness.Hash(id) != x.IDTokenHash || harness.Hash(rt) != x.RefreshTokenHash {
				t.Errorf("cache entry does not hold the ID token and refresh token of the code exchange")
			}
			loginID, loginRT, loginRTRaw = x.IDTokenHash, x.RefreshTokenHash, rt
		}},
		{"second call is served from the cache: no request to the provider, no browser", func(t *testing.T) {
			mark := e.op.Mark(t)
			token, _ := c1.getToken(t)
			if harness.Hash(token) != loginID {
				t.Errorf("the cached call returned another token than the login's ID token")
			}
			if reqs := e.op.Since(t, mark); len(reqs) != 0 {
				t.Errorf("requests to the provider = %+v, want none", reqs)
			}
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
		}},
		{"after expiry: one refresh, the rotated refresh token is saved", func(t *testing.T) {
			e.waitExpired(t, loginAt)
			mark := e.op.Mark(t)
			token, _ := c1.getToken(t)
			refreshAt = time.Now()
			reqs := e.op.Since(t, mark)
			// The entry keeps discovery and keys: the token request is all.
			if len(reqs) != 1 || reqs[0].Route != "token" || reqs[0].GrantType != "refresh_token" || reqs[0].Status != http.StatusOK {
				t.Fatalf("requests = %+v, want exactly one successful refresh", reqs)
			}
			r := reqs[0]
			if r.PresentedRefreshTokenHash != loginRT {
				t.Errorf("the refresh did not present the login's refresh token")
			}
			if r.RefreshTokenHash == "" || r.RefreshTokenHash == loginRT {
				t.Fatalf("the provider did not rotate the refresh token (rotateRefreshToken: true)")
			}
			if !strings.Contains(" "+r.Scope+" ", " offline_access ") {
				t.Errorf("refresh scope = %q, want the login's scopes resent", r.Scope)
			}
			if harness.Hash(token) != r.IDTokenHash || r.IDTokenHash == loginID {
				t.Errorf("the ExecCredential's token is not the refresh's new ID token")
			}
			e.checkIDToken(t, token, harness.OPPublicClient)
			id, _, rt := c1.entry(t)
			if harness.Hash(rt) != r.RefreshTokenHash || harness.Hash(id) != r.IDTokenHash {
				t.Errorf("cache entry does not hold the rotated refresh token and the new ID token")
			}
			if got := c1.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want still 1", got)
			}
			refreshedID, refreshedRT, refreshedRTRaw = r.IDTokenHash, r.RefreshTokenHash, rt
		}},
		{"parallel callers on an expired token: exactly one refresh", func(t *testing.T) {
			const n = 8
			e.waitExpired(t, refreshAt)
			mark := e.op.Mark(t)
			runs := make([]*latchkeyRun, n)
			for i := range n {
				runs[i] = startLatchkey(t, e.latchkey, c1.args, c1.env...)
			}
			for _, r := range runs {
				r.paste(t, "") // nothing to read: stdin at EOF, as kubectl leaves it
			}
			tokens := map[string]int{}
			for i, r := range runs {
				out := r.wait(t)
				if r.err != nil {
					t.Fatalf("caller %d: %v\n%s", i, r.err, r.stderrText())
				}
				tok, _ := decodeExecCredential(t, out)
				tokens[harness.Hash(tok)]++
			}
			reqs := e.op.Since(t, mark)
			toks := harness.OPRoute(reqs, "token")
			if len(toks) != 1 || toks[0].GrantType != "refresh_token" || toks[0].Status != http.StatusOK {
				t.Fatalf("token requests = %+v, want exactly one successful refresh for %d callers", toks, n)
			}
			if toks[0].PresentedRefreshTokenHash != refreshedRT {
				t.Errorf("the refresh did not present the refresh token saved by the previous refresh")
			}
			if len(tokens) != 1 || tokens[toks[0].IDTokenHash] != n {
				t.Errorf("the %d callers printed %d distinct tokens; want all the refresh's new ID token", n, len(tokens))
			}
			if a := browserAuth(reqs); len(a) != 0 || c1.browserRuns(t) != 1 {
				t.Errorf("authorization requests %d, browser runs %d; want 0 and still 1", len(a), c1.browserRuns(t))
			}
			_, _, rt := c1.entry(t)
			if harness.Hash(rt) != toks[0].RefreshTokenHash {
				t.Errorf("cache entry does not hold the refresh token rotated by the parallel refresh")
			}
			if refreshedID == toks[0].IDTokenHash {
				t.Errorf("the parallel refresh returned the previous ID token")
			}
		}},
		{"a replayed refresh token revokes the grant; latchkey logs in again once", func(t *testing.T) {
			// Not latchkey's doing: the test replays the login's (spent)
			// refresh token, as a thief would. oidc-provider refuses it and
			// revokes the whole grant, so the refresh token latchkey holds is
			// dead too. latchkey's next refresh is refused with invalid_grant
			// and it logs in again, exactly once.
			status, body := e.postForm(t, "/token", url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {loginRTRaw}, "client_id": {harness.OPPublicClient},
			}, "", "")
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("replayed refresh token: %d %v, want 400 invalid_grant", status, body)
			}
			if refreshedRTRaw == loginRTRaw {
				t.Fatal("test bug: the refresh tokens are the same")
			}
			_, _, held := c1.entry(t)
			mark := e.op.Mark(t)
			token, _ := c1.getToken(t, "--force-refresh")
			reqs := e.op.Since(t, mark)
			toks := harness.OPRoute(reqs, "token")
			if len(toks) != 2 {
				t.Fatalf("token requests = %+v, want a refused refresh and a code exchange", toks)
			}
			if r := toks[0]; r.GrantType != "refresh_token" || r.Status != http.StatusBadRequest ||
				!strings.HasPrefix(r.Error, "invalid_grant") || r.PresentedRefreshTokenHash != harness.Hash(held) {
				t.Errorf("first token request = %+v, want the held refresh token refused with invalid_grant", r)
			}
			if x := toks[1]; x.GrantType != "authorization_code" || x.Status != http.StatusOK || x.IDTokenHash != harness.Hash(token) {
				t.Errorf("second token request = %+v, want the code exchange of the new login, whose ID token is printed", x)
			}
			if got := c1.browserRuns(t); got != 2 {
				t.Errorf("browser runs = %d, want 2 (one new login)", got)
			}
			_, _, rt := c1.entry(t)
			if harness.Hash(rt) != toks[1].RefreshTokenHash || rt == "" {
				t.Errorf("cache entry does not hold the new login's refresh token")
			}
		}},
		{"logout revokes the refresh and access tokens at the revocation endpoint", func(t *testing.T) {
			_, at, rt := c1.entry(t)
			mark := e.op.Mark(t)
			args := slices.Clone(c1.args)
			args[0] = "logout"
			lk := startLatchkey(t, e.latchkey, args)
			out := lk.wait(t)
			if lk.err != nil || len(out) != 0 {
				t.Fatalf("latchkey logout: %v, stdout %q\n%s", lk.err, out, lk.stderrText())
			}
			lines := nonEmptyLines(lk.stderrText())
			if len(lines) != 1 || !strings.Contains(lines[0], "revoked") {
				t.Errorf("logout said %q, want one line saying what it revoked", lines)
			}
			t.Logf("logout said: %s", lines)
			revs := harness.OPRoute(e.op.Since(t, mark), "revocation")
			revoked := map[string]bool{}
			for _, r := range revs {
				if r.Status != http.StatusOK || r.ClientID != harness.OPPublicClient {
					t.Errorf("revocation request %+v, want 200 for the public client", r)
				}
				revoked[r.PresentedTokenHash] = true
			}
			if !revoked[harness.Hash(rt)] || !revoked[harness.Hash(at)] {
				t.Errorf("revocation requests %+v; want the refresh token and the access token revoked", revs)
			}
			if files, _ := filepath.Glob(filepath.Join(c1.cacheDir, "*.json")); len(files) != 0 {
				t.Errorf("cache entries after logout: %q", files)
			}
			status, body := e.postForm(t, "/token", url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {harness.OPPublicClient},
			}, "", "")
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Errorf("the revoked refresh token: %d %v, want 400 invalid_grant", status, body)
			}
		}},
		{"device code: no browser, the code typed at the verification page", func(t *testing.T) {
			c := e.client(t, "device", opClientOpts{})
			mark := e.op.Mark(t)
			lk := startLatchkey(t, e.latchkey, append(slices.Clone(c.args), "--grant-type=device-code", "--skip-open-browser"), c.env...)
			uri := lk.after(t, "visit this URL on any device:")
			code := lk.after(t, "and enter the code:")
			if want := e.op.Issuer + "/device"; uri != want {
				t.Errorf("verification URI = %q, want %q", uri, want)
			}
			done := phase(t, "device login at oidc-provider (user code, confirm, login, consent)")
			runHTTPDriver(t, e.httpDr, e.pki.CACert, "device", uri, "-user-code="+code)
			done()
			out := lk.wait(t)
			if lk.err != nil {
				t.Fatalf("latchkey get-token --grant-type=device-code: %v\n%s", lk.err, lk.stderrText())
			}
			token, _ := decodeExecCredential(t, out)
			e.checkIDToken(t, token, harness.OPPublicClient)
			reqs := e.op.Since(t, mark)
			if d := harness.OPRoute(reqs, "device_authorization"); len(d) != 1 || d[0].Status != http.StatusOK ||
				!strings.Contains(" "+d[0].Scope+" ", " offline_access ") {
				t.Errorf("device authorization requests = %+v, want one, with offline_access", d)
			}
			if a := browserAuth(reqs); len(a) != 0 || c.browserRuns(t) != 0 {
				t.Errorf("authorization requests %d, browser runs %d; want none", len(a), c.browserRuns(t))
			}
			var ok []harness.OPRequest
			for _, r := range harness.OPRoute(reqs, "token") {
				switch {
				case r.GrantType != deviceCodeGrant:
					t.Errorf("unexpected token request %+v", r)
				case r.Status == http.StatusOK:
					ok = append(ok, r)
				case !strings.HasPrefix(r.Error, "authorization_pending"):
					// slow_down: latchkey polled faster than 5 s (oidc-provider
					// sends no interval).
					t.Errorf("device poll answered %d %q, want authorization_pending or success", r.Status, r.Error)
				}
			}
			if len(ok) != 1 || ok[0].IDTokenHash != harness.Hash(token) || ok[0].RefreshTokenHash == "" {
				t.Fatalf("successful device polls = %+v, want one, with the printed ID token and a refresh token", ok)
			}
			_, _, rt := c.entry(t)
			if harness.Hash(rt) != ok[0].RefreshTokenHash {
				t.Errorf("cache entry does not hold the device login's refresh token")
			}

			// --force-refresh redeems it: one rotating refresh.
			mark = e.op.Mark(t)
			token2, _ := c.getToken(t, "--grant-type=device-code", "--skip-open-browser", "--force-refresh")
			toks := harness.OPRoute(e.op.Since(t, mark), "token")
			if len(toks) != 1 || toks[0].GrantType != "refresh_token" || toks[0].Status != http.StatusOK ||
				toks[0].PresentedRefreshTokenHash != ok[0].RefreshTokenHash || toks[0].IDTokenHash != harness.Hash(token2) {
				t.Errorf("token requests = %+v, want one refresh with the device login's refresh token", toks)
			}
		}},
		{"access-token mode: the opaque userinfo access token", func(t *testing.T) {
			// Without a resource indicator oidc-provider issues the opaque
			// access token for its userinfo endpoint, not a JWT for a
			// resource server: that is what this step checks (the next
			// steps ask for urn:example:api and get a JWT).
			c := e.client(t, "access", opClientOpts{extra: []string{"--oidc-use-access-token"}})
			mark := e.op.Mark(t)
			token, expiry := c.getToken(t)
			toks := harness.OPRoute(e.op.Since(t, mark), "token")
			if len(toks) != 1 || toks[0].Status != http.StatusOK || toks[0].AccessTokenHash != harness.Hash(token) {
				t.Fatalf("token requests = %+v; want one code exchange whose access token is printed", toks)
			}
			if toks[0].IDTokenHash == harness.Hash(token) || strings.Count(token, ".") == 2 {
				t.Errorf("the printed token looks like a JWT; want the opaque access token")
			}
			if !expiry.After(time.Now()) || expiry.After(time.Now().Add(e.ttl+time.Minute)) {
				t.Errorf("expirationTimestamp %v, want within the access token TTL %v", expiry, e.ttl)
			}
			// It is a live access token: userinfo answers with the account.
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.op.Issuer+"/me", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := e.op.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ui map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&ui)
			if resp.StatusCode != http.StatusOK || ui["sub"] != e2eUser.Email || ui["email"] != e2eUser.Email {
				t.Errorf("userinfo with the printed token: %s %v, want sub and email %s", resp.Status, ui, e2eUser.Email)
			}
			mark = e.op.Mark(t)
			if again, _ := c.getToken(t); again != token || len(e.op.Since(t, mark)) != 0 {
				t.Errorf("second call: another token or requests to the provider; want the cached access token")
			}
		}},
		{"claims parameter: email and groups in the ID token", func(t *testing.T) {
			// oidc-provider keeps scope claims out of the code flow's ID
			// token (conformIdTokenClaims) unless the claims parameter asks
			// for them: how a kube-apiserver would get email and groups.
			const req = `{"id_token":{"email":null,"groups":null}}`
			c := e.client(t, "claims", opClientOpts{extra: []string{"--oidc-auth-request-extra-params=claims=" + req}})
			mark := e.op.Mark(t)
			token, _ := c.getToken(t)
			reqs := e.op.Since(t, mark)
			if a := browserAuth(reqs); len(a) != 1 || a[0].Claims != req {
				t.Errorf("authorization requests = %+v, want one with claims=%s", a, req)
			}
			if x := harness.OPRoute(reqs, "token"); len(x) != 1 || x[0].IDTokenHash != harness.Hash(token) {
				t.Errorf("token requests = %+v, want one code exchange whose ID token is printed", x)
			}
			cl := e.checkIDToken(t, token, harness.OPPublicClient)
			var groups []string
			if gs, ok := cl["groups"].([]any); ok {
				for _, g := range gs {
					s, _ := g.(string)
					groups = append(groups, s)
				}
			}
			if cl["email"] != e2eUser.Email || !slices.Equal(groups, e2eUser.Groups) {
				t.Errorf("ID token email=%v groups=%v, want %s %v", cl["email"], cl["groups"], e2eUser.Email, e2eUser.Groups)
			}
		}},
		{"offline_access without prompt=consent: no refresh token, said; the next login asks with it and gets one", func(t *testing.T) {
			c := e.client(t, "consent", opClientOpts{})
			c.args = slices.DeleteFunc(c.args, func(a string) bool { return a == "--oidc-auth-request-extra-params=prompt=consent" })
			mark := e.op.Mark(t)
			lk := startLatchkey(t, e.latchkey, c.args, c.env...)
			lk.wait(t)
			if lk.err != nil || !strings.Contains(lk.stderrText(), "no refresh token") || !strings.Contains(lk.stderrText(), "prompt=consent") {
				t.Fatalf("first get-token: %v: %s; want success and a warning naming prompt=consent", lk.err, lk.stderrText())
			}
			reqs := e.op.Since(t, mark)
			if a := browserAuth(reqs); len(a) != 1 || a[0].Prompt != "" {
				t.Errorf("first authorization requests = %+v, want one without prompt", a)
			}
			if _, _, rt := c.entry(t); rt != "" {
				t.Fatal("a refresh token without consent: the provider's default changed")
			}
			// The next login (here forced) asks with prompt=consent.
			mark = e.op.Mark(t)
			c.getToken(t, "--force-refresh")
			reqs = e.op.Since(t, mark)
			if a := browserAuth(reqs); len(a) != 1 || a[0].Prompt != "consent" {
				t.Errorf("second authorization requests = %+v, want one with prompt=consent", a)
			}
			if _, _, rt := c.entry(t); rt == "" || c.browserRuns(t) != 2 {
				t.Errorf("after the second login: refresh token %v, %d browser runs; want one, 2 runs", rt != "", c.browserRuns(t))
			}
		}},
		{"a redirect URI the provider does not take: refused before the browser opens, with the fix", func(t *testing.T) {
			// oidc-provider compares the path exactly; an unregistered one
			// gets its error page, and latchkey used to wait out the
			// authentication timeout in silence.
			redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/elsewhere"
			c := e.client(t, "wrong-redirect", opClientOpts{extra: []string{"--oidc-redirect-url=" + redirect}})
			lk := startLatchkey(t, e.latchkey, c.args, c.env...)
			out := lk.wait(t)
			if lk.err == nil || len(out) != 0 || !strings.Contains(lk.stderrText(), "refused the authorization request") ||
				!strings.Contains(lk.stderrText(), "--oidc-redirect-url") || c.browserRuns(t) != 0 {
				t.Errorf("get-token: %v, %d browser runs: %s; want a refusal naming --oidc-redirect-url and no browser", lk.err, c.browserRuns(t), lk.stderrText())
			}
		}},
		{"one login for both tokens: latchkey token after get-token opens no browser", func(t *testing.T) {
			// Dex keeps one refresh token per user and client: two logins
			// for the two tokens spent each other's. One login serves both.
			c := e.client(t, "both", opClientOpts{})
			idt, _ := c.getToken(t)
			mark := e.op.Mark(t)
			out := runLatchkey(t, e.latchkey, append([]string{"token"}, c.args[1:]...), "", c.env...)
			_, at, _ := c.entry(t)
			if strings.TrimSpace(string(out)) != at || at == "" || c.browserRuns(t) != 1 || len(e.op.Since(t, mark)) != 0 {
				t.Errorf("latchkey token: %d browser runs, %d requests; want the login's access token from the cache", c.browserRuns(t), len(e.op.Since(t, mark)))
			}
			if again, _ := c.getToken(t); again != idt {
				t.Error("get-token after token printed another ID token")
			}
		}},
		{"access token for a resource: a JWT, before and after a refresh (RFC 8707 §2.2)", func(t *testing.T) {
			c := e.client(t, "resource", opClientOpts{extra: []string{"--oidc-use-access-token",
				"--oidc-auth-request-extra-params=resource=" + harness.OPResource, "--oidc-extra-scope=" + harness.OPResourceScope}})
			mark := e.op.Mark(t)
			token, _ := c.getToken(t)
			if cl := claims(t, token); cl["aud"] != harness.OPResource {
				t.Errorf("access token aud = %v, want %s (a JWT for the resource)", cl["aud"], harness.OPResource)
			}
			if toks := harness.OPRoute(e.op.Since(t, mark), "token"); len(toks) != 1 || toks[0].Resource != harness.OPResource {
				t.Errorf("code exchange = %+v, want it to name the resource", toks)
			}
			mark = e.op.Mark(t)
			token2, _ := c.getToken(t, "--force-refresh")
			toks := harness.OPRoute(e.op.Since(t, mark), "token")
			if len(toks) != 1 || toks[0].GrantType != "refresh_token" || toks[0].Resource != harness.OPResource || token2 == token {
				t.Fatalf("refresh = %+v, want one naming the resource", toks)
			}
			if cl := claims(t, token2); cl["aud"] != harness.OPResource {
				t.Errorf("refreshed access token aud = %v, want %s", cl["aud"], harness.OPResource)
			}

			// Logout: the refresh token is revoked; the JWT access token
			// cannot be (400 unsupported_token_type, RFC 7009 §2.2.1),
			// which is no failure.
			lk := startLatchkey(t, e.latchkey, append([]string{"logout"}, c.args[1:]...), c.env...)
			lk.wait(t)
			if lk.err != nil || !strings.Contains(lk.stderrText(), "revoked the refresh token") || !strings.Contains(lk.stderrText(), "does not revoke the access token") {
				t.Errorf("logout: %v: %s", lk.err, lk.stderrText())
			}
		}},
		{"client credentials: the client's own JWT, cached, one request for parallel callers, no browser", func(t *testing.T) {
			dir := filepath.Join(e.dir, "clients", "cc")
			secret := filepath.Join(dir, "secret")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(secret, []byte(harness.OPClientSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"get-token", "--grant-type=client-credentials", "--oidc-issuer-url=" + e.op.Issuer,
				"--oidc-client-id=" + harness.OPConfidentialClient, "--oidc-client-secret-file=" + secret, "--oidc-use-access-token",
				"--oidc-extra-scope=" + harness.OPResourceScope, "--oidc-auth-request-extra-params=resource=" + harness.OPResource,
				"--certificate-authority=" + e.pki.CACert, "--token-cache-dir=" + filepath.Join(dir, "cache"), "--browser-command=/bin/false"}
			env := []string{"KUBERNETES_EXEC_INFO=" + execInfoNonInteractive}
			mark := e.op.Mark(t)
			runs := make([]*latchkeyRun, 4)
			for i := range runs {
				runs[i] = startLatchkey(t, e.latchkey, args, env...)
			}
			var tokens []string
			for _, lk := range runs {
				out := lk.wait(t)
				if lk.err != nil {
					t.Fatalf("get-token: %v: %s", lk.err, lk.stderrText())
				}
				tok, _ := decodeExecCredential(t, out)
				tokens = append(tokens, tok)
			}
			reqs := e.op.Since(t, mark)
			toks := harness.OPRoute(reqs, "token")
			if len(toks) != 1 || toks[0].GrantType != "client_credentials" || toks[0].ClientAuth != "basic" || toks[0].Resource != harness.OPResource ||
				len(browserAuth(reqs)) != 0 {
				t.Fatalf("requests = %+v; want one client credentials token request for 4 callers, and no authorization", toks)
			}
			for _, tok := range tokens[1:] {
				if tok != tokens[0] {
					t.Error("the parallel callers printed different tokens")
				}
			}
			if cl := claims(t, tokens[0]); cl["client_id"] != harness.OPConfidentialClient || cl["aud"] != harness.OPResource {
				t.Errorf("token client_id=%v aud=%v, want %s %s", cl["client_id"], cl["aud"], harness.OPConfidentialClient, harness.OPResource)
			}
			mark = e.op.Mark(t)
			if again, _ := decodeExecCredential(t, runLatchkey(t, e.latchkey, args, "", env...)); again != tokens[0] || len(e.op.Since(t, mark)) != 0 {
				t.Error("a second call made requests or printed another token; want the cached one")
			}
		}},
		{"confidential client: secret in HTTP Basic at the code exchange and the refresh", func(t *testing.T) {
			c := e.client(t, "confidential", opClientOpts{clientID: harness.OPConfidentialClient, secret: harness.OPClientSecret, chromium: true})
			mark := e.op.Mark(t)
			token, _ := c.getToken(t)
			e.checkIDToken(t, token, harness.OPConfidentialClient)
			reqs := e.op.Since(t, mark)
			if a := browserAuth(reqs); len(a) != 1 || a[0].CodeChallengeMethod != "S256" {
				t.Errorf("authorization requests = %+v, want one with PKCE S256 (also for a confidential client)", a)
			}
			toks := harness.OPRoute(reqs, "token")
			if len(toks) != 1 || toks[0].Status != http.StatusOK || toks[0].ClientAuth != "basic" ||
				toks[0].ClientID != harness.OPConfidentialClient || toks[0].IDTokenHash != harness.Hash(token) || toks[0].RefreshTokenHash == "" {
				t.Fatalf("token requests = %+v; want one code exchange authenticated with HTTP Basic, with a refresh token", toks)
			}
			if got := c.browserRuns(t); got != 1 {
				t.Errorf("browser runs = %d, want 1", got)
			}
			mark = e.op.Mark(t)
			token2, _ := c.getToken(t, "--force-refresh")
			r := harness.OPRoute(e.op.Since(t, mark), "token")
			if len(r) != 1 || r[0].GrantType != "refresh_token" || r[0].Status != http.StatusOK || r[0].ClientAuth != "basic" ||
				r[0].PresentedRefreshTokenHash != toks[0].RefreshTokenHash || r[0].IDTokenHash != harness.Hash(token2) ||
				r[0].RefreshTokenHash == toks[0].RefreshTokenHash {
				t.Errorf("token requests = %+v; want one Basic-authenticated refresh of the login's refresh token, rotated", r)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("step %q failed; the later steps depend on it", s.name)
		}
	}
}

// runHTTPDriver runs browser-http in mode with the URL and returns its stdout.
func runHTTPDriver(t *testing.T, driver, ca, mode, u string, flags ...string) string {
	t.Helper()
	args := append([]string{"-mode=" + mode, "-ca=" + ca, "-user=" + e2eUser.Email, "-password=" + e2eUser.Password, "-timeout=90s"}, flags...)
	cmd := exec.CommandContext(t.Context(), driver, append(args, u)...)
	cmd.Env = append(os.Environ(), "E2E_BROWSER_LOG=")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser-http -mode=%s: %v\n%s", mode, err, stderr.String())
	}
	return stdout.String()
}

// TestOIDCProviderContract checks, without latchkey, the oidc-provider facts
// that the steps and the known interop gaps rest on: discovery, client
// credentials with a resource indicator giving a JWT access token for that
// audience, and the refusal to revoke such a token.
func TestOIDCProviderContract(t *testing.T) {
	if _, err := harness.LookBin("E2E_NODE", "node"); err != nil && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	dir := t.TempDir()
	pki, err := harness.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	op := startOIDCProvider(t, dir, pki, time.Minute)

	var meta map[string]any
	getJSON(t, op.Client, op.Issuer+"/.well-known/openid-configuration", &meta)
	for k, want := range map[string]any{
		"issuer": op.Issuer,
		"authorization_response_iss_parameter_supported": true,
		"claims_parameter_supported":                     true,
		"device_authorization_endpoint":                  op.Issuer + "/device/auth",
		"revocation_endpoint":                            op.Issuer + "/token/revocation",
		"token_endpoint":                                 op.Issuer + "/token",
	} {
		if meta[k] != want {
			t.Errorf("discovery %s = %v, want %v", k, meta[k], want)
		}
	}
	if m, _ := meta["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", meta["code_challenge_methods_supported"])
	}

	status, body := opPost(t, op, "/token", url.Values{
		"grant_type": {"client_credentials"}, "resource": {harness.OPResource}, "scope": {harness.OPResourceScope},
	}, harness.OPConfidentialClient, harness.OPClientSecret)
	at, _ := body["access_token"].(string)
	if status != http.StatusOK || at == "" {
		t.Fatalf("client credentials: %d %v", status, body)
	}
	c := claims(t, at)
	if c["aud"] != harness.OPResource || c["scope"] != harness.OPResourceScope || c["client_id"] != harness.OPConfidentialClient {
		t.Errorf("client credentials JWT aud=%v scope=%v client_id=%v, want %s %s %s",
			c["aud"], c["scope"], c["client_id"], harness.OPResource, harness.OPResourceScope, harness.OPConfidentialClient)
	}
	// A JWT access token cannot be revoked: what latchkey's logout meets
	// once it holds one.
	status, body = opPost(t, op, "/token/revocation", url.Values{"token": {at}, "token_type_hint": {"access_token"}},
		harness.OPConfidentialClient, harness.OPClientSecret)
	if status != http.StatusBadRequest || body["error"] != "unsupported_token_type" {
		t.Errorf("revoke the JWT access token: %d %v, want 400 unsupported_token_type", status, body)
	}
	// The public client may not use client credentials.
	status, body = opPost(t, op, "/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {harness.OPPublicClient}}, "", "")
	if status == http.StatusOK {
		t.Errorf("client credentials for the public client: %d %v, want refused", status, body)
	}
}

// browserAuth returns the authorization requests of reqs that the browser
// sent (not latchkey's check of the request, see checks).
func browserAuth(reqs []harness.OPRequest) []harness.OPRequest {
	var out []harness.OPRequest
	for _, r := range harness.OPRoute(reqs, "authorization") {
		if r.UserAgent != harness.CheckUserAgent {
			out = append(out, r)
		}
	}
	return out
}

// checks returns latchkey's checks of an authorization request among reqs.
func checks(reqs []harness.OPRequest) []harness.OPRequest {
	var out []harness.OPRequest
	for _, r := range harness.OPRoute(reqs, "authorization") {
		if r.UserAgent == harness.CheckUserAgent {
			out = append(out, r)
		}
	}
	return out
}
