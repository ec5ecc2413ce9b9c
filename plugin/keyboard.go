package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/latchkey/latchkey/internal/printable"
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

// maxPastedBytes caps one pasted line.
const maxPastedBytes = 64 << 10

// keyboard runs the authorization code grant with PKCE (RFC 6749 §4.1,
// RFC 7636) for a machine that cannot run a browser or receive the
// redirect: it prints the authorization URL, reads from Stdin the code or the
// whole URL the browser was redirected to (pkce.Request.Pasted checks its
// state and iss), and redeems the code with the code_verifier.
func (f *flow) keyboard(ctx context.Context) (*tokenResponse, string, error) {
	if f.stdin == nil {
		return nil, "", &setupError{fmt.Errorf("log in: --grant-type %s needs a terminal to paste the code into: %w "+
			"(set interactiveMode: IfAvailable in the kubeconfig's exec section and run kubectl in a terminal, "+
			"or use --grant-type device-code)", GrantAuthCodeKeyboard, ErrNoTerminal)}
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req := f.l.request().Begin()
	req.RedirectURI = f.l.redirectURL
	if req.RedirectURI == "" {
		req.RedirectURI = DefaultKeyboardRedirectURL
	}
	w := f.stderr
	fmt.Fprintf(w, "latchkey: open this URL in a browser on any device to log in:\n\n    %s\n\n", printable.String(req.URL()))
	fmt.Fprintf(w, "After the login the browser goes to %s, which may fail to load: that is expected.\n"+
		"Copy the whole URL from its address bar (or the code the page shows) and paste it here.\n", req.RedirectURI)
	pasted, err := f.readLine(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("log in: %w", err)
	}
	code, err := req.Pasted(pasted)
	if err != nil {
		return nil, "", fmt.Errorf("log in: %w", err)
	}
	r, err := f.tc.token(ctx, f.l.provider.TokenEndpoint, f.l.tokenForm(req.TokenForm(code, f.l.resendAuthParams)))
	if err != nil {
		return nil, "", fmt.Errorf("log in: exchange the authorization code: %w", err)
	}
	return r, req.Nonce, nil
}

// readLine prompts on stderr and reads lines from Stdin until one is not
// blank. The read goes on in its own goroutine, which outlives a ctx that
// ends first: a blocked read of a terminal cannot be cancelled.
func (f *flow) readLine(ctx context.Context) (string, error) {
	type line struct {
		s   string
		err error
	}
	lines := make(chan line)
	go func() {
		sc := bufio.NewScanner(f.stdin)
		sc.Buffer(make([]byte, 0, 4096), maxPastedBytes)
		for {
			fmt.Fprint(f.stderr, "latchkey: code or URL: ")
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
			return "", fmt.Errorf("no code pasted within %s: %w", f.timeout, ctx.Err())
		}
		return "", ctx.Err()
	case l := <-lines:
		return l.s, l.err
	}
}
