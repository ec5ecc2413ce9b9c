package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
)

// Grant types accepted by Options.GrantType (kubelogin's --grant-type names).
const (
	// GrantAuto picks a login that can work here: the browser login when a
	// browser can be opened, else the device authorization grant when the
	// provider supports it, else the keyboard login when a person can type,
	// else the browser login with the URL printed.
	GrantAuto = "auto"
	// GrantAuthCode is the browser login: the authorization code grant with
	// PKCE over a loopback redirect (RFC 6749 §4.1, RFC 7636, RFC 8252).
	GrantAuthCode = "authcode"
	// GrantAuthCodeKeyboard is the authorization code grant with PKCE for a
	// machine that cannot run a browser: the person opens the URL anywhere and
	// pastes the code, or the URL the browser ended on, into the terminal.
	GrantAuthCodeKeyboard = "authcode-keyboard"
	// GrantDeviceCode is the device authorization grant (RFC 8628).
	GrantDeviceCode = "device-code"
	// GrantClientCredentials is the client credentials grant (RFC 6749
	// §4.4): the client's own token, for CI jobs; no person, no browser.
	GrantClientCredentials = "client-credentials"
)

// flow runs one login that needs the person: the browser login, a pasted
// code or the device authorization grant, chosen by Options.GrantType (auto
// by default: see GrantAuto).
type flow struct {
	l  *login
	tc *tokenClient
	o  *Options
	// opener is Client.OpenBrowser; nil means Browser.
	opener func(ctx context.Context, url string) error
	// visible: what is written to stderr reaches a person (not
	// Client.StderrUnseen, or a terminal on stdin).
	visible bool
	stdin   io.Reader
	stderr  io.Writer
	getenv  func(string) string
	log     *slog.Logger
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	timeout time.Duration
}

// login runs a login for l and returns the new entry.
func (k *call) login(ctx context.Context, hc *http.Client, l *login) (*cache.Entry, error) {
	c := k.c
	f := &flow{
		l: l, tc: l.client(hc, k.now), o: k.o,
		opener: c.OpenBrowser, visible: !c.StderrUnseen || c.Stdin != nil, stdin: c.Stdin, stderr: c.Stderr, getenv: c.Getenv,
		log: k.log, now: k.now, after: c.After, timeout: k.authTimeout(),
	}
	if f.stderr == nil {
		f.stderr = os.Stderr
	}
	if f.getenv == nil {
		f.getenv = os.Getenv
	}
	if f.after == nil {
		f.after = time.After
	}
	r, nonce, err := f.run(ctx)
	if err != nil {
		return nil, err
	}
	e, err := newEntry(ctx, hc, k.now, l, r, nonce, nil)
	if err != nil || !l.offline() || nonce == "" {
		return e, err
	}
	// A login with the authorization code asked for offline_access.
	switch {
	case e.RefreshToken != "":
		e.OfflineNeedsConsent = l.promptConsent
	case !l.promptConsent:
		e.OfflineNeedsConsent = true
		k.log.Warn("the provider gave no refresh token although offline_access was asked for: it grants it only with prompt=consent " +
			"(OpenID Connect Core §11), so the next login asks with prompt=consent (its consent page shows once more); until then each " +
			"expiry means a login. To ask at once: --oidc-auth-request-extra-params=prompt=consent")
	default:
		e.OfflineNeedsConsent = true
		k.log.Warn("the provider gave no refresh token although offline_access was asked for with prompt=consent: " +
			"allow the client the refresh_token grant at the provider; until then each expiry means a login")
	}
	return e, nil
}

// run logs in with the grant the options ask for and returns the token
// response and the nonce the login sent ("" if none).
func (f *flow) run(ctx context.Context) (*tokenResponse, string, error) {
	grant, why, err := f.choose()
	if err != nil {
		return nil, "", err
	}
	// The usual case (a browser) needs no explanation; the others do.
	log := f.log.Info
	if grant == GrantAuthCode {
		if ok, _ := f.browserAvailable(); ok || f.o.GrantType == GrantAuthCode {
			log = f.log.Debug
		}
	}
	log("logging in with "+grantName(grant), "grant", grant, "reason", why)
	if err := f.reachable(grant); err != nil {
		return nil, "", err
	}
	if grant == GrantDeviceCode {
		r, err := f.device(ctx)
		if err == nil || !errors.Is(err, errDeviceNotAllowed) || f.o.GrantType == GrantDeviceCode {
			return r, "", err
		}
		// Providers advertise the endpoint for all clients but enable the
		// grant per client (Okta, Entra ID): try the next way.
		grant, why = f.fallback()
		f.log.Info("the provider refused the device authorization grant for this client; logging in with "+grantName(grant),
			"grant", grant, "reason", why, "err", err)
	}
	if grant == GrantAuthCodeKeyboard {
		return f.keyboard(ctx)
	}
	return f.browser(ctx)
}

// errNobody reports a login that needs the person when nothing can reach
// them: no browser opens, and nothing shows a URL or a code (stderr is no
// terminal, as under flytectl, which swallows it, with no /dev/tty).
var errNobody = errors.New("no way to reach the person")

// reachable fails at once a login with grant that would wait for nobody:
// the device grant, or a browser login whose URL is only printed, when what
// is printed reaches no one.
func (f *flow) reachable(grant string) error {
	if f.visible {
		return nil
	}
	ok, why := f.browserAvailable()
	switch {
	case grant == GrantDeviceCode:
		why = "the device login's code is only printed"
	case grant == GrantAuthCode && f.o.SkipOpenBrowser:
		why = "--skip-open-browser only prints the login URL"
	case grant != GrantAuthCode || ok:
		return nil
	}
	return &setupError{fmt.Errorf("log in: %w: %s, and stderr reaches no terminal (no /dev/tty either); "+
		"run the command once in a terminal to log in, or set --browser-command", errNobody, why)}
}

// choose returns the grant to log in with and why it was chosen.
// Options.GrantType other than auto is obeyed; device-code then needs the
// provider's device_authorization_endpoint (RFC 8628 §4).
func (f *flow) choose() (grant, why string, err error) {
	p := f.l.provider
	switch g := f.o.GrantType; g {
	case GrantAuthCode, GrantAuthCodeKeyboard:
		return g, "--grant-type " + g, nil
	case GrantDeviceCode:
		if p.DeviceAuthorizationEndpoint == "" {
			return "", "", &setupError{fmt.Errorf("%w: --grant-type %s: the provider %s advertises no device_authorization_endpoint (RFC 8628 §4)",
				ErrUsage, GrantDeviceCode, p.Issuer)}
		}
		return g, "--grant-type " + g, nil
	}
	ok, why := f.browserAvailable()
	switch {
	case ok:
		return GrantAuthCode, why, nil
	case p.DeviceAuthorizationEndpoint != "":
		return GrantDeviceCode, why + "; the provider supports the device authorization grant", nil
	}
	grant, how := f.fallback()
	return grant, why + " and the provider has no device authorization endpoint; " + how, nil
}

// fallback is the automatic choice without a browser or the device
// authorization grant: the keyboard login when a person can type, else the
// browser login with its URL printed.
func (f *flow) fallback() (grant, why string) {
	if f.stdin != nil {
		return GrantAuthCodeKeyboard, "the code can be pasted into the terminal"
	}
	return GrantAuthCode, "no terminal can take a pasted code, so the login URL is printed: " +
		"forward the redirect port (ssh -L, with a fixed --listen-address) to finish the login"
}

// browserAvailable tells whether a browser login can work on this machine,
// and why. A browser counts as available when an opener is configured
// (Client.OpenBrowser, --browser-command, BROWSER), when the person opens the
// URL themselves (--skip-open-browser), or when Browser finds a platform
// opener and a display. An SSH session without --browser-command or BROWSER
// counts as having none: a browser started there (if any) runs far from the
// person, and the loopback redirect would not reach this machine from theirs.
func (f *flow) browserAvailable() (bool, string) {
	o := f.o
	switch {
	case f.opener != nil:
		return true, "a browser opener is configured"
	case o.BrowserCommand != "":
		return true, "--browser-command is set"
	case o.SkipOpenBrowser:
		return true, "--skip-open-browser is set (the person opens the URL)"
	case strings.TrimSpace(f.getenv("BROWSER")) != "":
		return true, "BROWSER is set"
	case f.getenv("SSH_CONNECTION") != "" || f.getenv("SSH_TTY") != "":
		return false, "no browser in an SSH session (SSH_CONNECTION or SSH_TTY is set; set --browser-command or BROWSER to override)"
	}
	b := &Browser{Getenv: f.getenv}
	if _, err := b.Argv("about:blank"); errors.Is(err, ErrNoBrowser) {
		return false, err.Error()
	}
	return true, "a browser can be opened"
}

// open opens url in the person's browser, if it is one to open (openable).
func (f *flow) open(ctx context.Context, url string) error {
	if err := openable(url); err != nil {
		return err
	}
	if f.opener != nil {
		return f.opener(ctx, url)
	}
	return f.browserOpener().Open(ctx, url)
}

// browserOpener is the Browser that opens URLs when no opener is set.
func (f *flow) browserOpener() *Browser {
	return &Browser{Command: f.o.BrowserCommand, Skip: f.o.SkipOpenBrowser, Stderr: f.stderr, Getenv: f.getenv, Logger: f.log}
}

// browser runs the browser login: the authorization code grant with PKCE
// over a loopback redirect (pkce.Login), the code exchanged through the
// login's token client. If the browser cannot be opened and nothing shows
// its URL to the person, the login ends at once.
func (f *flow) browser(ctx context.Context) (*tokenResponse, string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	open := func(ctx context.Context, url string) error {
		err := f.open(ctx, url)
		if err != nil && !f.visible {
			stop(&setupError{fmt.Errorf("log in: %w: %w, and stderr reaches no terminal to show the login URL", errNobody, err)})
		}
		return err
	}
	var r *tokenResponse
	pl := &pkce.Login{
		Request:          f.l.request(),
		RedirectURL:      f.l.redirectURL,
		ListenAddresses:  f.l.listenAddresses,
		ResendAuthParams: f.l.resendAuthParams,
		AfterURL:         f.o.OpenURLAfterAuthentication,
		OpenBrowser:      open,
		// Under WSL the browser is Windows', whose connections (mirrored
		// networking) have no Linux socket to tell their owner by.
		AllowUnlistedPeers: f.browserOpener().isWSL(),
		Check:              f.checkRequest,
		Exchange: func(ctx context.Context, form url.Values) (err error) {
			r, err = f.tc.token(ctx, f.l.provider.TokenEndpoint, f.l.tokenForm(form))
			return err
		},
		Logger: f.log,
	}
	if f.o.LocalServerCert != "" {
		cert, err := tls.LoadX509KeyPair(f.o.LocalServerCert, f.o.LocalServerKey)
		if err != nil {
			return nil, "", &setupError{fmt.Errorf("log in: --local-server-cert, --local-server-key: %w", err)}
		}
		pl.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	req, err := pl.Run(ctx)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errNobody) {
		return nil, "", cause
	}
	switch {
	case errors.Is(err, pkce.ErrConfig), errors.Is(err, pkce.ErrListen):
		return nil, "", &setupError{fmt.Errorf("log in: %w", err)}
	case errors.Is(err, context.DeadlineExceeded):
		return nil, "", fmt.Errorf("log in: no answer from the browser within %s (if the provider showed an error page, it may not "+
			"accept the redirect URI: pass the one registered for the client with --oidc-redirect-url, or register "+
			"http://127.0.0.1/callback for any port): %w", f.timeout, err)
	case err != nil:
		return nil, "", fmt.Errorf("log in: %w%s", err, f.audienceHint(err))
	}
	return r, req.Nonce, nil
}

// audienceHint explains an authorization error about the audience
// parameter (flyteadmin: "Requested audience '...' has not been
// whitelisted"): which audience was sent, and how to send another or none.
func (f *flow) audienceHint(err error) string {
	var ae *pkce.AuthError
	aud, sent := f.l.authParams["audience"]
	if !sent || !errors.As(err, &ae) || !strings.Contains(strings.ToLower(ae.Description), "audience") {
		return ""
	}
	return fmt.Sprintf("; the authorization server refused the audience %q (a Flyte deployment may advertise one its server does not allow): "+
		"send another with --oidc-auth-request-extra-params=audience=VALUE, or none with --oidc-auth-request-extra-params=audience=", aud)
}

// checkUserAgent is the User-Agent of checkRequest's request, so that a
// provider's logs (and the test providers' counts) tell it from the
// browser's.
const checkUserAgent = "latchkey (authorization request check)"

// errRequestRefused reports an authorization request the provider refused
// before any login (checkRequest).
var errRequestRefused = errors.New("the provider refused the authorization request")

// checkRequest sends the authorization request once from here, following
// no redirect, before the browser opens: a provider that refuses it outright
// (a redirect URI it does not accept, for one: Dex answers 400, Glewlwyd an
// empty 403, oidc-provider an error page) fails the login at once with the
// fix, instead of the person meeting an error page and latchkey waiting out
// --authentication-timeout-sec. Any other answer (a login page, a redirect
// to one) lets the login go on; a provider that shows its error only after
// the login (LemonLDAP::NG) is named when the wait ends.
func (f *flow) checkRequest(ctx context.Context, authURL string) error {
	hc := *f.tc.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Jar = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", checkUserAgent)
	resp, err := hc.Do(req)
	if err != nil {
		f.log.Debug("could not check the authorization request; going on", "err", err)
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	// 400 is the refusal of an invalid request (RFC 6749 §4.1.2.1);
	// Glewlwyd sends an empty 403. A 401 or 403 with a page or a
	// challenge may be a firewall or SSO proxy that turns away a client
	// that is no browser, and the browser would pass: go on then.
	refused := resp.StatusCode == http.StatusBadRequest ||
		resp.StatusCode == http.StatusForbidden && resp.Header.Get("WWW-Authenticate") == "" &&
			(len(bytes.TrimSpace(body)) == 0 || errorResponse(resp, body) != nil)
	if !refused {
		if resp.StatusCode >= 400 {
			f.log.Debug("the provider answered the authorization request check; going on", "status", resp.StatusCode)
		}
		return nil
	}
	what := "the redirect URI " + f.l.redirectURL
	if what == "the redirect URI " {
		what = "latchkey's redirect URI http://127.0.0.1:<port>/callback (a new port each login)"
	}
	return &setupError{fmt.Errorf("%w (%d %s before any login): most likely it does not accept %s; "+
		"pass the redirect URI registered for the client with --oidc-redirect-url, or register http://127.0.0.1/callback for any port "+
		"(RFC 8252 §7.3)", errRequestRefused, resp.StatusCode, http.StatusText(resp.StatusCode), what)}
}

// clientCredentials gets the client's own token with the client
// credentials grant (RFC 6749 §4.4): the scopes and, as token request
// parameters, the extra parameters (audience, resource). No person, no
// browser: a failure is an error, noted for the processes waiting behind
// this one, and the next call asks again.
func (k *call) clientCredentials(ctx context.Context, hc *http.Client, e *cache.Entry, p *Provider) (*Token, error) {
	l, err := k.resolve(ctx, hc, p)
	if err != nil {
		return nil, err
	}
	if l.clientSecret == "" {
		return nil, fmt.Errorf("%w: --grant-type=client-credentials needs the client's secret (--oidc-client-secret-file, -env or --oidc-client-secret)", ErrUsage)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range l.authParams {
		form.Set(k, v)
	}
	if len(l.scopes) > 0 {
		form.Set("scope", strings.Join(l.scopes, " "))
	}
	r, err := l.client(hc, k.now).token(ctx, l.provider.TokenEndpoint, form)
	if err == nil && r.IDToken == "" && !l.accessToken {
		err = errors.New("the client credentials response has no ID token: most providers give a client only an access token; " +
			"add --oidc-use-access-token (or use latchkey token, which prints the access token)")
	}
	if err != nil {
		err = fmt.Errorf("client credentials grant: %w", err)
		k.record(e, err, refreshFailed)
		return nil, err
	}
	next, err := newEntry(ctx, hc, k.now, l, r, "", nil)
	if err != nil {
		return nil, err
	}
	return k.save(next, l)
}

// sleep waits d on Client.After, or until ctx is done.
func (f *flow) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.after(d):
		return nil
	}
}

// grantName is a grant's name for people.
func grantName(grant string) string {
	switch grant {
	case GrantDeviceCode:
		return "the device authorization grant"
	case GrantAuthCodeKeyboard:
		return "a pasted authorization code"
	default:
		return "the browser"
	}
}
