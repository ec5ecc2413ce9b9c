// Command browser-http logs in to Dex's password form with net/http and a
// cookie jar, for the e2e scenarios that do not need a real browser. latchkey
// runs it as --browser-command with the authorization URL as the last
// argument; it follows the redirects to latchkey's loopback callback and exits
// 0 once the callback answered with a 2xx status.
//
// Settings come from flags or the environment (see package login). Nothing is
// written to stdout.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/latchkey/latchkey/hack/e2e/internal/login"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "browser-http: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	c, err := login.Parse("browser-http", os.Args[1:])
	if err != nil {
		return err
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

	hc, err := newClient(c.CAFile)
	if err != nil {
		return err
	}
	// 1. The authorization request: Dex redirects to the local connector's form.
	resp, body, err := do(ctx, hc, http.MethodGet, c.AuthURL.String(), nil)
	if err != nil {
		return err
	}
	if login.IsCallback(resp.Request.URL, redirect) {
		// Dex remembered nothing, so this cannot happen, but a session cookie
		// of another IdP might: treat it as done.
		return expectOK(resp, body)
	}
	action, err := formAction(resp.Request.URL, body)
	if err != nil {
		return err
	}
	// 2. Post the credentials; Dex redirects (approval skipped) to the callback.
	form := url.Values{"login": {c.User}, "password": {c.Password}}
	resp, body, err = do(ctx, hc, http.MethodPost, action, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	if !login.IsCallback(resp.Request.URL, redirect) {
		return fmt.Errorf("login ended at %s (%s), not at the redirect URI: %.300q", redactURL(resp.Request.URL), resp.Status, body)
	}
	return expectOK(resp, body)
}

func newClient(caFile string) (*http.Client, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA %s: no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Jar: jar, Transport: tr}, nil
}

func do(ctx context.Context, hc *http.Client, method, u string, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, b, err
}

var actionRE = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"`)

// formAction finds the login form's action, resolved against the page URL.
func formAction(page *url.URL, body []byte) (string, error) {
	if !strings.Contains(string(body), `id="password"`) {
		return "", fmt.Errorf("no password form at %s: %.300q", redactURL(page), body)
	}
	m := actionRE.FindSubmatch(body)
	if m == nil {
		return page.String(), nil
	}
	a, err := url.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		return "", fmt.Errorf("form action: %w", err)
	}
	return page.ResolveReference(a).String(), nil
}

func expectOK(resp *http.Response, body []byte) error {
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("callback answered %s: %.300q", resp.Status, body)
	}
	fmt.Fprintf(os.Stderr, "browser-http: callback answered %s\n", resp.Status)
	return nil
}

// redactURL drops the query, which may hold a code or state.
func redactURL(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	return v.String()
}
