package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/latchkey/latchkey/cache"
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
)

// login obtains new tokens from the person, with the grant the options ask
// for (Options.GrantType), and returns the new entry.
func (c *Client) login(ctx context.Context, hc *http.Client, p *cache.Provider) (*cache.Entry, error) {
	grant, why, err := c.chooseGrant(p)
	if err != nil {
		return nil, err
	}
	// The usual case (a browser) needs no explanation; the others do.
	log := c.logger().Info
	if grant == GrantAuthCode {
		if ok, _ := c.browserAvailable(); ok || c.Options.GrantType == GrantAuthCode {
			log = c.logger().Debug
		}
	}
	log("logging in with "+grantName(grant), "grant", grant, "reason", why)
	switch grant {
	case GrantDeviceCode:
		e, err := c.deviceLogin(ctx, hc, p)
		if err == nil || !errors.Is(err, errDeviceNotAllowed) || c.Options.GrantType == GrantDeviceCode {
			return e, err
		}
		// Providers advertise the endpoint for all clients but enable the
		// grant per client (Okta, Entra ID): try the next way.
		grant, why = c.fallbackGrant()
		c.logger().Info("the provider refused the device authorization grant for this client; logging in with "+grantName(grant),
			"grant", grant, "reason", why, "err", err)
		if grant == GrantAuthCodeKeyboard {
			return c.keyboardLogin(ctx, hc, p)
		}
		return c.authCodeLogin(ctx, hc, p)
	case GrantAuthCodeKeyboard:
		return c.keyboardLogin(ctx, hc, p)
	default:
		return c.authCodeLogin(ctx, hc, p)
	}
}

// chooseGrant returns the grant to log in with and why it was chosen.
// Options.GrantType other than auto is obeyed; device-code then needs the
// provider's device_authorization_endpoint (RFC 8628 §4).
func (c *Client) chooseGrant(p *cache.Provider) (grant, why string, err error) {
	switch g := c.Options.GrantType; g {
	case GrantAuthCode, GrantAuthCodeKeyboard:
		return g, "--grant-type " + g, nil
	case GrantDeviceCode:
		if p.DeviceAuthorizationEndpoint == "" {
			return "", "", fmt.Errorf("%w: --grant-type %s: the provider %s advertises no device_authorization_endpoint (RFC 8628 §4)",
				ErrUsage, GrantDeviceCode, p.Issuer)
		}
		return g, "--grant-type " + g, nil
	case "", GrantAuto:
	default:
		return "", "", fmt.Errorf("%w: unsupported grant type %q", ErrUsage, g)
	}
	ok, why := c.browserAvailable()
	switch {
	case ok:
		return GrantAuthCode, why, nil
	case p.DeviceAuthorizationEndpoint != "":
		return GrantDeviceCode, why + "; the provider supports the device authorization grant", nil
	}
	grant, how := c.fallbackGrant()
	return grant, why + " and the provider has no device authorization endpoint; " + how, nil
}

// fallbackGrant is the automatic choice without a browser or the device
// authorization grant: the keyboard login when a person can type, else the
// browser login with its URL printed.
func (c *Client) fallbackGrant() (grant, why string) {
	if c.Stdin != nil {
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
func (c *Client) browserAvailable() (bool, string) {
	o := &c.Options
	switch {
	case c.OpenBrowser != nil:
		return true, "a browser opener is configured"
	case o.BrowserCommand != "":
		return true, "--browser-command is set"
	case o.SkipOpenBrowser:
		return true, "--skip-open-browser is set (the person opens the URL)"
	case strings.TrimSpace(c.getenv("BROWSER")) != "":
		return true, "BROWSER is set"
	case c.getenv("SSH_CONNECTION") != "" || c.getenv("SSH_TTY") != "":
		return false, "no browser in an SSH session (SSH_CONNECTION or SSH_TTY is set; set --browser-command or BROWSER to override)"
	}
	b := &Browser{Getenv: c.Getenv}
	if _, err := b.Argv("about:blank"); errors.Is(err, ErrNoBrowser) {
		return false, err.Error()
	}
	return true, "a browser can be opened"
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

func (c *Client) getenv(k string) string {
	if c.Getenv != nil {
		return c.Getenv(k)
	}
	return os.Getenv(k)
}

func (c *Client) stderr() io.Writer {
	if c.Stderr != nil {
		return c.Stderr
	}
	return os.Stderr
}
