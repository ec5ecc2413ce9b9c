// Command browser-chromedp logs in to Dex's password form in a real, headless
// Chromium driven through the DevTools protocol (github.com/chromedp/chromedp).
// latchkey runs it as --browser-command with the authorization URL as the last
// argument. It starts Chromium with a fresh profile, fills the form (ids
// login, password, submit-login), waits until the browser shows latchkey's
// loopback callback page, and exits 0.
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
	if err := chromedp.Do(bctx,
		chromedp.Navigate(c.AuthURL.String()),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("login"), c.User),
		chromedp.SendKeys(chromedp.ID("password"), c.Password),
		chromedp.Click(chromedp.ID("submit-login")),
	); err != nil {
		loc, _ := chromedp.Run(bctx, chromedp.Location())
		return fmt.Errorf("fill the login form (page %s): %w", redact(loc), err)
	}
	// Dex answers the POST with redirects to latchkey's callback; wait until
	// the browser shows it, fully loaded.
	for {
		loc, err := chromedp.Run(bctx, chromedp.Location())
		if err == nil {
			if bad, _ := chromedp.Run(bctx, chromedp.Evaluate[bool](`!!document.getElementById("login-error")`)); bad {
				return fmt.Errorf("dex refused the credentials of %s", c.User)
			}
			if u, perr := url.Parse(loc); perr == nil && login.IsCallback(u, redirect) {
				state, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.readyState`))
				if err == nil && state == "complete" {
					text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
					fmt.Fprintf(os.Stderr, "browser-chromedp: callback page shown after %v: %.200q\n", time.Since(start).Round(time.Millisecond), text)
					return nil
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
