package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// Exec info that client-go sends: interactive lets latchkey read stdin.
const (
	execInfoInteractive    = `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`
	execInfoNonInteractive = `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`
)

// deviceCodeGrant is the grant_type of the device access token request
// (RFC 8628 §3.4).
const deviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"

// headless is what TestHeadless's steps share: latchkey, the net/http
// driver, and Dex (with its approval screen on) behind the counting proxy.
type headless struct {
	dir      string
	latchkey string
	driver   string // browser-http
	pki      *harness.PKI
	dex      *harness.Dex
	verbose  bool
}

// TestHeadless runs latchkey's logins without a browser on its machine (issue
// 5, item 5) and its logout against Dex, as a process, the way a person at a
// terminal would: the device authorization grant (RFC 8628), whose user code
// and verification URI latchkey prints on stderr, and the keyboard login,
// whose authorization URL latchkey prints and whose final redirect URL (or
// code) the person pastes on stdin. A net/http driver plays the person's
// browser on another device: it enters the user code at Dex's device page,
// logs in, and grants access on Dex's approval screen. Neither kube-apiserver
// nor Chromium is needed.
func TestHeadless(t *testing.T) {
	h := &headless{dir: t.TempDir(), verbose: os.Getenv("E2E_VERBOSE") != ""}
	h.latchkey = need(t, "LATCHKEY_BIN")
	dexBin := need(t, "E2E_DEX", "dex")

	done := phase(t, "build browser-http, PKI, start Dex")
	cmd := exec.Command("go", "build", "-o", h.dir+"/", "./cmd/browser-http")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	h.driver = filepath.Join(h.dir, "browser-http")
	var err error
	if h.pki, err = harness.NewPKI(filepath.Join(h.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	// Tokens outlive the test, so a second call is served from the cache.
	h.dex = harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: h.dir, PKI: h.pki,
		IDTokenTTL: 10 * time.Minute, User: e2eUser, ApprovalScreen: true})
	done()

	// What the steps rely on: Dex advertises the device authorization
	// endpoint and no revocation endpoint.
	var meta map[string]any
	getJSON(t, caClient(t, h.pki.CACert), h.dex.Issuer+"/.well-known/openid-configuration", &meta)
	if got, want := meta["device_authorization_endpoint"], h.dex.Issuer+"/device/code"; got != want {
		t.Fatalf("device_authorization_endpoint = %v, want %s", got, want)
	}
	if ep, ok := meta["revocation_endpoint"]; ok {
		t.Fatalf("Dex now advertises revocation_endpoint %v: test logout's revocation instead", ep)
	}

	deviceCache := filepath.Join(h.dir, "device-cache")
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"device code typed at verification_uri", func(t *testing.T) { h.deviceTyped(t, deviceCache) }},
		{"device code: second call served from the cache", func(t *testing.T) { h.deviceCached(t, deviceCache) }},
		{"device code: the device login's refresh token works", func(t *testing.T) { h.deviceRefresh(t, deviceCache) }},
		{"device code: browser command opens verification_uri_complete", h.deviceBrowser},
		{"logout without a revocation endpoint", func(t *testing.T) { h.logout(t, deviceCache) }},
		{"keyboard: pasted redirect URL (default http://localhost)", h.keyboardURL},
		{"keyboard: pasted bare code (fixed --oidc-redirect-url)", h.keyboardBareCode},
		{"keyboard: pasted URL with a wrong state is refused", h.keyboardWrongState},
		{"keyboard: stdin is not read when interactive is false", h.keyboardNotInteractive},
		{"device code: a code nobody enters expires", func(t *testing.T) { h.deviceExpired(t, dexBin) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) && s.name == steps[0].name {
			t.Fatal("the device login failed: the cache and logout steps need it")
		}
	}
}

// args are get-token's (or logout's) flags for client with its cache in
// cacheDir, then extra.
func (h *headless) args(command, clientID, cacheDir string, extra ...string) []string {
	a := []string{
		command,
		"--oidc-issuer-url=" + h.dex.Issuer,
		"--oidc-client-id=" + clientID,
		"--oidc-extra-scope=email,groups,offline_access",
		"--certificate-authority=" + h.pki.CACert,
		"--token-cache-dir=" + cacheDir,
		"--authentication-timeout-sec=90",
	}
	if h.verbose {
		a = append(a, "-v")
	}
	return append(a, extra...)
}

// deviceTyped: latchkey prints the verification URI and the user code; the
// person types the code at the URI, logs in and grants access; latchkey,
// polling meanwhile, prints the ExecCredential with Dex's ID token.
func (h *headless) deviceTyped(t *testing.T, cacheDir string) {
	proxy := h.dex.Proxy
	mark, devBefore := proxy.Mark(), proxy.DeviceRequests()
	start := time.Now()
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.DeviceClient, cacheDir,
		"--grant-type=device-code", "--skip-open-browser"), "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	uri := lk.after(t, "visit this URL on any device:")
	code := lk.after(t, "and enter the code:")
	complete := lk.after(t, "or open this URL, which fills the code in for you")
	t.Logf("latchkey showed the user code after %v", time.Since(start).Round(time.Millisecond))
	if want := h.dex.Issuer + "/device"; uri != want {
		t.Errorf("verification URI = %q, want %q", uri, want)
	}
	if want := uri + "?user_code=" + url.QueryEscape(code); complete != want {
		t.Errorf("verification_uri_complete = %q, want %q", complete, want)
	}

	done := phase(t, "device login at Dex (user code, password, approval)")
	h.runDriver(t, "device", uri, "-user-code="+code)
	done()
	out := lk.wait(t)
	t.Logf("latchkey printed the ExecCredential %v after it started (it polls every 5 s)", time.Since(start).Round(time.Millisecond))
	if lk.err != nil {
		t.Fatalf("latchkey get-token --grant-type=device-code: %v\n%s", lk.err, lk.stderrText())
	}
	token, expiry := decodeExecCredential(t, out)
	h.checkIDToken(t, token, harness.DeviceClient)
	if !expiry.After(time.Now()) {
		t.Errorf("expirationTimestamp %v is not in the future", expiry)
	}

	if got := proxy.DeviceRequests() - devBefore; got != 1 {
		t.Errorf("device authorization requests = %d, want 1", got)
	}
	var ok []harness.TokenRequest
	for _, r := range proxy.Since(mark) {
		switch {
		case r.GrantType != deviceCodeGrant || r.ClientID != harness.DeviceClient:
			t.Errorf("unexpected token request %+v", r)
		case r.Status == 200:
			ok = append(ok, r)
		case r.Error != "authorization_pending":
			// slow_down would mean latchkey polled faster than Dex's interval.
			t.Errorf("device poll answered %d %q, want authorization_pending or success", r.Status, r.Error)
		}
	}
	if len(ok) != 1 {
		t.Fatalf("successful device polls = %d, want 1", len(ok))
	}
	if harness.Hash(token) != ok[0].IDTokenHash {
		t.Errorf("the ExecCredential's token is not the ID token of the device token response")
	}
	if ok[0].RefreshTokenHash == "" {
		t.Errorf("no refresh token for offline_access")
	}
}

// deviceCached: the next get-token is served from the cache, without a device
// request or a token request, and even with Dex unreachable.
func (h *headless) deviceCached(t *testing.T, cacheDir string) {
	proxy := h.dex.Proxy
	args := h.args("get-token", harness.DeviceClient, cacheDir, "--grant-type=device-code", "--skip-open-browser")
	mark, devBefore := proxy.Mark(), proxy.DeviceRequests()
	first := runLatchkey(t, h.latchkey, args, "", "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	token, _ := decodeExecCredential(t, first)
	if reqs := proxy.Since(mark); len(reqs) != 0 {
		t.Errorf("token requests = %+v, want none", reqs)
	}
	if got := proxy.DeviceRequests() - devBefore; got != 0 {
		t.Errorf("device authorization requests = %d, want 0", got)
	}

	proxy.Stop()
	defer func() {
		if err := proxy.Start(); err != nil {
			t.Fatal(err)
		}
	}()
	again := runLatchkey(t, h.latchkey, args, "", "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	if got, _ := decodeExecCredential(t, again); got != token {
		t.Errorf("with Dex down, the cached call returned another token")
	}
}

// deviceRefresh: --force-refresh redeems the refresh token the device login
// cached (one refresh, no device request), and Dex's new ID token carries
// the same claims.
func (h *headless) deviceRefresh(t *testing.T, cacheDir string) {
	proxy := h.dex.Proxy
	mark, devBefore := proxy.Mark(), proxy.DeviceRequests()
	out := runLatchkey(t, h.latchkey, h.args("get-token", harness.DeviceClient, cacheDir,
		"--grant-type=device-code", "--skip-open-browser", "--force-refresh"), "", "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	token, _ := decodeExecCredential(t, out)
	h.checkIDToken(t, token, harness.DeviceClient)
	reqs := proxy.Since(mark)
	if len(reqs) != 1 || reqs[0].GrantType != "refresh_token" || reqs[0].Status != 200 || reqs[0].IDTokenHash != harness.Hash(token) {
		t.Errorf("token requests = %+v, want one successful refresh whose ID token is the ExecCredential's", reqs)
	}
	if got := proxy.DeviceRequests() - devBefore; got != 0 {
		t.Errorf("device authorization requests = %d, want 0", got)
	}
}

// deviceBrowser: with --browser-command, latchkey also opens
// verification_uri_complete, where the code is filled in: the driver, given
// no user code, can only succeed there.
func (h *headless) deviceBrowser(t *testing.T) {
	log := filepath.Join(h.dir, "device-browser.log")
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.DeviceClient, filepath.Join(h.dir, "device-browser-cache"),
		"--grant-type=device-code", "--browser-command="+h.driver),
		"KUBERNETES_EXEC_INFO="+execInfoNonInteractive,
		"E2E_BROWSER_MODE=device", "E2E_BROWSER_LOG="+log, "E2E_LOGIN_CA="+h.pki.CACert,
		"E2E_LOGIN_USER="+e2eUser.Email, "E2E_LOGIN_PASSWORD="+e2eUser.Password)
	out := lk.wait(t)
	if lk.err != nil {
		t.Fatalf("latchkey get-token --grant-type=device-code --browser-command: %v\n%s", lk.err, lk.stderrText())
	}
	token, _ := decodeExecCredential(t, out)
	h.checkIDToken(t, token, harness.DeviceClient)
	if b, err := os.ReadFile(log); err != nil || strings.Count(string(b), "\n") != 1 {
		t.Errorf("browser runs = %q (%v), want one", b, err)
	}
	if !strings.Contains(lk.stderrText(), "browser-http: device login approved") {
		t.Errorf("the driver's output did not reach latchkey's stderr:\n%s", lk.stderrText())
	}
}

// deviceExpired: against a Dex whose device codes live 3 s (expires_in 3),
// a login nobody completes ends with one line saying the code expired, and
// nothing is cached.
func (h *headless) deviceExpired(t *testing.T, dexBin string) {
	dir := filepath.Join(h.dir, "dex-short-device-codes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dex := harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: dir, PKI: h.pki,
		IDTokenTTL: 10 * time.Minute, User: e2eUser, DeviceRequestsTTL: 3 * time.Second})
	cacheDir := filepath.Join(dir, "cache")
	args := h.args("get-token", harness.DeviceClient, cacheDir, "--grant-type=device-code", "--skip-open-browser")
	args[1] = "--oidc-issuer-url=" + dex.Issuer
	lk := startLatchkey(t, h.latchkey, args, "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	out := lk.wait(t)
	lines := nonEmptyLines(lk.stderrText())
	if lk.err == nil || len(out) != 0 {
		t.Fatalf("err=%v stdout=%q; want a failure and no ExecCredential", lk.err, out)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "latchkey: log in: ") || !strings.Contains(last, "expired") {
		t.Errorf("last line = %q, want one line saying the device code expired", last)
	} else {
		t.Logf("ended with: %s", last)
	}
	if got := dex.Proxy.DeviceRequests(); got != 1 {
		t.Errorf("device authorization requests = %d, want 1", got)
	}
	for _, r := range dex.Proxy.Tokens() {
		if r.Status == 200 {
			t.Errorf("a token request succeeded: %+v", r)
		}
	}
	if toks := cachedTokenFields(t, cacheDir); len(toks) != 0 {
		t.Errorf("tokens were cached: %v", toks)
	}
}

// logout: Dex has no revocation endpoint; latchkey says so, removes the entry
// and its lock, and exits 0. A second logout finds nothing.
func (h *headless) logout(t *testing.T, cacheDir string) {
	files := func() []string {
		t.Helper()
		ents, err := os.ReadDir(cacheDir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	before := files()
	if !slices.ContainsFunc(before, func(n string) bool { return strings.HasSuffix(n, ".json") }) {
		t.Fatalf("no cache entry to log out of: %q", before)
	}
	lk := startLatchkey(t, h.latchkey, h.args("logout", harness.DeviceClient, cacheDir))
	out := lk.wait(t)
	stderr := lk.stderrText()
	if lk.err != nil {
		t.Fatalf("latchkey logout: %v\n%s", lk.err, stderr)
	}
	if len(out) != 0 {
		t.Errorf("logout wrote to stdout: %q", out)
	}
	lines := nonEmptyLines(stderr)
	if len(lines) != 1 || !strings.Contains(lines[0], "no revocation endpoint") || !strings.Contains(lines[0], "removed "+cacheDir) {
		t.Errorf("logout said %q, want one line saying the provider has no revocation endpoint and what was removed", lines)
	}
	t.Logf("logout said: %s", lines)
	if after := files(); len(after) != 0 {
		t.Errorf("cache dir after logout = %q (before %q), want empty", after, before)
	}

	lk = startLatchkey(t, h.latchkey, h.args("logout", harness.DeviceClient, cacheDir))
	lk.wait(t)
	if lines := nonEmptyLines(lk.stderrText()); lk.err != nil || len(lines) != 1 || !strings.Contains(lines[0], "not logged in") {
		t.Errorf("second logout: err=%v, said %q; want exit 0 and one line saying not logged in", lk.err, lines)
	}
}

// keyboardURL: latchkey prints the authorization URL (PKCE, state, redirect
// http://localhost); the person logs in elsewhere and pastes the URL the
// browser ended on; latchkey redeems the code.
func (h *headless) keyboardURL(t *testing.T) {
	proxy := h.dex.Proxy
	mark := proxy.Mark()
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.KeyboardClient, filepath.Join(h.dir, "keyboard-cache"),
		"--grant-type=authcode-keyboard"), "KUBERNETES_EXEC_INFO="+execInfoInteractive)
	authURL := h.keyboardAuthURL(t, lk, "http://localhost")
	done := phase(t, "keyboard login at Dex (password, approval)")
	pasted := strings.TrimSpace(h.runDriver(t, "redirect", authURL.String()))
	done()
	p, err := url.Parse(pasted)
	if err != nil || p.Scheme != "http" || p.Host != "localhost" || p.Query().Get("code") == "" ||
		p.Query().Get("state") != authURL.Query().Get("state") {
		t.Fatalf("the redirect URL is not http://localhost with a code and the login's state")
	}
	lk.paste(t, pasted)
	out := lk.wait(t)
	if lk.err != nil {
		t.Fatalf("latchkey get-token --grant-type=authcode-keyboard: %v\n%s", lk.err, lk.stderrText())
	}
	token, _ := decodeExecCredential(t, out)
	h.checkIDToken(t, token, harness.KeyboardClient)
	reqs := proxy.Since(mark)
	if len(reqs) != 1 || reqs[0].GrantType != "authorization_code" || reqs[0].Status != 200 || reqs[0].IDTokenHash != harness.Hash(token) {
		t.Errorf("token requests = %+v, want one successful authorization_code exchange whose ID token is the ExecCredential's", reqs)
	}
}

// keyboardBareCode: with a fixed --oidc-redirect-url the person may paste
// just the code; PKCE still binds it to this login.
func (h *headless) keyboardBareCode(t *testing.T) {
	const redirect = "http://localhost:8000/callback"
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.KeyboardClient, filepath.Join(h.dir, "keyboard-code-cache"),
		"--grant-type=authcode-keyboard", "--oidc-redirect-url="+redirect), "KUBERNETES_EXEC_INFO="+execInfoInteractive)
	authURL := h.keyboardAuthURL(t, lk, redirect)
	p, err := url.Parse(strings.TrimSpace(h.runDriver(t, "redirect", authURL.String())))
	if err != nil || !strings.HasPrefix(p.String(), redirect+"?") {
		t.Fatalf("the driver did not stop at %s", redirect)
	}
	lk.paste(t, p.Query().Get("code"))
	out := lk.wait(t)
	if lk.err != nil {
		t.Fatalf("latchkey get-token --grant-type=authcode-keyboard: %v\n%s", lk.err, lk.stderrText())
	}
	token, _ := decodeExecCredential(t, out)
	h.checkIDToken(t, token, harness.KeyboardClient)
}

// keyboardWrongState: a pasted URL whose state is not this login's (an answer
// to another login, or forged) is refused with one line, and its code is
// never redeemed.
func (h *headless) keyboardWrongState(t *testing.T) {
	proxy := h.dex.Proxy
	mark := proxy.Mark()
	cacheDir := filepath.Join(h.dir, "keyboard-state-cache")
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.KeyboardClient, cacheDir,
		"--grant-type=authcode-keyboard"), "KUBERNETES_EXEC_INFO="+execInfoInteractive)
	authURL := h.keyboardAuthURL(t, lk, "http://localhost")
	p, err := url.Parse(strings.TrimSpace(h.runDriver(t, "redirect", authURL.String())))
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set("state", "not-"+q.Get("state"))
	p.RawQuery = q.Encode()
	lk.paste(t, p.String())
	out := lk.wait(t)
	if lk.err == nil {
		t.Fatalf("latchkey accepted a pasted URL with a wrong state; stdout %q", out)
	}
	if len(out) != 0 {
		t.Errorf("stdout = %q, want nothing", out)
	}
	// The prompt ends without a newline (a terminal echoes the person's
	// Enter); what follows the last prompt is the error.
	stderr := lk.stderrText()
	tail := stderr[strings.LastIndex(stderr, "latchkey: code or URL: ")+len("latchkey: code or URL: "):]
	if lines := nonEmptyLines(tail); len(lines) != 1 || !strings.HasPrefix(lines[0], "latchkey: ") || !strings.Contains(lines[0], "state") {
		t.Errorf("after the paste latchkey said %q, want one line about the state", lines)
	} else {
		t.Logf("refused: %s", lines[0])
	}
	if strings.Contains(stderr, q.Get("code")) {
		t.Errorf("the authorization code appears on stderr")
	}
	if reqs := proxy.Since(mark); len(reqs) != 0 {
		t.Errorf("token requests = %+v, want none (the code must not be redeemed)", reqs)
	}
	// latchkey may note the failed login in the entry (for its cool-down);
	// it must hold no token.
	if toks := cachedTokenFields(t, cacheDir); len(toks) != 0 {
		t.Errorf("tokens were cached after a refused paste: %v", toks)
	}
}

// keyboardNotInteractive: with interactive false latchkey must not read
// stdin: it fails at once with one line, without an authorization request.
func (h *headless) keyboardNotInteractive(t *testing.T) {
	proxy := h.dex.Proxy
	authBefore, mark := proxy.AuthRequests(), proxy.Mark()
	lk := startLatchkey(t, h.latchkey, h.args("get-token", harness.KeyboardClient, filepath.Join(h.dir, "keyboard-nonint-cache"),
		"--grant-type=authcode-keyboard"), "KUBERNETES_EXEC_INFO="+execInfoNonInteractive)
	lk.paste(t, "some-code") // there, but not to be read
	out := lk.wait(t)
	stderr := lk.stderrText()
	lines := nonEmptyLines(stderr)
	if lk.err == nil || len(out) != 0 || len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "latchkey: log in: ") ||
		!strings.Contains(lines[len(lines)-1], "terminal") {
		t.Errorf("err=%v stdout=%q stderr=%q; want a failure ending with one line about the missing terminal", lk.err, out, lines)
	}
	if strings.Contains(stderr, "open this URL") {
		t.Errorf("latchkey offered a login it cannot finish without stdin")
	}
	if proxy.AuthRequests() != authBefore || len(proxy.Since(mark)) != 0 {
		t.Errorf("requests reached Dex")
	}
}

// keyboardAuthURL reads the authorization URL latchkey prints and checks its
// redirect URI, PKCE and state.
func (h *headless) keyboardAuthURL(t *testing.T, lk *latchkeyRun, redirect string) *url.URL {
	t.Helper()
	s := lk.after(t, "open this URL in a browser on any device to log in:")
	u, err := url.Parse(s)
	if err != nil || !strings.HasPrefix(s, h.dex.Issuer+"/auth?") {
		t.Fatalf("authorization URL %q is not Dex's", s)
	}
	q := u.Query()
	if q.Get("redirect_uri") != redirect || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("state") == "" || q.Get("nonce") == "" || q.Get("response_type") != "code" {
		t.Errorf("authorization request: redirect_uri=%q code_challenge_method=%q, code_challenge, state, nonce set: %v %v %v; response_type=%q",
			q.Get("redirect_uri"), q.Get("code_challenge_method"), q.Get("code_challenge") != "", q.Get("state") != "", q.Get("nonce") != "", q.Get("response_type"))
	}
	return u
}

// checkIDToken checks the claims Dex put in the ID token for the static user.
func (h *headless) checkIDToken(t *testing.T, token, clientID string) {
	t.Helper()
	c := claims(t, token)
	if c["iss"] != h.dex.Issuer || c["aud"] != clientID || c["email"] != e2eUser.Email {
		t.Errorf("ID token iss=%v aud=%v email=%v, want %s %s %s", c["iss"], c["aud"], c["email"], h.dex.Issuer, clientID, e2eUser.Email)
	}
	var groups []string
	if gs, ok := c["groups"].([]any); ok {
		for _, g := range gs {
			s, _ := g.(string)
			groups = append(groups, s)
		}
	}
	if !slices.Equal(groups, e2eUser.Groups) {
		t.Errorf("ID token groups = %v, want %v", c["groups"], e2eUser.Groups)
	}
}

// runDriver runs browser-http in mode with the URL and returns its stdout.
func (h *headless) runDriver(t *testing.T, mode, u string, flags ...string) string {
	t.Helper()
	return runHTTPDriver(t, h.driver, h.pki.CACert, mode, u, flags...)
}

// latchkeyRun is a running latchkey process whose stderr lines the test
// reads as they come and whose stdin it writes.
type latchkeyRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
	lines chan string
	eof   chan struct{} // stderr read to the end
	done  chan struct{} // process ended
	err   error

	mu     sync.Mutex
	stderr strings.Builder
}

// startLatchkey starts latchkey with args and env added to the test's
// environment. It runs in its own session, without a controlling terminal,
// so everything it tells the person goes to stderr. It is killed when the
// test ends.
func startLatchkey(t *testing.T, bin string, args []string, env ...string) *latchkeyRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	r := &latchkeyRun{lines: make(chan string, 1000), eof: make(chan struct{}), done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, bin, args...)
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	r.cmd.Stdout = &r.out
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	r.cmd.Stderr = pw
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(r.eof)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default: // nobody is waiting for lines this late; stderrText has them
			}
		}
		// A last line without a newline (a prompt).
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		r.err = r.cmd.Wait()
		pw.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if t.Failed() {
			t.Logf("latchkey %s stderr:\n%s", args[0], r.stderrText())
		}
	})
	return r
}

// after waits for a stderr line containing marker and returns the next
// non-blank line, trimmed.
func (r *latchkeyRun) after(t *testing.T, marker string) string {
	t.Helper()
	seen := false
	timeout := time.After(time.Minute)
	for {
		select {
		case l := <-r.lines:
			switch {
			case !seen:
				seen = strings.Contains(l, marker)
			case strings.TrimSpace(l) != "":
				return strings.TrimSpace(l)
			}
		case <-r.eof:
			t.Fatalf("latchkey ended (%v) before printing %q and a line after it:\n%s", r.errWhenDone(), marker, r.stderrText())
		case <-timeout:
			t.Fatalf("latchkey did not print %q and a line after it within a minute:\n%s", marker, r.stderrText())
		}
	}
}

// paste writes s and a newline to latchkey's stdin, then closes it.
func (r *latchkeyRun) paste(t *testing.T, s string) {
	t.Helper()
	// A latchkey that has already ended (a waiter that found a fresh
	// token) reads nothing: its pipe is gone (EPIPE) or, once Wait is
	// done, closed.
	if _, err := io.WriteString(r.stdin, s+"\n"); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrClosed) {
		t.Fatal(err)
	}
	r.stdin.Close()
}

// wait waits for latchkey to end and returns its stdout; r.err is its exit.
func (r *latchkeyRun) wait(t *testing.T) []byte {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("latchkey did not end within 2 minutes:\n%s", r.stderrText())
	}
	<-r.eof
	return r.out.Bytes()
}

func (r *latchkeyRun) errWhenDone() error {
	select {
	case <-r.done:
		return r.err
	case <-time.After(5 * time.Second):
		return errors.New("still running")
	}
}

func (r *latchkeyRun) stderrText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// runLatchkey runs latchkey to the end with stdin and returns its stdout; it
// fails the test unless latchkey exits 0.
func runLatchkey(t *testing.T, bin string, args []string, stdin string, env ...string) []byte {
	t.Helper()
	lk := startLatchkey(t, bin, args, env...)
	lk.paste(t, stdin)
	out := lk.wait(t)
	if lk.err != nil {
		t.Fatalf("latchkey %s: %v\n%s", args[0], lk.err, lk.stderrText())
	}
	return out
}

// decodeExecCredential decodes latchkey's stdout: exactly one v1
// ExecCredential with a token.
func decodeExecCredential(t *testing.T, out []byte) (token string, expiry time.Time) {
	t.Helper()
	var ec struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     struct {
			Token               string    `json:"token"`
			ExpirationTimestamp time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(&ec); err != nil {
		t.Fatalf("latchkey stdout is not an ExecCredential: %v\n%q", err, out)
	}
	if dec.More() {
		t.Fatalf("latchkey stdout holds more than one JSON value: %q", out)
	}
	if ec.APIVersion != "client.authentication.k8s.io/v1" || ec.Kind != "ExecCredential" || ec.Status.Token == "" {
		t.Fatalf("ExecCredential apiVersion=%q kind=%q token set=%v", ec.APIVersion, ec.Kind, ec.Status.Token != "")
	}
	return ec.Status.Token, ec.Status.ExpirationTimestamp
}

// caClient is an HTTP client that trusts the CA in caFile.
func caClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// cachedTokenFields returns "file: field" for every token field set in the
// JSON files of cacheDir.
func cachedTokenFields(t *testing.T, cacheDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(cacheDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var set []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(cacheDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("cache file %s: %v", e.Name(), err)
		}
		for _, k := range []string{"id_token", "access_token", "refresh_token"} {
			if v, _ := m[k].(string); v != "" {
				set = append(set, e.Name()+": "+k)
			}
		}
	}
	return set
}

func nonEmptyLines(s string) []string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
