package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// stderrBuffer is a bytes.Buffer safe for concurrent use: the client writes
// to it while the test's person reads it.
type stderrBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *stderrBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *stderrBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sleeper is Client.After on the harness clock: every wait returns at once
// after advancing the clock by the duration asked for, and is recorded.
// onWait, if set, runs before wait n (from 1) returns: the person acting
// while the client sleeps.
type sleeper struct {
	clock  *clock
	waits  []time.Duration
	onWait func(n int)
}

func (s *sleeper) After(d time.Duration) <-chan time.Time {
	s.waits = append(s.waits, d)
	s.clock.Advance(d)
	if s.onWait != nil {
		s.onWait(len(s.waits))
	}
	ch := make(chan time.Time, 1)
	ch <- s.clock.Now()
	return ch
}

// sshEnv is the environment of an SSH session on a machine without a display.
func sshEnv(k string) string {
	if k == "SSH_CONNECTION" {
		return "192.0.2.1 50000 192.0.2.2 22"
	}
	return ""
}

// headless returns a client for a person logged in over SSH: no browser,
// stderr captured, polling on the harness clock.
func (h *harness) headless(o Options) (*Client, *stderrBuffer, *sleeper) {
	stderr := &stderrBuffer{}
	s := &sleeper{clock: h.clock}
	return &Client{
		Options:    o,
		HTTPClient: h.idp.Client(),
		Now:        h.clock.Now,
		Getenv:     sshEnv,
		Stderr:     stderr,
		After:      s.After,
	}, stderr, s
}

func (h *harness) run(c *Client) (*Token, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 20*time.Second)
	defer cancel()
	return c.Token(ctx)
}

var userCodeRE = regexp.MustCompile(`\b[B-Z]{4}-[B-Z]{4}\b`)

// userCode returns the user code the client showed on stderr.
func userCode(t *testing.T, stderr *stderrBuffer) string {
	t.Helper()
	code := userCodeRE.FindString(stderr.String())
	if code == "" {
		t.Fatalf("no user code on stderr:\n%s", stderr)
	}
	return code
}

func secs(n ...int) []time.Duration {
	d := make([]time.Duration, len(n))
	for i, v := range n {
		d[i] = time.Duration(v) * time.Second
	}
	return d
}

func TestDeviceLoginPendingThenApproved(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, stderr, s := h.headless(o)
	s.onWait = func(n int) {
		if n == 3 {
			if err := h.idp.Approve(userCode(t, stderr)); err != nil {
				t.Errorf("approve: %v", err)
			}
		}
	}
	tok, err := h.run(c)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if diff := cmp.Diff(secs(5, 5, 5), s.waits); diff != "" {
		t.Errorf("waits before polls (-want +got):\n%s", diff)
	}
	counts := h.idp.Counts()
	if counts.Device != 1 || counts.DevicePoll != 3 || counts.Authorize != 0 {
		t.Errorf("device requests/polls/authorize = %d/%d/%d, want 1/3/0", counts.Device, counts.DevicePoll, counts.Authorize)
	}
	out := stderr.String()
	for _, want := range []string{h.idp.URL + idptest.DeviceVerifyPath, h.idp.URL + idptest.DeviceVerifyPath + "?user_code="} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	last := h.idp.LastToken()
	if got := last.Get("grant_type"); got != "urn:ietf:params:oauth:grant-type:device_code" {
		t.Errorf("grant_type = %q", got)
	}
	if last.Get("client_id") != idptest.DefaultClientID || last.Get("device_code") == "" {
		t.Errorf("poll lacks client_id or device_code: %v", last)
	}
	e := h.entry(o)
	if tok.Value != e.IDToken || e.RefreshToken == "" || e.LoginFailure != nil {
		t.Error("the device login's tokens were not cached")
	}
}

func TestDeviceLoginAutoApproveOnePoll(t *testing.T) {
	h := newHarness(t, idptest.Config{DeviceAutoApprove: true, DeviceInterval: 2 * time.Second, ClientSecret: "s3cret"})
	o := h.options()
	o.GrantType = GrantDeviceCode
	o.ClientSecret = "s3cret"
	c, _, s := h.headless(o)
	if _, err := h.run(c); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if diff := cmp.Diff(secs(2), s.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if got := h.idp.Counts().DevicePoll; got != 1 {
		t.Errorf("polls = %d, want 1", got)
	}
}

// TestDeviceLoginSlowDown checks that slow_down adds 5 s to the interval
// for the rest of the login (RFC 8628 §3.5).
func TestDeviceLoginSlowDown(t *testing.T) {
	var mu sync.Mutex
	slowDowns := 0
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != idptest.TokenPath || r.ParseForm() != nil || r.PostForm.Get("device_code") == "" {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if slowDowns > 0 {
			return false
		}
		slowDowns++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"slow_down"}`)
		return true
	}})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, stderr, s := h.headless(o)
	s.onWait = func(n int) {
		if n == 4 {
			if err := h.idp.Approve(userCode(t, stderr)); err != nil {
				t.Errorf("approve: %v", err)
			}
		}
	}
	if _, err := h.run(c); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if diff := cmp.Diff(secs(5, 10, 10, 10), s.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if got := h.idp.Counts().DevicePoll; got != 3 {
		t.Errorf("polls reaching the IdP = %d, want 3 (besides the slowed-down one)", got)
	}
}

func TestDeviceLoginDenied(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, stderr, s := h.headless(o)
	s.onWait = func(n int) {
		if n == 2 {
			if err := h.idp.Deny(userCode(t, stderr)); err != nil {
				t.Errorf("deny: %v", err)
			}
		}
	}
	_, err := h.run(c)
	if !errors.Is(err, ErrDeviceDenied) {
		t.Fatalf("Token error = %v, want ErrDeviceDenied", err)
	}
	if got := h.idp.Counts().DevicePoll; got != 2 {
		t.Errorf("polls = %d, want 2 (none after access_denied)", got)
	}
	if e := h.entry(o); e.LoginFailure == nil {
		t.Error("the denied login was not recorded for the cool-down")
	}
}

func TestDeviceLoginExpiredToken(t *testing.T) {
	h := newHarness(t, idptest.Config{DenyAuthorization: "expired_token"})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, _, _ := h.headless(o)
	_, err := h.run(c)
	if !errors.Is(err, ErrDeviceExpired) {
		t.Fatalf("Token error = %v, want ErrDeviceExpired", err)
	}
	if got := h.idp.Counts().DevicePoll; got != 1 {
		t.Errorf("polls = %d, want 1", got)
	}
}

// TestDeviceLoginStopsAtExpiresIn checks that polling stops when the device
// code's expires_in has passed, without asking the provider again.
func TestDeviceLoginStopsAtExpiresIn(t *testing.T) {
	h := newHarness(t, idptest.Config{DeviceCodeLifetime: 20 * time.Second})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, _, s := h.headless(o)
	_, err := h.run(c)
	if !errors.Is(err, ErrDeviceExpired) {
		t.Fatalf("Token error = %v, want ErrDeviceExpired", err)
	}
	if got := h.idp.Counts().DevicePoll; got != 3 {
		t.Errorf("polls = %d, want 3 (at 5, 10 and 15 s of a 20 s code)", got)
	}
	if diff := cmp.Diff(secs(5, 5, 5, 5), s.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

func TestDeviceLoginAuthTimeout(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantDeviceCode
	o.AuthTimeout = 50 * time.Millisecond
	c, _, _ := h.headless(o)
	c.After = func(time.Duration) <-chan time.Time { return nil } // the interval never passes
	_, err := h.run(c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token error = %v, want a deadline", err)
	}
	if got := h.idp.Counts().DevicePoll; got != 0 {
		t.Errorf("polls = %d, want 0", got)
	}
}

// TestDeviceLoginOpensVerificationPage checks that --grant-type device-code
// opens verification_uri_complete when a browser is at hand.
func TestDeviceLoginOpensVerificationPage(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, _, s := h.headless(o)
	var opened []string
	c.OpenBrowser = func(ctx context.Context, u string) error {
		opened = append(opened, u)
		return idptest.Browse(ctx, h.idp.Client(), u) // approves
	}
	if _, err := h.run(c); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if len(opened) != 1 || !strings.Contains(opened[0], idptest.DeviceVerifyPath+"?user_code=") {
		t.Errorf("opened %q, want verification_uri_complete", opened)
	}
	if len(s.waits) != 1 {
		t.Errorf("polls = %d, want 1", len(s.waits))
	}
}

func TestDeviceCodeWithoutEndpoint(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	withoutDevice(h)
	o := h.options()
	o.GrantType = GrantDeviceCode
	c, _, _ := h.headless(o)
	_, err := h.run(c)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "device_authorization_endpoint") {
		t.Fatalf("Token error = %v, want ErrUsage naming device_authorization_endpoint", err)
	}
}

// withoutDevice makes h's discovery document advertise no device
// authorization endpoint.
func withoutDevice(h *harness) {
	url := h.idp.URL
	h.idp.Update(func(c *idptest.Config) {
		iss := c.IssParameter
		c.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != idptest.DiscoveryPath {
				return false
			}
			m := map[string]any{
				"issuer":                 url,
				"authorization_endpoint": url + idptest.AuthorizePath,
				"token_endpoint":         url + idptest.TokenPath,
				"jwks_uri":               url + idptest.JWKSPath,
			}
			if iss {
				m["authorization_response_iss_parameter_supported"] = true
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(m)
			return true
		}
	})
}

// typist is the person at the terminal: on the first read it works out what
// to paste from what the client printed so far.
type typist struct {
	answer func() string
	r      io.Reader
}

func (t *typist) Read(p []byte) (int, error) {
	if t.r == nil {
		t.r = strings.NewReader(t.answer() + "\n\n")
	}
	return t.r.Read(p)
}

var authURLRE = regexp.MustCompile(`https?://\S+` + idptest.AuthorizePath + `\?\S+`)

// redirect plays the person's browser on the authorization URL printed on
// stderr and returns the URL it is redirected to (which nothing serves).
func (h *harness) redirect(stderr *stderrBuffer) *url.URL {
	h.t.Helper()
	authURL := authURLRE.FindString(stderr.String())
	if authURL == "" {
		h.t.Errorf("no authorization URL on stderr:\n%s", stderr)
		return &url.URL{}
	}
	hc := *h.idp.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(authURL)
	if err != nil {
		h.t.Errorf("authorize: %v", err)
		return &url.URL{}
	}
	resp.Body.Close()
	u, err := resp.Location()
	if err != nil {
		h.t.Errorf("authorize: %s without a redirect", resp.Status)
		return &url.URL{}
	}
	return u
}

func TestKeyboardLogin(t *testing.T) {
	tests := []struct {
		name        string
		cfg         idptest.Config
		redirectURL string
		paste       func(u *url.URL) string
		wantErr     error
	}{
		{name: "code", paste: func(u *url.URL) string { return u.Query().Get("code") }},
		{name: "redirect URL", cfg: idptest.Config{IssParameter: true}, paste: func(u *url.URL) string { return "  " + u.String() + " " }},
		{name: "query only", paste: func(u *url.URL) string { return u.RawQuery }},
		{name: "registered redirect URL", redirectURL: "http://127.0.0.1:8000/done", paste: func(u *url.URL) string { return u.String() }},
		{
			name: "wrong state",
			paste: func(u *url.URL) string {
				q := u.Query()
				q.Set("state", "forged")
				u.RawQuery = q.Encode()
				return u.String()
			},
			wantErr: pkce.ErrStateMismatch,
		},
		{
			name: "iss mismatch",
			cfg:  idptest.Config{IssParameter: true},
			paste: func(u *url.URL) string {
				q := u.Query()
				q.Set("iss", "https://attacker.example")
				u.RawQuery = q.Encode()
				return u.String()
			},
			wantErr: pkce.ErrIssuerMismatch,
		},
		{
			name: "iss missing",
			cfg:  idptest.Config{IssParameter: true},
			paste: func(u *url.URL) string {
				q := u.Query()
				q.Del("iss")
				u.RawQuery = q.Encode()
				return u.String()
			},
			wantErr: pkce.ErrIssuerMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			o := h.options()
			o.GrantType = GrantAuthCodeKeyboard
			o.RedirectURL = tt.redirectURL
			c, stderr, _ := h.headless(o)
			c.Stdin = &typist{answer: func() string { return tt.paste(h.redirect(stderr)) }}
			tok, err := h.run(c)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Token error = %v, want %v", err, tt.wantErr)
				}
				if got := h.idp.Counts().CodeExchange; got != 0 {
					t.Errorf("code exchanges = %d, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			wantRedirect := tt.redirectURL
			if wantRedirect == "" {
				wantRedirect = DefaultKeyboardRedirectURL
			}
			a, x := h.idp.LastAuthorize(), h.idp.LastToken()
			if a.Get("redirect_uri") != wantRedirect || x.Get("redirect_uri") != wantRedirect {
				t.Errorf("redirect_uri = %q (authorize), %q (token), want %q", a.Get("redirect_uri"), x.Get("redirect_uri"), wantRedirect)
			}
			if a.Get("code_challenge_method") != "S256" || a.Get("code_challenge") != pkce.Challenge(x.Get("code_verifier")) {
				t.Error("the code exchange's verifier does not match the authorization request's S256 challenge")
			}
			if a.Get("state") == "" || a.Get("nonce") == "" {
				t.Error("authorization request lacks state or nonce")
			}
			if e := h.entry(o); tok.Value != e.IDToken {
				t.Error("the keyboard login's token was not cached")
			}
		})
	}
}

func TestKeyboardLoginWithoutStdin(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantAuthCodeKeyboard
	c, _, _ := h.headless(o)
	_, err := h.run(c)
	if !errors.Is(err, ErrNoTerminal) || !strings.Contains(err.Error(), "interactiveMode: IfAvailable") {
		t.Fatalf("Token error = %v, want ErrNoTerminal with a hint", err)
	}
	if got := h.idp.Counts().Authorize; got != 0 {
		t.Errorf("authorization requests = %d, want 0", got)
	}
}

func TestKeyboardLoginEOF(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.GrantType = GrantAuthCodeKeyboard
	c, _, _ := h.headless(o)
	c.Stdin = strings.NewReader("\n  \n")
	_, err := h.run(c)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Token error = %v, want unexpected EOF", err)
	}
}

func TestChooseGrant(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	ssh := env("SSH_TTY", "/dev/pts/0", "DISPLAY", ":0")
	opener := func(context.Context, string) error { return nil }
	type test struct {
		name   string
		c      Client
		device bool
		want   string
	}
	tests := []test{
		{name: "opener", c: Client{OpenBrowser: opener, Getenv: ssh}, device: true, want: GrantAuthCode},
		{name: "browser command over ssh", c: Client{Options: Options{BrowserCommand: "w3m"}, Getenv: ssh}, device: true, want: GrantAuthCode},
		{name: "BROWSER over ssh", c: Client{Getenv: env("SSH_CONNECTION", "x", "BROWSER", "lynx")}, device: true, want: GrantAuthCode},
		{name: "skip-open-browser over ssh", c: Client{Options: Options{SkipOpenBrowser: true}, Getenv: ssh}, device: true, want: GrantAuthCode},
		{name: "ssh with device endpoint", c: Client{Getenv: ssh, Stdin: strings.NewReader("")}, device: true, want: GrantDeviceCode},
		{name: "ssh with terminal", c: Client{Getenv: ssh, Stdin: strings.NewReader("")}, want: GrantAuthCodeKeyboard},
		{name: "ssh without terminal", c: Client{Getenv: ssh}, want: GrantAuthCode},
		{name: "explicit authcode over ssh", c: Client{Options: Options{GrantType: GrantAuthCode}, Getenv: ssh}, device: true, want: GrantAuthCode},
		{name: "explicit keyboard", c: Client{Options: Options{GrantType: GrantAuthCodeKeyboard}, OpenBrowser: opener}, device: true, want: GrantAuthCodeKeyboard},
		{name: "explicit device", c: Client{Options: Options{GrantType: GrantDeviceCode}, OpenBrowser: opener}, device: true, want: GrantDeviceCode},
	}
	if _, err := (&Browser{Getenv: env()}).Argv("x"); errors.Is(err, ErrNoBrowser) {
		tests = append(tests, test{name: "no display", c: Client{Getenv: env()}, device: true, want: GrantDeviceCode})
	} else if runtime.GOOS == "linux" {
		t.Log("this Linux finds a browser without a display (WSL?); skipping the no-display case")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Provider{Issuer: "https://idp.example"}
			if tt.device {
				p.DeviceAuthorizationEndpoint = p.Issuer + "/device/code"
			}
			f := &flow{l: &login{provider: p}, o: &tt.c.Options, opener: tt.c.OpenBrowser, stdin: tt.c.Stdin, getenv: tt.c.Getenv}
			got, why, err := f.choose()
			if err != nil || got != tt.want {
				t.Errorf("choose = %q (%s), %v; want %q", got, why, err, tt.want)
			}
		})
	}
}

// TestAutoLogin runs auto logins end to end over SSH.
func TestAutoLogin(t *testing.T) {
	t.Run("device", func(t *testing.T) {
		h := newHarness(t, idptest.Config{DeviceAutoApprove: true})
		c, _, _ := h.headless(h.options())
		c.Stdin = &typist{answer: func() string { t.Error("read stdin although the device grant was possible"); return "" }}
		if _, err := h.run(c); err != nil {
			t.Fatalf("Token: %v", err)
		}
		if got := h.idp.Counts(); got.DevicePoll != 1 || got.Authorize != 0 {
			t.Errorf("device polls/authorize = %d/%d, want 1/0", got.DevicePoll, got.Authorize)
		}
	})
	t.Run("keyboard", func(t *testing.T) {
		h := newHarness(t, idptest.Config{})
		withoutDevice(h)
		c, stderr, _ := h.headless(h.options())
		c.Stdin = &typist{answer: func() string { return h.redirect(stderr).String() }}
		if _, err := h.run(c); err != nil {
			t.Fatalf("Token: %v", err)
		}
		if got := h.idp.Counts(); got.CodeExchange != 1 || got.Device != 0 {
			t.Errorf("code exchanges/device requests = %d/%d, want 1/0", got.CodeExchange, got.Device)
		}
	})
	t.Run("device not allowed for the client", func(t *testing.T) {
		h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != idptest.DeviceCodePath {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"unauthorized_client"}`)
			return true
		}})
		o := h.options()
		c, stderr, _ := h.headless(o)
		c.Stdin = &typist{answer: func() string { return h.redirect(stderr).String() }}
		if _, err := h.run(c); err != nil {
			t.Fatalf("Token: %v", err)
		}
		if got := h.idp.Counts().CodeExchange; got != 1 {
			t.Errorf("code exchanges = %d, want 1 (the keyboard login after the refusal)", got)
		}

		o.GrantType = GrantDeviceCode
		o.Storage = "none" // no refresh token: log in
		c, _, _ = h.headless(o)
		if _, err := h.run(c); !errors.Is(err, errDeviceNotAllowed) {
			t.Errorf("--grant-type device-code: Token error = %v, want the refusal", err)
		}
	})
	t.Run("browser", func(t *testing.T) {
		h := newHarness(t, idptest.Config{})
		c := h.client(h.options())
		c.Getenv = sshEnv
		if _, err := h.run(c); err != nil {
			t.Fatalf("Token: %v", err)
		}
		if got := h.idp.Counts(); h.browsers.Load() != 1 || got.Device != 0 {
			t.Errorf("browsers/device requests = %d/%d, want 1/0", h.browsers.Load(), got.Device)
		}
	})
}

func TestGrantTypeFlag(t *testing.T) {
	for _, tt := range []struct {
		arg, want, wantErr string
	}{
		{arg: "auto", want: GrantAuto},
		{arg: "authcode", want: GrantAuthCode},
		{arg: "authcode-keyboard", want: GrantAuthCodeKeyboard},
		{arg: "device-code", want: GrantDeviceCode},
		{arg: "password", wantErr: "RFC 9700"},
		{arg: "client-credentials", want: GrantClientCredentials},
		{arg: "implicit", wantErr: "unsupported"},
	} {
		var o Options
		fs := flag.NewFlagSet("get-token", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.RegisterFlags(fs)
		err := fs.Parse([]string{"--grant-type=" + tt.arg})
		switch {
		case tt.wantErr == "" && (err != nil || o.GrantType != tt.want):
			t.Errorf("--grant-type=%s: GrantType %q, err %v; want %q", tt.arg, o.GrantType, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("--grant-type=%s: err %v, want one mentioning %q", tt.arg, err, tt.wantErr)
		}
	}
	o := Options{IssuerURL: "https://idp.example", ClientID: "c", GrantType: "password"}
	if err := o.Validate(); !errors.Is(err, ErrUsage) {
		t.Errorf("Validate with grant type password = %v, want ErrUsage", err)
	}
}

// TestRedirectNotAccepted: a provider that takes only exactly registered
// redirect URIs (Glewlwyd, LemonLDAP::NG, Okta, Entra ID) and refuses
// latchkey's at once fails the login before the browser opens, naming the
// fix; the person used to see the provider's error page while latchkey
// waited out --authentication-timeout-sec in silence.
func TestRedirectNotAccepted(t *testing.T) {
	h := newHarness(t, idptest.Config{RedirectURIs: []string{"http://127.0.0.1:8000/callback"}})
	o := h.options()
	_, err := h.token(o)
	if !errors.Is(err, errRequestRefused) || !strings.Contains(err.Error(), "--oidc-redirect-url") || h.browsers.Load() != 0 {
		t.Errorf("Token = %v, browsers %d; want the refusal naming --oidc-redirect-url and no browser", err, h.browsers.Load())
	}
	// Not a login the person failed: no cool-down for the next call.
	if e, err := cache.Open(h.dir).Load(o.Key().ID()); err == nil && e.LoginFailure != nil {
		t.Errorf("a refused request started the cool-down: %+v", e.LoginFailure)
	}
}

// TestOfflineNeedsConsent: oidc-provider grants offline_access only with
// prompt=consent (OpenID Connect Core §11); latchkey went on without a
// refresh token, silently, and every expiry meant a browser. Now the login
// that got none says so, and the next one asks with prompt=consent and gets
// one. Dex, which grants offline_access without it (and would show its
// approval screen for prompt=consent), is never sent prompt.
func TestOfflineNeedsConsent(t *testing.T) {
	t.Run("oidc-provider", func(t *testing.T) {
		h := newHarness(t, idptest.Config{OfflineNeedsConsent: true})
		o := h.options()
		var logs syncBuffer
		c := h.client(o)
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if e := h.entry(o); e.RefreshToken != "" || !e.OfflineNeedsConsent || !strings.Contains(logs.String(), "prompt=consent") {
			t.Fatalf("first login: refresh token %v, needs consent %v, logs %q", e.RefreshToken != "", e.OfflineNeedsConsent, logs.String())
		}
		if p := h.idp.LastAuthorize().Get("prompt"); p != "" {
			t.Errorf("first login sent prompt=%q", p)
		}
		h.clock.Advance(idptest.DefaultTokenLifetime)
		h.mustToken(o)
		if p := h.idp.LastAuthorize().Get("prompt"); p != "consent" {
			t.Errorf("second login sent prompt=%q, want consent", p)
		}
		if e := h.entry(o); e.RefreshToken == "" || !e.OfflineNeedsConsent {
			t.Fatalf("second login: refresh token %v, needs consent %v", e.RefreshToken != "", e.OfflineNeedsConsent)
		}
		h.clock.Advance(idptest.DefaultTokenLifetime)
		h.mustToken(o)
		if cn := h.idp.Counts(); cn.Refresh != 1 || h.browsers.Load() != 2 {
			t.Errorf("after the second login: %d refreshes, %d browsers; want 1, 2", cn.Refresh, h.browsers.Load())
		}
	})
	t.Run("Dex", func(t *testing.T) {
		h := newHarness(t, idptest.Config{})
		o := h.options()
		h.mustToken(o)
		h.clock.Advance(idptest.DefaultTokenLifetime)
		h.mustToken(o)
		if p := h.idp.LastAuthorize().Get("prompt"); p != "" || h.entry(o).OfflineNeedsConsent {
			t.Errorf("prompt=%q sent, or consent noted, for a provider that grants offline_access without it", p)
		}
	})
}

// TestNobodyToReach: flytectl swallows the command's stderr and gives it no
// stdin; with no browser (or a browser command that fails) and no terminal,
// latchkey waited out the whole --authentication-timeout-sec and the reason
// was lost. Now it fails at once, and the reason is kept for status.
func TestNobodyToReach(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("shell script")
	}
	failing := filepath.Join(t.TempDir(), "browser")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	noDisplay := func(string) string { return "" }
	for name, o := range map[string]func(*Options){
		"no browser, device grant": func(*Options) {},
		"no browser, no device":    func(o *Options) { o.GrantType = GrantAuthCode },
		"browser command fails":    func(o *Options) { o.BrowserCommand = failing },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, idptest.Config{})
			opts := h.options()
			opts.AuthTimeout = time.Hour
			o(&opts)
			c := &Client{Options: opts, HTTPClient: h.idp.Client(), Now: h.clock.Now, Getenv: noDisplay, Stderr: io.Discard, StderrUnseen: true}
			_, err := c.Token(t.Context())
			if !errors.Is(err, errNobody) {
				t.Fatalf("Token = %v, want errNobody at once", err)
			}
			e := h.entry(opts)
			if e.LastFailure == nil || !strings.Contains(e.LastFailure.Reason, "no way to reach") || e.LoginFailure != nil {
				t.Errorf("entry: last failure %+v, login failure %+v; want the reason kept and no cool-down", e.LastFailure, e.LoginFailure)
			}
			if got := h.idp.Counts().DevicePoll; got != 0 {
				t.Errorf("%d device polls for nobody", got)
			}
			st, err := (&Client{Options: Options{CacheDir: h.dir}}).Status()
			if err != nil || len(st) != 1 || st[0].LastFailure == nil || !strings.Contains(st[0].LastFailure.Reason, "no way to reach") {
				t.Errorf("Status = %+v, %v; want the last failure's reason", st, err)
			}
		})
	}
}

func TestCheckUserAgent(t *testing.T) {
	if checkUserAgent != idptest.CheckUserAgent {
		t.Errorf("checkUserAgent %q, idptest counts %q", checkUserAgent, idptest.CheckUserAgent)
	}
}

// TestDeviceCodeEscaped: a device authorization response's user code and
// URIs are shown with control characters escaped.
func TestDeviceCodeEscaped(t *testing.T) {
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != idptest.DeviceCodePath {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"device_code": "d", "user_code": "AB\x1b[2JCD", "verification_uri": "https://idp.example/device",
			"expires_in": 1})
		return true
	}})
	c, stderr, _ := h.headless(h.options())
	c.Options.GrantType = GrantDeviceCode
	h.run(c)
	if out := stderr.String(); strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `AB\x1b[2JCD`) {
		t.Errorf("stderr %q: want the code and URI with escapes shown as text", out)
	}
}

// TestUnopenableURLs: whatever URL a provider sends never reaches the OS's
// opener unless it is https, or http on loopback: a device grant's
// verification_uri_complete of file:///... or \\host\share\x.exe (rundll32,
// open and xdg-open run those, and Windows sends NTLM credentials to the
// host), or an authorization endpoint of file:///...#.
func TestUnopenableURLs(t *testing.T) {
	for _, bad := range []string{"file:///usr/bin/xterm", `\\host\share\x.exe`, "javascript:alert(1)", "http://evil.example/device"} {
		t.Run(bad, func(t *testing.T) {
			h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != idptest.DeviceCodePath {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"device_code": "d", "user_code": "ABCD", "verification_uri": "https://idp.example/device",
					"verification_uri_complete": bad, "expires_in": 60})
				return true
			}})
			o := h.options()
			o.GrantType = GrantDeviceCode
			var opened []string
			c := h.client(o)
			c.OpenBrowser = func(_ context.Context, u string) error { opened = append(opened, u); return nil }
			c.After = (&sleeper{clock: h.clock}).After
			_, err := c.Token(t.Context())
			if len(opened) != 0 || (bad != "http://evil.example/device" && err == nil) {
				t.Errorf("opened %q, err %v; want nothing opened and the device login refused", opened, err)
			}
		})
	}
	for _, u := range []string{"file:///etc/passwd", `\\host\share\x.exe`, "http://example.com/", "https:///nohost"} {
		if openable(u) == nil {
			t.Errorf("openable(%q) = nil", u)
		}
	}
	for _, u := range []string{"https://idp.example/auth?x=1", "http://127.0.0.1:5556/auth", "http://localhost/auth"} {
		if err := openable(u); err != nil {
			t.Errorf("openable(%q) = %v", u, err)
		}
	}
	// An authorization endpoint that is no http(s) URL is refused at discovery.
	if err := checkEndpoints("http://127.0.0.1:1", &Provider{AuthorizationEndpoint: "file:///x#", TokenEndpoint: "http://127.0.0.1:1/t"}); err == nil {
		t.Error("checkEndpoints took a file: authorization endpoint")
	}
}

// TestHTTPIssuerOffLoopback: an http issuer off loopback is refused unless
// --insecure allows it (with a warning each time it is used).
func TestHTTPIssuerOffLoopback(t *testing.T) {
	o := Options{IssuerURL: "http://idp.example", ClientID: "c"}
	if err := o.Validate(); !errors.Is(err, ErrUsage) {
		t.Errorf("Validate = %v, want ErrUsage", err)
	}
	o.Insecure = true
	if err := o.Validate(); err != nil || o.InsecureWarning() == "" {
		t.Errorf("with --insecure: Validate = %v, warning %q", err, o.InsecureWarning())
	}
	if w := (&Options{IssuerURL: "http://127.0.0.1:5556", ClientID: "c"}).InsecureWarning(); w != "" {
		t.Errorf("loopback warned: %q", w)
	}
}
