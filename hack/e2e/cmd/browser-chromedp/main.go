// Command browser-chromedp logs in to Dex's password form, or to
// oidc-provider's devInteractions login and consent pages, in a real, headless
// Chromium driven through the DevTools protocol (github.com/chromedp/chromedp).
// latchkey runs it as --browser-command with the authorization URL as the last
// argument. It starts Chromium with a fresh profile, fills the form (Dex: ids
// login, password, submit-login; oidc-provider: inputs login and password,
// then "Continue" on the consent page), waits until the browser shows
// latchkey's loopback callback page, and exits 0.
//
// Chromium resolves no host name but loopback ones (oidc-provider's pages
// import a web font from the internet; the suite must not depend on it).
//
// Chromium has to trust the IdP's throwaway CA. The driver does not disable
// certificate checks: it verifies the IdP's chain itself against the CA file
// (-ca or E2E_LOGIN_CA) and then tells Chromium to accept exactly those public
// keys (--ignore-certificate-errors-spki-list).
//
// Settings come from flags or the environment (see package login); the
// Chromium binary is $E2E_CHROMIUM, default /usr/bin/chromium;
// E2E_BROWSER_DEBUG=1 forwards Chromium's output to stderr. Nothing is
// written to stdout.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/latchkey/latchkey/hack/e2e/internal/login"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "browser-chromedp: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	c, err := login.Parse("browser-chromedp", os.Args[1:])
	if err != nil {
		return err
	}
	if c.Mode != login.ModeLogin {
		return fmt.Errorf("mode %q is browser-http's only", c.Mode)
	}
	if err := c.Record(); err != nil {
		return err
	}
	if c.Fail {
		return errors.New("told to fail (" + login.EnvFail + ")")
	}
	redirect, err := c.RedirectURI()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()

	profile, err := os.MkdirTemp("", "e2e-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)

	chromium := os.Getenv("E2E_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]"),
	}
	if os.Getenv("E2E_BROWSER_DEBUG") != "" {
		// Chromium is chatty (dbus, GCM); its output is in the start error anyway.
		opts = append(opts, chromedp.CombinedOutput(os.Stderr))
	}
	if c.AuthURL.Scheme == "https" && c.CAFile != "" {
		spki, err := trustedSPKIs(ctx, c.AuthURL, c.CAFile)
		if err != nil {
			return err
		}
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	start := time.Now()
	if err := chromedp.Do(bctx, chromedp.Navigate(c.Link.String())); err != nil {
		return fmt.Errorf("open the login URL: %w", err)
	}
	// Each page of the login is acted on once: Dex's password form, or
	// oidc-provider's login page and then its consent page; the IdP then
	// redirects to latchkey's callback. Wait until the browser shows it, fully
	// loaded.
	done := map[string]bool{} // page kind + location already acted on
	// E2E_AFTER_URL: latchkey's --open-url-after-authentication sends the
	// browser on from its callback; the login ends there.
	after := os.Getenv("E2E_AFTER_URL")
	for {
		loc, err := chromedp.Run(bctx, chromedp.Location())
		if err == nil && after != "" && strings.HasPrefix(loc, after) {
			fmt.Fprintf(os.Stderr, "browser-chromedp: sent on to %s after %v\n", after, time.Since(start).Round(time.Millisecond))
			return nil
		}
		if err == nil {
			if u, perr := url.Parse(loc); perr == nil && after == "" && login.IsCallback(u, redirect) {
				state, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.readyState`))
				if err == nil && state == "complete" {
					text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
					fmt.Fprintf(os.Stderr, "browser-chromedp: callback page shown after %v: %.200q\n", time.Since(start).Round(time.Millisecond), text)
					return nil
				}
			} else if kind, err := chromedp.Run(bctx, chromedp.Evaluate[string](pageKindJS)); err == nil && !done[kind+" "+loc] {
				acted, err := act(bctx, kind, c)
				if err != nil {
					body, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
					return fmt.Errorf("%s (page %s: %.300q)", err, redact(loc), body)
				}
				if acted {
					done[kind+" "+loc] = true
				}
			}
		}
		select {
		case <-ctx.Done():
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			body, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			return fmt.Errorf("callback page not reached (stuck at %s: %.300q): %w", redact(loc), body, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pageKindJS tells which IdP page the browser shows: dex-login (ids login,
// password, submit-login), dex-error (id login-error: wrong credentials),
// op-login (oidc-provider's devInteractions login: inputs login and
// password), op-consent (its consent page: hidden prompt=consent),
// op-error (its error page), or other (a redirect in flight, a page still
// loading).
const pageKindJS = `(() => {
	if (!document.body) return "other";
	if (document.getElementById("login-error")) return "dex-error";
	if (document.getElementById("login") && document.getElementById("password") && document.getElementById("submit-login")) return "dex-login";
	if (document.title.startsWith("oops! something went wrong")) return "op-error";
	if (document.querySelector("form input[name=login]") && document.querySelector("form input[name=password]") &&
		document.querySelector("form button[type=submit]")) return "op-login";
	if (document.querySelector("form input[name=prompt][value=consent]") && document.querySelector("form button[type=submit]")) return "op-consent";
	return "other";
})()`

// act fills in and submits the page of kind; it reports whether it did
// something, and fails on an IdP error page.
func act(bctx context.Context, kind string, c *login.Config) (bool, error) {
	switch kind {
	case "dex-error":
		return false, fmt.Errorf("dex refused the credentials of %s", c.User)
	case "op-error":
		return false, errors.New("oidc-provider shows an error page")
	case "dex-login":
		return true, chromedp.Do(bctx,
			chromedp.WaitVisible(chromedp.ID("login")),
			chromedp.SendKeys(chromedp.ID("login"), c.User),
			chromedp.SendKeys(chromedp.ID("password"), c.Password),
			chromedp.Click(chromedp.ID("submit-login")),
		)
	case "op-login":
		// devInteractions accepts any login and password; the login becomes
		// the account id.
		return true, chromedp.Do(bctx,
			chromedp.WaitVisible(chromedp.CSS(`form input[name=login]`)),
			chromedp.SendKeys(chromedp.CSS(`form input[name=login]`), c.User),
			chromedp.SendKeys(chromedp.CSS(`form input[name=password]`), c.Password),
			chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		)
	case "op-consent":
		// "Continue" on the Authorize page grants what the client asked for.
		return true, chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`form button[type=submit]`)))
	}
	return false, nil
}

// trustedSPKIs connects to the URL's host, verifies the served chain against
// the CA file and returns the base64 SHA-256 hashes of the chain's public keys,
// the format of Chromium's --ignore-certificate-errors-spki-list.
func trustedSPKIs(ctx context.Context, u *url.URL, caFile string) ([]string, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read CA %s: no certificate", caFile)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: u.Hostname()}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("verify %s against %s: %w", host, caFile, err)
	}
	defer conn.Close()
	var out []string
	for _, chain := range conn.(*tls.Conn).ConnectionState().VerifiedChains {
		for _, cert := range chain {
			sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
			out = append(out, base64.StdEncoding.EncodeToString(sum[:]))
		}
	}
	return out, nil
}

func redact(loc string) string {
	if i := strings.IndexByte(loc, '?'); i >= 0 {
		return loc[:i]
	}
	return loc
}
