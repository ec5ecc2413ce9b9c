package plugin

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
)

// DefaultKeyboardRedirectURL is the redirect_uri of --grant-type
// authcode-keyboard when --oidc-redirect-url is not set. Nothing listens
// there: the person's browser fails to load it, and its address bar shows
// the URL (with code, state and iss) to paste. A loopback URI is what
// providers accept for native apps (RFC 8252 §7.3); the out-of-band URI
// urn:ietf:wg:oauth:2.0:oob that kubelogin once defaulted to is refused by
// many of them (Google, Microsoft Entra ID) and can still be chosen with
// --oidc-redirect-url.
const DefaultKeyboardRedirectURL = "http://localhost"

// ErrNoTerminal reports a login that needs the person to type something
// when no input is available (Client.Stdin is nil).
var ErrNoTerminal = errors.New("no terminal to read from")

// ErrStateMismatch reports a pasted authorization response whose state is
// not the one this login sent (RFC 6749 §10.12, RFC 9700 §4.7.1).
var ErrStateMismatch = errors.New("authorization response state mismatch")

// maxPastedBytes caps one pasted line.
const maxPastedBytes = 64 << 10

// keyboardLogin runs the authorization code grant with PKCE (RFC 6749 §4.1,
// RFC 7636) for a machine that cannot run a browser or receive the
// redirect: it prints the authorization URL, reads from Stdin the code or the
// whole URL the browser was redirected to (checking its state and, per
// RFC 9207, its iss), and redeems the code with the code_verifier. A bare
// code carries neither state nor iss; PKCE still binds it to this login.
func (c *Client) keyboardLogin(ctx context.Context, hc *http.Client, p *cache.Provider) (*cache.Entry, error) {
	if c.Stdin == nil {
		return nil, fmt.Errorf("log in: --grant-type %s needs a terminal to paste the code into: %w "+
			"(set interactiveMode: IfAvailable in the kubeconfig's exec section and run kubectl in a terminal, "+
			"or use --grant-type device-code)", GrantAuthCodeKeyboard, ErrNoTerminal)
	}
	o := &c.Options
	// Options.Validate has checked AuthParams with pkce.Validate.
	ctx, cancel := context.WithTimeout(ctx, c.authTimeout())
	defer cancel()

	cfg := c.oauth2Config(p)
	cfg.RedirectURL = o.RedirectURL
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = DefaultKeyboardRedirectURL
	}
	verifier, state, nonce := pkce.NewVerifier(), rand.Text(), rand.Text()
	opts := make([]oauth2.AuthCodeOption, 0, len(o.AuthParams)+3)
	for _, k := range sortedKeys(o.AuthParams) {
		opts = append(opts, oauth2.SetAuthURLParam(k, o.AuthParams[k]))
	}
	opts = append(opts,
		oauth2.SetAuthURLParam("nonce", nonce),
		oauth2.SetAuthURLParam("code_challenge", pkce.Challenge(verifier)),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	authURL := cfg.AuthCodeURL(state, opts...)

	w := c.stderr()
	fmt.Fprintf(w, "latchkey: open this URL in a browser on any device to log in:\n\n    %s\n\n", authURL)
	fmt.Fprintf(w, "After the login the browser goes to %s, which may fail to load: that is expected.\n"+
		"Copy the whole URL from its address bar (or the code the page shows) and paste it here.\n", cfg.RedirectURL)
	code, err := c.readCode(ctx, w, p, state)
	if err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {cfg.RedirectURL},
		"code_verifier": {verifier},
	}
	r, err := postToken(ctx, hc, cfg, form, c.now())
	if err != nil {
		return nil, fmt.Errorf("log in: exchange the authorization code: %w", err)
	}
	return c.entry(ctx, hc, p, r, nonce, nil)
}

// readCode prompts on w and reads lines from Stdin until one is not blank,
// then returns the authorization code it holds (see parsePasted). The read
// goes on in its own goroutine, which outlives a ctx that ends first: a
// blocked read of a terminal cannot be cancelled.
func (c *Client) readCode(ctx context.Context, w io.Writer, p *cache.Provider, state string) (string, error) {
	type line struct {
		s   string
		err error
	}
	lines := make(chan line)
	go func() {
		sc := bufio.NewScanner(c.Stdin)
		sc.Buffer(make([]byte, 0, 4096), maxPastedBytes)
		for {
			fmt.Fprint(w, "latchkey: code or URL: ")
			var l line
			switch {
			case sc.Scan():
				if strings.TrimSpace(sc.Text()) == "" {
					continue
				}
				l.s = sc.Text()
			case sc.Err() != nil:
				l.err = fmt.Errorf("read the pasted code: %w", sc.Err())
			default:
				l.err = fmt.Errorf("read the pasted code: %w", io.ErrUnexpectedEOF)
			}
			select {
			case lines <- l:
			case <-ctx.Done():
			}
			return
		}
	}()
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("no code pasted within %s: %w", c.authTimeout(), ctx.Err())
		}
		return "", ctx.Err()
	case l := <-lines:
		if l.err != nil {
			return "", l.err
		}
		return parsePasted(l.s, state, p.Issuer, p.IssParameterSupported)
	}
}

// parsePasted returns the authorization code in what the person pasted:
// either the code itself, or the authorization response (RFC 6749 §4.1.2) as
// the redirect URL or its query string. A response must carry the login's
// state; its iss, if present, must equal issuer, and must be present when
// requireIss (RFC 9207 §2.4, §3); an error response becomes a
// *pkce.AuthError. It is a pure function.
func parsePasted(pasted, state, issuer string, requireIss bool) (string, error) {
	s := strings.TrimSpace(pasted)
	if s == "" {
		return "", errors.New("nothing was pasted")
	}
	query, isResponse := s, false
	if i := strings.IndexByte(s, '?'); i >= 0 {
		query, isResponse = s[i+1:], true
		if j := strings.IndexByte(query, '#'); j >= 0 {
			query = query[:j]
		}
	}
	q, err := url.ParseQuery(query)
	if !isResponse && (err != nil || (!q.Has("code") && !q.Has("state") && !q.Has("error"))) {
		if strings.ContainsAny(s, " \t") {
			return "", errors.New("the pasted text is neither a code nor a redirect URL")
		}
		return s, nil // a bare code
	}
	if err != nil {
		return "", errors.New("the pasted URL has a malformed query")
	}
	if got := q["state"]; len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(state)) != 1 {
		return "", fmt.Errorf("%w: the pasted URL is not the answer to this login (wrong or missing state)", ErrStateMismatch)
	}
	if iss, ok := q["iss"]; ok {
		if len(iss) != 1 {
			return "", fmt.Errorf("%w: iss appears %d times", pkce.ErrIssuerMismatch, len(iss))
		}
		if iss[0] != issuer {
			return "", fmt.Errorf("%w: got %q, want %q", pkce.ErrIssuerMismatch, iss[0], issuer)
		}
	} else if requireIss {
		return "", fmt.Errorf("%w: iss is missing but the provider advertises it (RFC 9207 §3)", pkce.ErrIssuerMismatch)
	}
	if e := q.Get("error"); e != "" {
		return "", &pkce.AuthError{Code: e, Description: q.Get("error_description"), URI: q.Get("error_uri")}
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("the pasted URL has neither code nor error")
	}
	return code, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
