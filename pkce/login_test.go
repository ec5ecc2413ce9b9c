package pkce

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// fakeIdP is an authorization server for tests (RFC 6749 §4.1, RFC 7636): its authorize endpoint records the
// request and redirects to redirect_uri with a code and the state; its token endpoint checks the code_verifier
// against the recorded S256 code_challenge.
type fakeIdP struct {
	t   *testing.T
	srv *httptest.Server

	// Behaviour; set before the login starts.
	iss         string // if set, the iss parameter of the authorization response
	authError   string // if set, the authorization response is this error
	authErrDesc string
	tokenError  string // if set, the token endpoint answers with this error

	mu        sync.Mutex
	authReqs  []url.Values
	tokenReqs []url.Values
	grants    map[string]url.Values // unused code -> its authorization request
	issued    []*issuedTokens
	received  []*issuedTokens // what exchange got back
}

type issuedTokens struct{ code, access, refresh, id string }

const testClientID = "latchkey-test"

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	f := &fakeIdP{t: t, grants: make(map[string]url.Values)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.HandleFunc("POST /token", f.token)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) request() Request {
	return Request{ClientID: testClientID, AuthURL: f.srv.URL + "/authorize", Scopes: []string{"openid", "email"}}
}

// exchange is a Login.Exchange: it sends form to the token endpoint as a public client, keeps the tokens of a
// successful response in f.received and returns an error response as an *oauth2.RetrieveError.
func (f *fakeIdP) exchange(ctx context.Context, form url.Values) error {
	form.Set("client_id", testClientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		ID      string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if body.Error != "" {
		return &oauth2.RetrieveError{Response: resp, ErrorCode: body.Error}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received = append(f.received, &issuedTokens{access: body.Access, refresh: body.Refresh, id: body.ID})
	return nil
}

// login returns a Login against f with OpenBrowser open.
func (f *fakeIdP) login(open func(context.Context, string) error) *Login {
	return &Login{Request: f.request(), Exchange: f.exchange, OpenBrowser: open}
}

func (f *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authReqs = append(f.authReqs, q)
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("redirect_uri") == "" {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	rq := redirect.Query()
	if f.authError != "" {
		rq.Set("error", f.authError)
		if f.authErrDesc != "" {
			rq.Set("error_description", f.authErrDesc)
		}
	} else {
		code := "code-" + rand.Text()
		f.grants[code] = q
		rq.Set("code", code)
	}
	rq.Set("state", q.Get("state"))
	if f.iss != "" {
		rq.Set("iss", f.iss)
	}
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (f *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenErr(w, "invalid_request")
		return
	}
	form := r.PostForm
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenReqs = append(f.tokenReqs, form)
	if f.tokenError != "" {
		tokenErr(w, f.tokenError)
		return
	}
	code := form.Get("code")
	auth, ok := f.grants[code]
	delete(f.grants, code) // codes are one-time (RFC 6749 §4.1.2)
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	switch {
	case form.Get("grant_type") != "authorization_code", form.Get("client_id") != testClientID:
		tokenErr(w, "invalid_request")
		return
	case !ok, form.Get("redirect_uri") != auth.Get("redirect_uri"),
		auth.Get("code_challenge_method") != "S256",
		base64.RawURLEncoding.EncodeToString(sum[:]) != auth.Get("code_challenge"):
		tokenErr(w, "invalid_grant")
		return
	}
	tok := &issuedTokens{code: code, access: "at-" + rand.Text(), refresh: "rt-" + rand.Text(), id: "idt-" + rand.Text()}
	f.issued = append(f.issued, tok)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok.access, "token_type": "Bearer", "expires_in": 3600,
		"refresh_token": tok.refresh, "id_token": tok.id,
	})
}

func tokenErr(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "test says " + code})
}

func (f *fakeIdP) requests() (auth, token []url.Values, issued []*issuedTokens) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authReqs, f.tokenReqs, f.issued
}

// page is what the test browser saw at the end of a navigation.
type page struct {
	url    *url.URL // the last URL requested (the callback, after the redirect)
	status int
	header http.Header
	body   string
}

// newBrowser returns an HTTP client that follows redirects like a browser, with its own connection pool.
func newBrowser(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// visit requests u with the test's context (not the login's, which ends when the login does).
func visit(t *testing.T, c *http.Client, method, u string) (*page, error) {
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &page{url: resp.Request.URL, status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

// authURLOf opens the login link that OpenBrowser was given, as a browser would but without following the redirect,
// and returns the authorization URL it leads to.
func authURLOf(t *testing.T, link string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	p, err := visit(t, c, http.MethodGet, link)
	if err != nil {
		t.Fatalf("open the login link: %v", err)
	}
	if p.status != http.StatusFound {
		t.Fatalf("login link: status %d, want 302", p.status)
	}
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatalf("login link: Location: %v", err)
	}
	return u
}

// browse is an OpenBrowser that follows the authorization URL synchronously and records the final page.
func browse(t *testing.T, got **page) func(context.Context, string) error {
	c := newBrowser(t)
	return func(_ context.Context, u string) error {
		p, err := visit(t, c, http.MethodGet, u)
		if err != nil {
			t.Errorf("browser: %v", err)
			return nil
		}
		*got = p
		return nil
	}
}

func runLogin(t *testing.T, l *Login) (*Request, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return l.Run(ctx)
}

// assertClosed checks that nothing listens on hostport any more.
func assertClosed(t *testing.T, hostport string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Run returned", hostport)
	}
}

func assertPageHeaders(t *testing.T, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
	}
}

func TestLoginSuccess(t *testing.T) {
	idp := newFakeIdP(t)
	var logs bytes.Buffer
	var firstAuth url.Values
	for i := range 2 {
		var got *page
		l := idp.login(browse(t, &got))
		l.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		res, err := runLogin(t, l)
		if err != nil {
			t.Fatalf("run %d: Run: %v", i, err)
		}
		auths, tokens, issued := idp.requests()
		if len(auths) != i+1 || len(tokens) != i+1 || len(issued) != i+1 {
			t.Fatalf("run %d: %d authorization, %d token requests, %d issued; want %d each", i, len(auths), len(tokens), len(issued), i+1)
		}
		auth, tok, iss := auths[i], tokens[i], issued[i]

		// Exchange got the tokens the token endpoint issued, which it only does for a matching S256 verifier.
		if rec := idp.received[i]; rec.access != iss.access || rec.refresh != iss.refresh || rec.id != iss.id {
			t.Errorf("run %d: Exchange did not get the issued tokens", i)
		}

		// The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).
		wantFixed := map[string]string{
			"response_type": "code", "client_id": testClientID, "scope": "openid email", "code_challenge_method": "S256",
		}
		for k, v := range wantFixed {
			if got := auth.Get(k); got != v {
				t.Errorf("run %d: authorization request %s = %q, want %q", i, k, got, v)
			}
		}
		verifier := tok.Get("code_verifier")
		if !verifierRE.MatchString(verifier) {
			t.Errorf("run %d: code_verifier %q is not 43 unreserved characters", i, verifier)
		}
		sum := sha256.Sum256([]byte(verifier))
		if got, want := auth.Get("code_challenge"), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
			t.Errorf("run %d: code_challenge %q, want S256 of the verifier %q", i, got, want)
		}
		if len(auth.Get("state")) < 22 || len(auth.Get("nonce")) < 22 {
			t.Errorf("run %d: state %q or nonce %q shorter than 128 bits", i, auth.Get("state"), auth.Get("nonce"))
		}
		if res.Nonce != auth.Get("nonce") || res.State != auth.Get("state") || res.RedirectURI != auth.Get("redirect_uri") {
			t.Errorf("run %d: returned request (nonce %q, state %q, redirect %q) is not the one sent", i, res.Nonce, res.State, res.RedirectURI)
		}

		// The redirect URI: 127.0.0.1, the bound port (the browser reached the callback there), /callback.
		redirect, err := url.Parse(auth.Get("redirect_uri"))
		if err != nil {
			t.Fatalf("run %d: redirect_uri: %v", i, err)
		}
		if redirect.Scheme != "http" || redirect.Hostname() != "127.0.0.1" || redirect.Path != "/callback" ||
			redirect.Port() == "" || redirect.Port() == "0" {
			t.Errorf("run %d: redirect_uri = %q, want http://127.0.0.1:<port>/callback", i, redirect)
		}
		if tok.Get("redirect_uri") != auth.Get("redirect_uri") {
			t.Errorf("run %d: token request redirect_uri %q, want %q", i, tok.Get("redirect_uri"), auth.Get("redirect_uri"))
		}

		// The browser got the success page from the callback.
		if got == nil {
			t.Fatalf("run %d: the browser saw no page", i)
		}
		if got.url.Host != redirect.Host || got.url.Path != "/callback" {
			t.Errorf("run %d: last page %s, want the callback at %s", i, got.url, redirect.Host)
		}
		if got.status != http.StatusOK || !strings.Contains(got.body, "close this tab") {
			t.Errorf("run %d: success page: status %d, body %q", i, got.status, got.body)
		}
		assertPageHeaders(t, got.header)
		assertClosed(t, redirect.Host)

		if i == 0 {
			firstAuth = auth
			continue
		}
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			if firstAuth.Get(k) == auth.Get(k) {
				t.Errorf("%s is the same in two logins", k)
			}
		}
		if redirect.Port() == "" {
			t.Error("no port")
		}
	}

	// Secrets never reach the log; the redirect URI does.
	auths, tokens, issued := idp.requests()
	log := logs.String()
	if !strings.Contains(log, auths[0].Get("redirect_uri")) {
		t.Errorf("log lacks the redirect URI:\n%s", log)
	}
	for i := range auths {
		for name, secret := range map[string]string{
			"state": auths[i].Get("state"), "nonce": auths[i].Get("nonce"), "code": tokens[i].Get("code"),
			"verifier": tokens[i].Get("code_verifier"), "access token": issued[i].access,
			"refresh token": issued[i].refresh, "ID token": issued[i].id,
		} {
			if strings.Contains(log, secret) {
				t.Errorf("log contains the %s", name)
			}
		}
	}
}

func TestLoginAuthError(t *testing.T) {
	idp := newFakeIdP(t)
	idp.authError = "access_denied"
	idp.authErrDesc = `The user said <script>alert("no")</script>`
	var got *page
	_, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, OpenBrowser: browse(t, &got)})
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		t.Fatalf("Run: %v, want *AuthError", err)
	}
	want := &AuthError{Code: "access_denied", Description: idp.authErrDesc}
	if diff := cmp.Diff(want, authErr); diff != "" {
		t.Errorf("AuthError (-want +got):\n%s", diff)
	}
	if got == nil {
		t.Fatal("the browser saw no page")
	}
	if got.status < 400 || !strings.Contains(got.body, "access_denied") ||
		!strings.Contains(got.body, "&lt;script&gt;") || strings.Contains(got.body, "<script>") {
		t.Errorf("failure page: status %d, body %q; want an error status, the code, the description HTML-escaped",
			got.status, got.body)
	}
	assertPageHeaders(t, got.header)
	if _, tokens, _ := idp.requests(); len(tokens) != 0 {
		t.Errorf("token endpoint called %d times after an error response", len(tokens))
	}
}

func TestLoginIssuer(t *testing.T) {
	const issuer = "https://issuer.example"
	for _, tc := range []struct {
		name       string
		sentIss    string
		issuer     string
		requireIss bool
		wantErr    error
	}{
		{name: "match", sentIss: issuer, issuer: issuer},
		{name: "match required", sentIss: issuer, issuer: issuer, requireIss: true},
		{name: "mismatch", sentIss: "https://evil.example", issuer: issuer, wantErr: ErrIssuerMismatch},
		{name: "missing required", issuer: issuer, requireIss: true, wantErr: ErrIssuerMismatch},
		{name: "missing optional", issuer: issuer},
		{name: "unchecked without Issuer", sentIss: "https://any.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newFakeIdP(t)
			idp.iss = tc.sentIss
			var got *page
			l := idp.login(browse(t, &got))
			l.Request.Issuer, l.Request.RequireIss = tc.issuer, tc.requireIss
			_, err := runLogin(t, l)
			_, tokens, _ := idp.requests()
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Run: %v, want %v", err, tc.wantErr)
				}
				if len(tokens) != 0 {
					t.Errorf("the code was exchanged despite the issuer check failing")
				}
				if got == nil || got.status < 400 || !strings.Contains(got.body, "issuer") {
					t.Errorf("browser page %+v, want a failure page about the issuer", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(idp.received) != 1 || len(tokens) != 1 {
				t.Errorf("no token after a good response")
			}
		})
	}
}

func TestLoginRequireIssWithoutIssuer(t *testing.T) {
	idp := newFakeIdP(t)
	called := false
	l := idp.login(func(context.Context, string) error { called = true; return nil })
	l.Request.RequireIss = true
	_, err := runLogin(t, l)
	if err == nil || called {
		t.Errorf("Run with RequireIss and no Issuer: err %v, browser opened %v; want an error before opening", err, called)
	}
}

func TestLoginHostileTraffic(t *testing.T) {
	idp := newFakeIdP(t)
	var (
		final    *page
		idle     []net.Conn
		callback string // the host:port of the loopback server
	)
	c := newBrowser(t)
	openBrowser := func(_ context.Context, authURL string) error {
		au := authURLOf(t, authURL)
		redirect, _ := url.Parse(au.Query().Get("redirect_uri"))
		callback = redirect.Host
		base := "http://" + callback
		state := au.Query().Get("state")
		for _, tc := range []struct {
			method, path string
			want         int
		}{
			{http.MethodGet, "/", http.StatusNotFound},
			{http.MethodGet, "/other?state=" + state + "&code=x", http.StatusNotFound},
			{http.MethodGet, "/favicon.ico", http.StatusNotFound},
			{http.MethodPost, "/callback?state=" + state + "&code=x", http.StatusMethodNotAllowed},
			{http.MethodHead, "/callback", http.StatusMethodNotAllowed},
			{http.MethodGet, "/callback", http.StatusBadRequest},
			{http.MethodGet, "/callback?code=x", http.StatusBadRequest},
			{http.MethodGet, "/callback?code=x&state=wrong", http.StatusBadRequest},
			{http.MethodGet, "/callback?code=x&state=" + state + "x", http.StatusBadRequest},
			{http.MethodGet, "/callback?code=x&state=" + state[:len(state)-1], http.StatusBadRequest},
			{http.MethodGet, "/callback?code=x&state=" + state + "&state=" + state, http.StatusBadRequest},
			{http.MethodGet, "/callback?error=access_denied&state=nope", http.StatusBadRequest},
		} {
			p, err := visit(t, c, tc.method, base+tc.path)
			if err != nil {
				t.Errorf("%s %s: %v", tc.method, tc.path, err)
				continue
			}
			if p.status != tc.want {
				t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, p.status, tc.want)
			}
			if tc.want == http.StatusMethodNotAllowed && p.header.Get("Allow") != http.MethodGet {
				t.Errorf("%s %s: Allow %q, want GET", tc.method, tc.path, p.header.Get("Allow"))
			}
		}
		// A query string beyond MaxHeaderBytes is refused by the server (431) or the connection is dropped.
		if p, err := visit(t, c, http.MethodGet, base+"/callback?state="+state+"&code="+strings.Repeat("A", 64<<10)); err == nil &&
			p.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("huge query: status %d, want 431 or a dropped connection", p.status)
		}

		// 50 concurrent junk connections: half send garbage, half say nothing and stay open.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 50 {
			wg.Go(func() {
				conn, err := net.Dial("tcp", callback)
				if err != nil {
					t.Errorf("junk connection %d: %v", i, err)
					return
				}
				if i%2 == 0 {
					mu.Lock()
					idle = append(idle, conn)
					mu.Unlock()
					return
				}
				defer conn.Close()
				_, _ = conn.Write([]byte("\x00\x01 NOT HTTP\r\n\r\n"))
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(conn)
				if !bytes.HasPrefix(b, []byte("HTTP/1.1 400")) {
					t.Errorf("junk connection %d: got %q, want a 400 response", i, b)
				}
			})
		}
		wg.Wait()

		// The real browser still completes the login.
		p, err := visit(t, c, http.MethodGet, authURL)
		if err != nil {
			t.Errorf("browser: %v", err)
			return nil
		}
		final = p
		return nil
	}
	_, err := runLogin(t, idp.login(openBrowser))
	if err != nil {
		t.Fatalf("Run after hostile traffic: %v", err)
	}
	if len(idp.received) != 1 {
		t.Error("no access token")
	}
	if final == nil || final.status != http.StatusOK {
		t.Fatalf("final page %+v, want the success page", final)
	}
	// A replay of the callback is refused: the port is closed.
	if p, err := visit(t, c, http.MethodGet, final.url.String()); err == nil {
		t.Errorf("replayed callback answered with status %d after the login finished", p.status)
	}
	assertClosed(t, callback)
	// Idle junk connections were closed by the shutdown rather than left behind.
	for i, conn := range idle {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
			t.Errorf("idle junk connection %d still open after Run returned: %v", i, err)
		}
		conn.Close()
	}
}

func TestLoginTimeout(t *testing.T) {
	idp := newFakeIdP(t)
	var redirect *url.URL
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := (&Login{
		Request:  idp.request(),
		Exchange: idp.exchange,
		OpenBrowser: func(_ context.Context, u string) error {
			redirect, _ = url.Parse(authURLOf(t, u).Query().Get("redirect_uri"))
			return nil // the person never comes back
		},
	}).Run(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrAbandoned) {
		t.Fatalf("Run: %v, want ErrAbandoned wrapping context.DeadlineExceeded", err)
	}
	if redirect == nil {
		t.Fatal("OpenBrowser not called")
	}
	assertClosed(t, redirect.Host)
}

func TestLoginCancelDuringCallbackWait(t *testing.T) {
	// The caller cancels (Ctrl-C): Run returns ErrAbandoned wrapping context.Canceled.
	idp := newFakeIdP(t)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := (&Login{
		Request:     idp.request(),
		Exchange:    idp.exchange,
		OpenBrowser: func(context.Context, string) error { cancel(); return nil },
	}).Run(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrAbandoned) {
		t.Fatalf("Run: %v, want ErrAbandoned wrapping context.Canceled", err)
	}
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freePort returns a port free on 127.0.0.1 (and on [::1] if both is set).
func freePort(t *testing.T, both bool) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		if both {
			ln6, err := net.Listen("tcp", net.JoinHostPort("::1", port))
			if err != nil {
				ln.Close()
				continue
			}
			ln6.Close()
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port")
	return ""
}

func TestLoginRedirectURLLocalhost(t *testing.T) {
	idp := newFakeIdP(t)
	v6 := hasIPv6Loopback()
	port := freePort(t, v6)
	redirectURL := "http://localhost:" + port + "/callback"
	var logs bytes.Buffer
	urls := make(chan string, 1)
	l := &Login{
		Request:     idp.request(),
		Exchange:    idp.exchange,
		RedirectURL: redirectURL,
		// The browser cannot be opened; the person opens the URL by hand and the login keeps waiting.
		OpenBrowser: func(_ context.Context, u string) error {
			urls <- u
			return errors.New("no browser for " + u)
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	type outcome struct {
		res *Request
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := runLogin(t, l)
		done <- outcome{res, err}
	}()
	var authURL string
	select {
	case authURL = <-urls:
	case o := <-done:
		t.Fatalf("Run returned before opening the browser: %v", o.err)
	}
	au := authURLOf(t, authURL)
	if got := au.Query().Get("redirect_uri"); got != redirectURL {
		t.Errorf("redirect_uri = %q, want %q verbatim", got, redirectURL)
	}
	c := newBrowser(t)
	hosts := []string{"127.0.0.1"}
	if v6 {
		hosts = append(hosts, "::1")
	}
	for _, h := range hosts {
		// Our server answers on each loopback address; / is not the callback path.
		p, err := visit(t, c, http.MethodGet, "http://"+net.JoinHostPort(h, port)+"/")
		if err != nil {
			t.Errorf("%s: %v", h, err)
		} else if p.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404 from the loopback server", h, p.status)
		}
	}
	p, err := visit(t, c, http.MethodGet, au.String())
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("Run: %v", o.err)
	}
	if p.status != http.StatusOK {
		t.Errorf("page status %d, want 200", p.status)
	}
	if _, tokens, _ := idp.requests(); len(tokens) != 1 || tokens[0].Get("redirect_uri") != redirectURL {
		t.Errorf("token requests %v, want one with redirect_uri %q", tokens, redirectURL)
	}
	log := logs.String()
	if !strings.Contains(log, "could not open the browser") {
		t.Errorf("no warning about the browser in the log:\n%s", log)
	}
	if st := au.Query().Get("state"); strings.Contains(log, st) {
		t.Errorf("the OpenBrowser error leaked the state into the log:\n%s", log)
	}
	for _, h := range hosts {
		assertClosed(t, net.JoinHostPort(h, port))
	}
}

func TestLoginRedirectURLIPv4(t *testing.T) {
	idp := newFakeIdP(t)
	port := freePort(t, false)
	redirectURL := "http://127.0.0.1:" + port // no path: the callback is at /
	var got *page
	if _, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, RedirectURL: redirectURL, OpenBrowser: browse(t, &got)}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got == nil || got.status != http.StatusOK || (got.url.Path != "" && got.url.Path != "/") {
		t.Errorf("page %+v, want success at /", got)
	}
	if auths, _, _ := idp.requests(); auths[0].Get("redirect_uri") != redirectURL {
		t.Errorf("redirect_uri %q, want %q", auths[0].Get("redirect_uri"), redirectURL)
	}
}

func TestLoginRedirectURLInvalid(t *testing.T) {
	idp := newFakeIdP(t)
	for _, u := range []string{
		"http://example.com:8000/callback",
		"http://192.0.2.1:8000/callback",
		"http://0.0.0.0:8000/callback",
		"http://[::]:8000/callback",
		"https://127.0.0.1:8000/callback",
		"http://127.0.0.1:0/callback",
		"http://127.0.0.1:8000/callback#frag",
		"http://user@127.0.0.1:8000/callback",
		"://",
	} {
		called := false
		_, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, RedirectURL: u,
			OpenBrowser: func(context.Context, string) error { called = true; return nil }})
		if err == nil || called {
			t.Errorf("RedirectURL %q: err %v, browser opened %v; want an error before opening", u, err, called)
		}
	}
}

func TestLoginListenAddresses(t *testing.T) {
	idp := newFakeIdP(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := "127.0.0.1:" + freePort(t, false)
	var got *page
	_, err = runLogin(t, &Login{
		Request:         idp.request(),
		Exchange:        idp.exchange,
		ListenAddresses: []string{busy.Addr().String(), free},
		OpenBrowser:     browse(t, &got),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	auths, _, _ := idp.requests()
	if got, want := auths[0].Get("redirect_uri"), "http://"+free+"/callback"; got != want {
		t.Errorf("redirect_uri %q, want %q (the second address)", got, want)
	}
	if got == nil || got.status != http.StatusOK {
		t.Errorf("page %+v, want success", got)
	}

	t.Run("all busy", func(t *testing.T) {
		_, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, ListenAddresses: []string{busy.Addr().String()}})
		if err == nil {
			t.Error("Run with only a busy address succeeded")
		}
	})
	t.Run("rejected", func(t *testing.T) {
		for _, a := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8000", "example.com:8000", "[::]:0", "127.0.0.1"} {
			called := false
			_, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, ListenAddresses: []string{"127.0.0.1:0", a},
				OpenBrowser: func(context.Context, string) error { called = true; return nil }})
			if err == nil || called {
				t.Errorf("ListenAddresses with %q: err %v, browser opened %v; want an error before listening", a, err, called)
			}
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		if !hasIPv6Loopback() {
			t.Skip("no IPv6 loopback")
		}
		var got *page
		if _, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, ListenAddresses: []string{"[::1]:0"},
			OpenBrowser: browse(t, &got)}); err != nil {
			t.Fatalf("Run: %v", err)
		}
		auths, _, _ := idp.requests()
		u, _ := url.Parse(auths[len(auths)-1].Get("redirect_uri"))
		if u.Hostname() != "::1" || !strings.HasPrefix(u.Host, "[::1]:") || u.Path != "/callback" {
			t.Errorf("redirect_uri %q, want http://[::1]:<port>/callback", u)
		}
		if got == nil || got.status != http.StatusOK {
			t.Errorf("page %+v, want success", got)
		}
	})
}

func TestLoginAuthParams(t *testing.T) {
	idp := newFakeIdP(t)
	for _, k := range []string{"state", "nonce", "code_challenge", "code_challenge_method", "redirect_uri",
		"response_type", "client_id", "scope", "code_verifier", "State", ""} {
		called := false
		l := idp.login(func(context.Context, string) error { called = true; return nil })
		l.Request.Params = map[string]string{"audience": "a", k: "x"}
		_, err := runLogin(t, l)
		if err == nil || called {
			t.Errorf("AuthParams key %q: err %v, browser opened %v; want an error", k, err, called)
		}
	}

	var got *page
	params := map[string]string{"audience": "kubernetes", "prompt": "login", "login_hint": "a@b.example"}
	l := idp.login(browse(t, &got))
	l.Request.Params = params
	if _, err := runLogin(t, l); err != nil {
		t.Fatalf("Run: %v", err)
	}
	auths, _, _ := idp.requests()
	gotParams := make(map[string]string)
	for k := range params {
		gotParams[k] = auths[0].Get(k)
	}
	if diff := cmp.Diff(params, gotParams); diff != "" {
		t.Errorf("extra authorization parameters (-want +got):\n%s", diff)
	}
}

func TestLoginTokenError(t *testing.T) {
	idp := newFakeIdP(t)
	idp.tokenError = "invalid_grant"
	var got *page
	_, err := runLogin(t, &Login{Request: idp.request(), Exchange: idp.exchange, OpenBrowser: browse(t, &got)})
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("Run: %v, want *oauth2.RetrieveError", err)
	}
	if re.ErrorCode != "invalid_grant" {
		t.Errorf("ErrorCode %q, want invalid_grant", re.ErrorCode)
	}
	_, tokens, _ := idp.requests()
	if len(tokens) != 1 {
		t.Fatalf("%d token requests, want 1", len(tokens))
	}
	if code := tokens[0].Get("code"); strings.Contains(err.Error(), code) {
		t.Errorf("error %q contains the code", err)
	}
	// The page is written after the exchange, so the browser learns that the login failed.
	if got == nil || got.status == http.StatusOK || !strings.Contains(got.body, "invalid_grant") {
		t.Errorf("page %+v, want a failure page naming invalid_grant", got)
	}
}

func TestLoginValidate(t *testing.T) {
	exchange := func(context.Context, url.Values) error { return nil }
	for name, mutate := range map[string]func(*Login){
		"no AuthURL":  func(l *Login) { l.Request.AuthURL = "" },
		"no ClientID": func(l *Login) { l.Request.ClientID = "" },
		"no Exchange": func(l *Login) { l.Exchange = nil },
	} {
		l := &Login{Request: Request{ClientID: "c", AuthURL: "http://a/auth"}, Exchange: exchange}
		mutate(l)
		if _, err := runLogin(t, l); err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}
}

const fuzzState = "Xq3v9aZ0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s"

func TestCallbackHandler(t *testing.T) {
	h := newCallbackHandler("/callback", &Request{State: fuzzState})
	serve := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/callback/", http.StatusNotFound},
		{http.MethodPut, "/callback?state=" + fuzzState + "&code=c", http.StatusMethodNotAllowed},
		{http.MethodGet, "/callback?state=&code=c", http.StatusBadRequest},
		{http.MethodGet, "/callback?STATE=" + fuzzState + "&code=c", http.StatusBadRequest},
	} {
		rec := serve(tc.method, tc.target)
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, rec.Code, tc.want)
		}
		assertPageHeaders(t, rec.Result().Header)
	}
	select {
	case <-h.callbacks:
		t.Fatal("a callback was delivered for an invalid request")
	default:
	}

	// The first valid callback is delivered and waits for the exchange's verdict.
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- serve(http.MethodGet, "/callback?state="+fuzzState+"&code=the-code") }()
	cb := <-h.callbacks
	if cb.code != "the-code" || cb.err != nil {
		t.Fatalf("callback %+v, want code the-code", cb)
	}
	// A second one, even valid, is refused while the first is pending and after.
	if rec := serve(http.MethodGet, "/callback?state="+fuzzState+"&code=other"); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "already") {
		t.Errorf("second callback: %d %q, want 400 already finished", rec.Code, rec.Body)
	}
	cb.verdict <- nil
	if rec := <-first; rec.Code != http.StatusOK {
		t.Errorf("first callback page %d, want 200", rec.Code)
	}
	select {
	case cb := <-h.callbacks:
		t.Fatalf("a second callback was delivered: %+v", cb)
	default:
	}
}

// FuzzCallback feeds arbitrary query strings to the callback handler: it must not panic, and it must deliver a
// callback (complete the login) only when the query carries exactly the right state.
func FuzzCallback(f *testing.F) {
	for _, s := range []string{
		"",
		"state=" + fuzzState + "&code=c",
		"code=c&state=" + fuzzState + "&iss=https%3A%2F%2Fissuer.example",
		"code=c&state=" + fuzzState + "&iss=https%3A%2F%2Fevil.example",
		"code=c&state=" + fuzzState + "&iss=a&iss=b",
		"state=" + fuzzState,
		"state=" + fuzzState + "&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
		"state=wrong&code=c",
		"state=" + fuzzState + "&state=" + fuzzState + "&code=c",
		"state=" + fuzzState + ";code=c",
		"%zz&state=" + fuzzState + "&code=c",
		"state=" + fuzzState[:10] + "&code=c",
		"state=%00&code=%ff",
		strings.Repeat("&=", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h := newCallbackHandler("/callback", &Request{State: fuzzState, Issuer: "https://issuer.example"})
		h.stop() // nothing will exchange the code: the handler must not wait
		req := httptest.NewRequest(http.MethodGet, "/callback", nil)
		req.URL.RawQuery = raw
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		q, _ := url.ParseQuery(raw)
		rightState := len(q["state"]) == 1 && q["state"][0] == fuzzState
		select {
		case cb := <-h.callbacks:
			if !rightState {
				t.Fatalf("query %q completed the login without the right state", raw)
			}
			if cb.err == nil && cb.code == "" {
				t.Fatalf("query %q: success without a code", raw)
			}
		default:
			if rightState {
				t.Fatalf("query %q has the right state but delivered nothing", raw)
			}
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("query %q: status %d, want 400", raw, rec.Code)
			}
		}
		if rec.Code == http.StatusOK {
			t.Fatalf("query %q: success page although no token exchange happened", raw)
		}
		if body := rec.Body.String(); strings.Contains(strings.ToLower(body), "<script") {
			t.Fatalf("query %q: page contains a script tag: %q", raw, body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
	})
}

// TestLoginLocalhostSquatter: with a localhost redirect (Flyte's
// http://localhost:53593/callback), another process holding the port on one
// of 127.0.0.1 and ::1 would receive the browser's redirect with the code
// and state. The login fails before any browser opens.
func TestLoginLocalhostSquatter(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback: localhost is one address here")
	}
	idp := newFakeIdP(t)
	port := freePort(t, true)
	for _, squat := range []string{"127.0.0.1", "::1"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(squat, port))
		if err != nil {
			t.Fatal(err)
		}
		opened := false
		l := idp.login(func(context.Context, string) error { opened = true; return nil })
		l.RedirectURL = "http://localhost:" + port + "/callback"
		_, err = runLogin(t, l)
		ln.Close()
		if !errors.Is(err, ErrListen) || opened {
			t.Errorf("squatter on %s: Run = %v, browser opened %v; want ErrListen before the browser", squat, err, opened)
		}
	}
}
