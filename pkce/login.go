package pkce

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Timeouts and limits of the loopback server.
const (
	// readHeaderTimeout bounds how long a connection may take to send its request headers (slowloris).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout bounds keep-alive connections between requests.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds the request line and headers; a longer query string is refused with 431 by net/http.
	maxHeaderBytes = 16 << 10
	// shutdownTimeout bounds the graceful shutdown, which waits for the page of the finishing callback to be
	// written; after it the server is closed hard.
	shutdownTimeout = 2 * time.Second
)

// defaultCallbackPath is the path of the redirect URI when Login.RedirectURL is empty.
const defaultCallbackPath = "/callback"

// ErrAbandoned means the context given to [Login.Run] ended (the authentication timeout passed, or the caller gave up)
// before a valid authorization response arrived. Errors returned for it also wrap the context's error, so
// errors.Is(err, context.DeadlineExceeded) tells a timeout apart from a cancellation.
var ErrAbandoned = errors.New("pkce: login abandoned before the authorization response arrived")

// ErrIssuerMismatch means the authorization response failed the mix-up defence of RFC 9207 §2.4: its iss parameter
// differs from Request.Issuer (or appears more than once), or it is missing while Request.RequireIss is set.
var ErrIssuerMismatch = errors.New("pkce: authorization response issuer mismatch")

// ErrConfig means a login configuration that cannot work: a redirect URL or listen address that is not a
// loopback one, or an authorization request parameter that the protocol sets itself. Nothing has listened yet.
var ErrConfig = errors.New("pkce: invalid login configuration")

// ErrListen means no loopback listener could be opened (the port is in use).
var ErrListen = errors.New("pkce: cannot listen for the redirect")

// ErrLinkReused means the login link given to [Login.OpenBrowser] was opened a second time where the loopback server
// cannot tell who sends a request (on systems other than Linux): another program may have read it from the browser's
// command line, and could answer in the person's stead, so the login was stopped.
var ErrLinkReused = errors.New("pkce: the login link was opened twice (another program may have read it from the browser's command line); the login was stopped")

// errNoCode is returned for an authorization response with the right state but neither code nor error
// (RFC 6749 §4.1.2).
var errNoCode = errors.New("pkce: authorization response has neither code nor error")

// reservedParams are the authorization request parameters a Request sets itself (RFC 6749 §4.1.1, RFC 7636 §4.3,
// OpenID Connect Core §3.1.2.1); Request.Params may not set them. code_verifier belongs to the token request only
// (RFC 7636 §4.5) and must never be sent to the authorization endpoint.
var reservedParams = []string{
	"client_id", "code_challenge", "code_challenge_method", "code_verifier", "nonce", "redirect_uri",
	"response_type", "scope", "state",
}

// AuthError is an error response from the authorization endpoint (RFC 6749 §4.1.2.1), such as access_denied when the
// person declines, delivered to the redirect URI with the right state.
type AuthError struct {
	// Code is the error parameter, e.g. "access_denied", "invalid_scope" or "login_required".
	Code string
	// Description is the optional error_description parameter, human-readable text from the server.
	Description string
	// URI is the optional error_uri parameter, a page about the error.
	URI string
}

// Error reports the code, description and URI, quoted as they come from the network.
func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pkce: authorization error %q", e.Code)
	if e.Description != "" {
		fmt.Fprintf(&b, " %q", e.Description)
	}
	if e.URI != "" {
		fmt.Fprintf(&b, " (see %q)", e.URI)
	}
	return b.String()
}

// Login runs one authorization-code + PKCE login through the person's browser (RFC 8252: the external user-agent and
// a loopback redirect, §7.3; PKCE with S256, §8.1 and RFC 7636). A Login may be run more than once; every run uses a
// fresh code_verifier, state and nonce.
type Login struct {
	// Request is the authorization request to send. Its RedirectURI is ignored: Login sets it to the URI it
	// listens on. Its verifier, state and nonce are ignored too: every run begins a new request.
	Request Request

	// RedirectURL, if set, is used verbatim as redirect_uri, e.g. a URI registered at the IdP such as
	// http://localhost:8000/callback or Flyte's http://localhost:53593/callback. It must be an http URL with a fixed
	// port (80 if none). Login listens on its port: a host "localhost" means listening on both 127.0.0.1 and [::1]
	// (both must bind, but for an address family the machine lacks); an IP literal must be loopback; any other host
	// is an error. The callback
	// path is the URL's path ("/" if empty). RFC 8252 §8.3 does not recommend "localhost"; prefer the default.
	// When RedirectURL is set, ListenAddresses is ignored.
	RedirectURL string

	// ListenAddresses are tried in order when RedirectURL is empty (kubelogin's --listen-address, e.g.
	// 127.0.0.1:8000 then 127.0.0.1:18000); default {"127.0.0.1:0"} (an OS-assigned port, RFC 8252 §7.3). Each is
	// host:port with a loopback IP literal as host ("localhost" is taken as 127.0.0.1); anything else is an error.
	// The redirect_uri is then http://<bound ip:port>/callback, with an IPv6 address bracketed.
	ListenAddresses []string

	// ResendAuthParams sends the authorization request's parameters again with the code exchange (see
	// [Request.TokenForm]).
	ResendAuthParams bool

	// TLS, if set, makes the loopback server https (for providers that refuse http redirect URIs): RedirectURL
	// must then be https, and the default redirect URI is https://127.0.0.1:<port>/callback. The certificate must
	// be valid for the redirect URI's host in the person's browser.
	TLS *tls.Config

	// AfterURL, if set, is where the browser is sent (303 See Other) once the login succeeded, instead of the
	// "Login complete" page. It must be an absolute http(s) URL.
	AfterURL string

	// OpenBrowser is called once, in its own goroutine, after the listener is ready, with the login link: a URL on
	// the loopback server (http://127.0.0.1:PORT/start/RANDOM, on the redirect URI's host and port) that sends the
	// browser on to the authorization URL. The authorization URL, whose state would let anyone answer the login,
	// thus never appears in a browser's command line, which every local user can read. On Linux the loopback server
	// refuses every request from another user's process (by the owner of the connection's socket, proc(5)) and the
	// link may be opened again; elsewhere it works once, and a second opening ends the login with [ErrLinkReused].
	// nil: not called ([Login.Check] sees the authorization URL, for a caller that shows it itself; that URL carries
	// the state, so it must not go into a command line). If it returns an error, Login keeps waiting (the person
	// may open the URL by hand) and logs a warning. Its context is cancelled when the login finishes and Run waits
	// for it to return, so it should return once the browser has been asked to open the URL (start a browser
	// process without waiting for it to exit).
	OpenBrowser func(ctx context.Context, url string) error

	// Check, if set, is called with the authorization URL once the listener is up and before the browser opens;
	// an error ends the login at once (the caller checks, say, that the provider accepts the request at all).
	Check func(ctx context.Context, authURL string) error

	// Exchange redeems the code at the token endpoint (RFC 6749 §4.1.3) with form, the token request of
	// [Request.TokenForm]; the caller adds client authentication and keeps the tokens. It is called at most once,
	// and its error is what the browser's page reports. Required.
	Exchange func(ctx context.Context, form url.Values) error

	// Logger receives debug messages (listening addresses, redirect URI) and warnings; nil discards them. Codes,
	// verifiers, state, nonce and tokens are never logged.
	Logger *slog.Logger

	// AllowUnlistedPeers admits requests to the loopback server from connections whose other end is in no socket
	// table of this system: a browser outside it, such as the Windows browser of WSL's mirrored networking. On
	// Linux such requests are otherwise refused (see OpenBrowser), since another user who resets a connection
	// right after sending a request leaves no socket to look up.
	AllowUnlistedPeers bool

	// peerTables, for tests, are the socket tables the peer check reads; nil means socketTables.
	peerTables []string
}

// Run listens on the loopback address, opens the browser, waits for exactly one valid callback (or for ctx to be
// done: the caller sets the authentication timeout on ctx), has Exchange redeem the code with the verifier
// (RFC 7636 §4.5), shuts the listener down, and returns the request it sent (its Nonce is for the caller to check
// against the ID token's nonce claim, OpenID Connect Core §3.1.3.7).
//
// Errors: [ErrAbandoned] (also wrapping ctx.Err()) when ctx ends first; [*AuthError] for an error response;
// [ErrIssuerMismatch] for a failed RFC 9207 check; [ErrLinkReused]; Exchange's error, wrapped. Callbacks with a wrong or missing
// state are answered with 400 and ignored: local traffic cannot abort a pending login.
func (l *Login) Run(ctx context.Context) (*Request, error) {
	logger := l.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	lns, redirectURL, callbackPath, err := l.listen(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, ln := range lns {
			_ = ln.Close() // already closed by the shutdown; this only guards early returns
		}
	}()
	for _, ln := range lns {
		logger.Debug("pkce: listening for the authorization response", "address", ln.Addr().String())
	}
	logger.Debug("pkce: redirect URI", "redirect_uri", redirectURL)

	req := l.Request.Begin()
	req.RedirectURI = redirectURL
	h := newCallbackHandler(callbackPath, req)
	authURL := h.authURL
	if l.Check != nil {
		if err := l.Check(ctx, authURL); err != nil {
			return nil, err
		}
	}

	h.afterURL = l.AfterURL
	h.logger = logger
	h.unlisted = l.AllowUnlistedPeers
	if peers := (peerCheck{tables: l.peerTables}); peers.availableOn(lns) {
		h.peers = &peers
	} else {
		logger.Debug("pkce: the owners of loopback connections cannot be told here; the login link works once")
	}
	link := startLink(redirectURL, h.startPath)
	var conns connTracker
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         conns.track,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	for _, ln := range lns {
		g.Go(func() error {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("pkce: serve on %s: %w", ln.Addr(), err)
		})
	}
	g.Go(func() error {
		defer cancel() // tells OpenBrowser that the login is over
		defer shutdown(ctx, srv, lns, &conns, logger)
		defer h.stop() // releases a handler still waiting for a verdict
		return l.await(gctx, h, req)
	})
	if l.OpenBrowser != nil {
		g.Go(func() error {
			if err := l.OpenBrowser(gctx, link); err != nil {
				msg := redact(err.Error(), authURL, link, req.State, req.Nonce)
				if gctx.Err() != nil {
					logger.Debug("pkce: opening the browser stopped", "error", msg)
				} else {
					logger.Warn("pkce: could not open the browser; open the login URL by hand", "error", msg)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return req, nil
}

// await waits for the first valid callback and has Exchange redeem its code (RFC 6749 §4.1.3, RFC 7636 §4.5). It
// hands the exchange's outcome back to the waiting handler so that the browser shows whether the login really
// succeeded.
func (l *Login) await(ctx context.Context, h *callbackHandler, req *Request) error {
	var cb callback
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrAbandoned, ctx.Err())
	case cb = <-h.callbacks:
	}
	if cb.err != nil {
		return cb.err // the handler has already written the failure page
	}
	err := l.Exchange(ctx, req.TokenForm(cb.code, l.ResendAuthParams))
	if err != nil {
		err = fmt.Errorf("pkce: exchange the authorization code: %w", err)
	}
	cb.verdict <- err
	return err
}

// validate checks the configuration before anything listens.
func (l *Login) validate() error {
	switch {
	case l.Request.AuthURL == "":
		return errors.New("pkce: Request.AuthURL is empty")
	case l.Request.ClientID == "":
		return errors.New("pkce: Request.ClientID is empty")
	case l.Request.RequireIss && l.Request.Issuer == "":
		return errors.New("pkce: RequireIss is set without Issuer")
	case l.Exchange == nil:
		return errors.New("pkce: Exchange is nil")
	}
	if l.AfterURL != "" {
		if u, err := url.Parse(l.AfterURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%w: AfterURL %q is not an absolute http(s) URL", ErrConfig, l.AfterURL)
		}
	}
	return Validate(l.RedirectURL, l.ListenAddresses, l.Request.Params, l.TLS != nil)
}

// Validate checks, without listening, the parts of a [Login] that come from a person's configuration: the redirect
// URL (https when secure, that is with [Login.TLS], http otherwise) or listen addresses must be loopback ones
// (RFC 8252 §7.3, §8.3), and the extra authorization request parameters ([Request.Params]) must not override the
// protocol's own. Errors wrap [ErrConfig].
func Validate(redirectURL string, listenAddresses []string, authParams map[string]string, secure bool) error {
	for _, k := range slices.Sorted(maps.Keys(authParams)) {
		if k == "" {
			return fmt.Errorf("%w: empty authorization request parameter name", ErrConfig)
		}
		if slices.Contains(reservedParams, strings.ToLower(k)) {
			return fmt.Errorf("%w: authorization request parameter %q is set by the protocol and cannot be overridden", ErrConfig, k)
		}
	}
	if redirectURL != "" {
		_, _, _, err := parseRedirectURL(redirectURL, secure)
		return err
	}
	_, err := parseListenAddresses(listenAddresses)
	return err
}

// listen binds the loopback listeners and returns them with the redirect URI and the callback path.
func (l *Login) listen(ctx context.Context) (lns []net.Listener, redirectURL, callbackPath string, err error) {
	if l.RedirectURL != "" {
		lns, callbackPath, err := listenRedirectURL(ctx, l.RedirectURL, l.TLS != nil)
		return l.secure(lns), l.RedirectURL, callbackPath, err
	}
	ln, err := listenFirst(ctx, l.ListenAddresses)
	if err != nil {
		return nil, "", "", err
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	scheme := "http://"
	if l.TLS != nil {
		scheme = "https://"
	}
	return l.secure([]net.Listener{ln}), scheme + ap.String() + defaultCallbackPath, defaultCallbackPath, nil
}

// secure wraps the listeners in TLS when l.TLS is set.
func (l *Login) secure(lns []net.Listener) []net.Listener {
	if l.TLS == nil {
		return lns
	}
	for i, ln := range lns {
		lns[i] = tls.NewListener(ln, l.TLS)
	}
	return lns
}

// listenRedirectURL listens on the port of a fixed redirect URI (RFC 8252 §7.3): on 127.0.0.1 and [::1] for the host
// localhost (§8.3), or on its loopback IP literal. For localhost both must bind: a browser may resolve localhost to
// either, and another process holding the port on one of them would receive the code and state. Only an address
// family the machine lacks (no IPv6 loopback, say) is left out.
func listenRedirectURL(ctx context.Context, redirectURL string, secure bool) ([]net.Listener, string, error) {
	hosts, port, callbackPath, err := parseRedirectURL(redirectURL, secure)
	if err != nil {
		return nil, "", err
	}
	var (
		lc  net.ListenConfig
		lns []net.Listener
	)
	for _, h := range hosts {
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(h, port))
		if err == nil {
			lns = append(lns, ln)
			continue
		}
		if len(hosts) > 1 && !hasLoopback(ctx, h) {
			continue // this family is missing here
		}
		for _, ln := range lns {
			ln.Close()
		}
		return nil, "", fmt.Errorf("%w %q: %w (another process holds the port; a login must get both loopback addresses of localhost)",
			ErrListen, redirectURL, err)
	}
	if len(lns) == 0 {
		return nil, "", fmt.Errorf("%w %q: no loopback address", ErrListen, redirectURL)
	}
	return lns, callbackPath, nil
}

// hasLoopback tells whether the loopback address host can be listened on at all (on a port of the system's choosing).
func hasLoopback(ctx context.Context, host string) bool {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// parseRedirectURL checks a fixed loopback redirect URI (https if secure, else http) and returns the hosts and port
// to listen on and the callback path.
func parseRedirectURL(redirectURL string, secure bool) (hosts []string, port, callbackPath string, err error) {
	u, err := url.Parse(redirectURL)
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: parse redirect URL: %w", ErrConfig, err)
	}
	switch {
	case secure && u.Scheme != "https":
		return nil, "", "", fmt.Errorf("%w: redirect URL %q: scheme must be https when the listener serves TLS", ErrConfig, redirectURL)
	case !secure && u.Scheme != "http":
		return nil, "", "", fmt.Errorf("%w: redirect URL %q: scheme must be http for a loopback redirect (RFC 8252 §7.3; https needs a certificate for the listener)", ErrConfig, redirectURL)
	}
	if u.Opaque != "" || u.User != nil || u.Fragment != "" {
		return nil, "", "", fmt.Errorf("%w: redirect URL %q: must not have user info or a fragment (RFC 6749 §3.1.2)", ErrConfig, redirectURL)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[bool]string{false: "80", true: "443"}[secure]
	}
	if port == "0" {
		return nil, "", "", fmt.Errorf("%w: redirect URL %q: port must be fixed", ErrConfig, redirectURL)
	}
	if strings.EqualFold(host, "localhost") {
		hosts = []string{"127.0.0.1", "::1"}
	} else {
		ip, err := loopbackIP(host)
		if err != nil {
			return nil, "", "", fmt.Errorf("%w: redirect URL %q: %w", ErrConfig, redirectURL, err)
		}
		hosts = []string{ip.String()}
	}
	callbackPath = u.Path
	if callbackPath == "" {
		callbackPath = "/"
	}
	return hosts, port, callbackPath, nil
}

// listenFirst validates every address, then listens on the first one that binds.
func listenFirst(ctx context.Context, addresses []string) (net.Listener, error) {
	resolved, err := parseListenAddresses(addresses)
	if err != nil {
		return nil, err
	}
	var (
		lc   net.ListenConfig
		errs []error
	)
	for _, a := range resolved {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err == nil {
			return ln, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: no listen address available: %w", ErrListen, errors.Join(errs...))
}

// parseListenAddresses checks that every address is a loopback host:port ("localhost" meaning 127.0.0.1) and
// returns them with IP literals; none means 127.0.0.1:0.
func parseListenAddresses(addresses []string) ([]string, error) {
	if len(addresses) == 0 {
		addresses = []string{"127.0.0.1:0"}
	}
	resolved := make([]string, len(addresses))
	for i, a := range addresses {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %w", ErrConfig, a, err)
		}
		if strings.EqualFold(host, "localhost") {
			host = "127.0.0.1"
		}
		ip, err := loopbackIP(host)
		if err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %w", ErrConfig, a, err)
		}
		resolved[i] = net.JoinHostPort(ip.String(), port)
	}
	return resolved, nil
}

// loopbackIP parses host as an IP literal and requires a loopback address (RFC 8252 §7.3, §8.3).
func loopbackIP(host string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("host %q is not a loopback IP address", host)
	}
	if ip = ip.Unmap(); !ip.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("host %q is not a loopback IP address", host)
	}
	return ip, nil
}

// shutdown stops the loopback server before Run returns: it closes the listeners, drops connections that never sent
// a request (a browser's preconnects, junk), lets the page of the finishing callback be written within
// shutdownTimeout, then closes everything.
func shutdown(ctx context.Context, srv *http.Server, lns []net.Listener, conns *connTracker, logger *slog.Logger) {
	for _, ln := range lns {
		_ = ln.Close()
	}
	conns.closeNew()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
		logger.Debug("pkce: graceful shutdown of the loopback server timed out")
	}
	_ = srv.Close()
}

// startLink returns the login link: the redirect URI's scheme, host and port with the path startPath.
func startLink(redirectURL, startPath string) string {
	u, err := url.Parse(redirectURL)
	if err != nil {
		return redirectURL // checked before listening; cannot happen
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: startPath}).String()
}

// redact removes the authorization URL and the secrets in it from s (an error message from OpenBrowser).
func redact(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}
