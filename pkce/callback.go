package pkce

import (
	"crypto/subtle"
	"errors"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"
)

// errStopped is the verdict shown to a browser whose callback arrived as the login was being abandoned.
var errStopped = errors.New("pkce: login stopped before the token exchange")

// callback is the first authorization response with the right state (RFC 6749 §4.1.2).
type callback struct {
	// code is the authorization code; set only if err is nil.
	code string
	// err is the outcome of an unsuccessful response (*AuthError, ErrIssuerMismatch, errNoCode). Its failure page
	// has already been written.
	err error
	// verdict receives the token exchange's outcome for the browser page; buffered (1), set only if err is nil.
	verdict chan error
}

// callbackHandler serves the loopback server of one login: the login link at startPath, which sends the browser on
// to the authorization URL, and the redirect URI at path. Only GET is handled; only a request whose state equals the
// login's state counts, and only the first one: it is sent once on callbacks. Everything else is answered and
// ignored, so that stray or hostile local requests can neither finish nor abort the login. With a peer check, every
// request from another user's process is refused before anything else.
type callbackHandler struct {
	path string
	req  *Request
	// afterURL, if set, is where a successful login sends the browser.
	afterURL string
	// startPath is the path of the login link; authURL is where it leads.
	startPath, authURL string
	// peers, if set, tells who owns a connection's other end; nil when this system cannot tell (not Linux), and
	// then the login link works once only.
	peers *peerCheck
	// unlisted admits a connection whose other end is in no socket table (see Login.AllowUnlistedPeers).
	unlisted bool
	logger   *slog.Logger
	warned   atomic.Bool // set once a refused request has been warned about; later ones are debug messages

	opened    atomic.Bool   // set by the first opening of the login link
	finished  atomic.Bool   // set by the first request with the right state
	callbacks chan callback // buffered (1); receives exactly one callback
	stopped   chan struct{} // closed when the login no longer waits for callbacks
	stopOnce  sync.Once
}

func newCallbackHandler(path string, req *Request) *callbackHandler {
	return &callbackHandler{
		path:      path,
		req:       req,
		startPath: "/start/" + randomString(),
		authURL:   req.URL(),
		logger:    slog.New(slog.DiscardHandler),
		callbacks: make(chan callback, 1),
		stopped:   make(chan struct{}),
	}
}

// stop releases a handler still waiting for the token exchange's verdict.
func (h *callbackHandler) stop() {
	h.stopOnce.Do(func() { close(h.stopped) })
}

// ServeHTTP serves the login link and the authorization response at the redirect URI (RFC 6749 §4.1.2,
// RFC 8252 §7.3), after the peer check.
func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.peers != nil && !h.sameUser(r) {
		writePage(w, http.StatusForbidden, "Forbidden", "This login belongs to another user. The request was ignored.")
		return
	}
	if r.URL.Path != h.path && r.URL.Path != h.startPath {
		writePage(w, http.StatusNotFound, "Not found", "There is nothing here.")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writePage(w, http.StatusMethodNotAllowed, "Method not allowed", "The login's addresses accept only GET.")
		return
	}
	if r.URL.Path == h.startPath {
		h.start(w, r)
		return
	}
	// A parse error still yields the well-formed pairs; the state check below decides.
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if got := q["state"]; len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(h.req.State)) != 1 {
		// RFC 6749 §10.12, RFC 9700 §4.7.1: not a response to this login's request; keep waiting for the real one.
		writePage(w, http.StatusBadRequest, "Invalid request",
			"This response does not match the pending login (wrong or missing state). It was ignored.")
		return
	}
	if !h.finished.CompareAndSwap(false, true) {
		writePage(w, http.StatusBadRequest, "Login already finished",
			"This login has already received its authorization response. You can close this tab.")
		return
	}
	cb := h.parse(q)
	if cb.err != nil {
		h.callbacks <- cb
		writeFailure(w, cb.err)
		return
	}
	cb.verdict = make(chan error, 1)
	h.callbacks <- cb
	var verdict error
	select {
	case verdict = <-cb.verdict:
	case <-h.stopped:
		select {
		case verdict = <-cb.verdict:
		default:
			verdict = errStopped
		}
	case <-r.Context().Done():
		return // the browser went away; the login goes on without a page
	}
	if verdict != nil {
		writeFailure(w, verdict)
		return
	}
	if h.afterURL != "" {
		// The callback URL carries the code: no Referer leaves with it.
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, h.afterURL, http.StatusSeeOther)
		return
	}
	writePage(w, http.StatusOK, "Login complete",
		"You are logged in. You can close this tab and return to the terminal.")
}

// start serves the login link: it sends the browser on to the authorization URL (302 Found). The link, not the
// authorization URL, is what the browser's command line carries, and that command line is readable by every local
// user (/proc/PID/cmdline): the state, which would let them answer the login, stays out of it. Without a peer check
// (see sameUser) the link works once; a second opening means that another program may have read it, and since that
// program could then answer in the person's stead, the login ends with [ErrLinkReused].
func (h *callbackHandler) start(w http.ResponseWriter, r *http.Request) {
	if h.peers == nil && !h.opened.CompareAndSwap(false, true) {
		if h.finished.CompareAndSwap(false, true) {
			h.callbacks <- callback{err: ErrLinkReused}
		}
		writePage(w, http.StatusConflict, "Login link already used",
			"This login link was opened before, perhaps by another program that read it from the browser's command line. "+
				"The login was stopped. Run the command again.")
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, h.authURL, http.StatusFound)
}

// sameUser tells whether the request came from a process of the user running the login (or of root, who can read
// that user's files anyway), by the owner of the connection's other end in the system's socket table. A connection
// whose other end is not listed is refused unless h.unlisted: its sender may have reset it already (its socket
// then leaves the table while the request it sent is still read).
func (h *callbackHandler) sameUser(r *http.Request) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if local == nil || err != nil {
		return false
	}
	ours, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false
	}
	uid, err := h.peers.owner(remote, ours)
	switch {
	case errors.Is(err, errNoSocket) && h.unlisted:
		return true
	case err != nil:
		h.refused("pkce: refused a request to the loopback server whose sender could not be told "+
			"(a browser outside this system, as under WSL's mirrored networking?)", "error", err)
		return false
	case uid != os.Getuid() && uid != 0:
		h.refused("pkce: refused a request to the loopback server from another user's process "+
			"(a login must be finished in a browser of the user who runs it)", "uid", uid)
		return false
	}
	return true
}

// refused logs a refused request: the first as a warning, the rest (another user may send many) at debug level.
func (h *callbackHandler) refused(msg string, args ...any) {
	if h.warned.CompareAndSwap(false, true) {
		h.logger.Warn(msg, args...)
		return
	}
	h.logger.Debug(msg, args...)
}

// parse interprets an authorization response whose state matched.
func (h *callbackHandler) parse(q url.Values) callback {
	code, err := h.req.Response(q)
	if err != nil {
		return callback{err: err}
	}
	return callback{code: code}
}

// writeFailure writes the failure page for the login's final error. Error messages built by this package never hold
// secrets; the token endpoint's error is reduced to its RFC 6749 §5.2 fields.
func writeFailure(w http.ResponseWriter, err error) {
	var (
		authErr  *AuthError
		retrieve *oauth2.RetrieveError
	)
	switch {
	case errors.As(err, &authErr):
		details := []string{"Error: " + authErr.Code}
		if authErr.Description != "" {
			details = append(details, authErr.Description)
		}
		if authErr.URI != "" {
			details = append(details, "More information: "+authErr.URI)
		}
		writePage(w, http.StatusForbidden, "Login failed", "The authorization server refused the login.", details...)
	case errors.Is(err, ErrIssuerMismatch):
		writePage(w, http.StatusBadRequest, "Login failed",
			"The authorization response did not come from the expected issuer (RFC 9207), so it was rejected.", err.Error())
	case errors.Is(err, errStopped):
		writePage(w, http.StatusServiceUnavailable, "Login stopped",
			"The login was stopped or timed out before it could complete. Run the command again.")
	case errors.As(err, &retrieve):
		details := []string{"Error: " + retrieve.ErrorCode}
		if retrieve.ErrorDescription != "" {
			details = append(details, retrieve.ErrorDescription)
		}
		writePage(w, http.StatusBadGateway, "Login failed", "The token endpoint refused the authorization code.", details...)
	case errors.Is(err, errNoCode):
		writePage(w, http.StatusBadRequest, "Login failed", "The authorization response had neither a code nor an error.")
	default:
		writePage(w, http.StatusBadGateway, "Login failed", "The authorization code could not be exchanged for tokens.")
	}
}

// pageStyle is the only styling; inline, allowed by the page's Content-Security-Policy.
const pageStyle = `body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}` +
	`code{display:block;white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.5rem}`

// writePage writes a small self-contained HTML page: no scripts, no third-party resources, no referrer (the
// callback URL carries the code), not cached, not framed. Every text is HTML-escaped. The connection is closed after
// the response, so that the server can shut down promptly.
func writePage(w http.ResponseWriter, status int, title, message string, details ...string) {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">`)
	b.WriteString(`<meta name="viewport" content="width=device-width,initial-scale=1"><title>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString(`</title><style>` + pageStyle + `</style></head><body><h1>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString(`</h1><p>`)
	b.WriteString(html.EscapeString(message))
	b.WriteString(`</p>`)
	for _, d := range details {
		b.WriteString(`<code>`)
		b.WriteString(html.EscapeString(d))
		b.WriteString(`</code>`)
	}
	b.WriteString("</body></html>\n")

	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

// connTracker follows the loopback server's connections (http.Server.ConnState) so that the shutdown can drop those
// that never sent a request instead of waiting for them.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

func (t *connTracker) track(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, c)
	default:
		if t.conns == nil {
			t.conns = make(map[net.Conn]http.ConnState)
		}
		t.conns[c] = s
	}
}

// closeNew closes the connections that have not started a request.
func (t *connTracker) closeNew() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, s := range t.conns {
		if s == http.StateNew {
			_ = c.Close()
		}
	}
}
