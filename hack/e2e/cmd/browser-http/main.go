// Command browser-http logs in to Dex's password form, or to oidc-provider's
// devInteractions pages, with net/http and a cookie jar, for the e2e
// scenarios that do not need a real browser. It submits the forms the IdP
// shows, one after another: the device page's user code (and oidc-provider's
// confirmation of it), the password form, the approval (consent) screen.
//
// Modes (-mode or E2E_BROWSER_MODE, see package login):
//
//   - login (default): latchkey runs it as --browser-command with the
//     authorization URL as the last argument; it follows the redirects to
//     latchkey's loopback callback and exits 0 once the callback answered
//     with a 2xx status.
//   - redirect: the same login, but it stops before the redirect to the
//     redirect URI and prints that URL and a newline on stdout, as a person
//     copies it from the address bar for latchkey's keyboard login.
//   - device: the URL is a device verification URI (RFC 8628 §3.3); it
//     submits the user code (-user-code, or the one the page filled in from
//     verification_uri_complete), logs in, grants access, and exits 0 on
//     Dex's "Login Successful" page (oidc-provider's "Sign-in Success").
//
// Settings come from flags or the environment (see package login). Nothing
// but the redirect mode's URL is written to stdout.
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

// maxSteps bounds the pages submitted in one login (user code, password,
// approval, and some slack).
const maxSteps = 6

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
	var redirect *url.URL
	if c.Mode != login.ModeDevice {
		if redirect, err = c.RedirectURI(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()

	hc, err := newClient(c.CAFile)
	if err != nil {
		return err
	}
	if c.Mode == login.ModeRedirect {
		// Nothing listens at the redirect URI: stop before requesting it.
		hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if login.IsCallback(req.URL, redirect) {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
	}

	// The authorization request (or the verification page); then one form
	// per step until the login ends where the mode wants it to.
	resp, body, err := do(ctx, hc, http.MethodGet, c.Link.String(), nil)
	if err != nil {
		return err
	}
	for range maxSteps {
		switch {
		case c.Mode == login.ModeLogin && login.IsCallback(resp.Request.URL, redirect):
			return expectOK(resp, body)
		case c.Mode == login.ModeRedirect && resp.StatusCode/100 == 3:
			loc, err := resp.Location()
			if err != nil || !login.IsCallback(loc, redirect) {
				return fmt.Errorf("%s redirected elsewhere than to the redirect URI", redactURL(resp.Request.URL))
			}
			fmt.Fprintf(os.Stderr, "browser-http: stopped at the redirect to %s\n", redactURL(loc))
			_, err = fmt.Println(loc.String())
			return err
		case c.Mode == login.ModeDevice && resp.StatusCode == http.StatusOK &&
			(strings.Contains(string(body), "Login Successful") || strings.Contains(string(body), "<h1>Sign-in Success</h1>")):
			fmt.Fprintf(os.Stderr, "browser-http: device login approved (%s)\n", redactURL(resp.Request.URL))
			return nil
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s answered %s: %.300q", redactURL(resp.Request.URL), resp.Status, body)
		}
		f, err := nextForm(resp.Request.URL, body, c)
		if err != nil {
			return err
		}
		resp, body, err = do(ctx, hc, http.MethodPost, f.action, strings.NewReader(f.values.Encode()))
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("login did not end after %d pages; last at %s (%s)", maxSteps, redactURL(resp.Request.URL), resp.Status)
}

// form is a form to submit.
type form struct {
	action string
	values url.Values
}

// nextForm picks the form of an IdP page and fills it in: the password form
// (inputs login and password: Dex's and oidc-provider's), the device page's
// user code (input user_code; oidc-provider's confirmation form has it too,
// hidden), Dex's approval screen (approval=approve) or oidc-provider's
// consent screen (prompt=consent). A page that says the previous input was
// wrong, or oidc-provider's error page, is an error.
func nextForm(page *url.URL, body []byte, c *login.Config) (*form, error) {
	s := string(body)
	if strings.Contains(s, `id="login-error"`) {
		return nil, fmt.Errorf("%s says the input was wrong: %.300q", redactURL(page), body)
	}
	if strings.Contains(s, "<title>oops! something went wrong</title>") || strings.Contains(s, `<p class="red">`) {
		return nil, fmt.Errorf("%s shows an error: %.400q", redactURL(page), body)
	}
	forms := parseForms(page, s)
	for _, f := range forms {
		switch {
		case f.has("password"):
			f.values.Set("login", c.User)
			f.values.Set("password", c.Password)
			return f, nil
		case f.has("user_code"):
			if c.UserCode != "" {
				f.values.Set("user_code", c.UserCode)
			}
			if f.values.Get("user_code") == "" {
				return nil, fmt.Errorf("%s asks for a user code and none was given (-user-code)", redactURL(page))
			}
			return f, nil
		case f.values.Get("approval") == "approve", f.values.Get("prompt") == "consent":
			return f, nil
		}
	}
	return nil, fmt.Errorf("no password, user code, approval or consent form at %s: %.300q", redactURL(page), body)
}

var (
	formRE  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRE = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRE  = regexp.MustCompile(`(?is)([a-z_-]+)\s*=\s*"([^"]*)"`)
)

// parseForms returns the page's forms with their action resolved against
// the page URL (no action: the page itself) and the values of their named
// inputs.
func parseForms(page *url.URL, body string) []*form {
	var forms []*form
	for _, m := range formRE.FindAllStringSubmatch(body, -1) {
		f := &form{action: page.String(), values: url.Values{}}
		if a := attrs(m[1])["action"]; a != "" {
			if u, err := url.Parse(a); err == nil {
				f.action = page.ResolveReference(u).String()
			}
		}
		for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
			at := attrs(in[1])
			if at["name"] != "" {
				f.values.Set(at["name"], at["value"])
			}
		}
		forms = append(forms, f)
	}
	return forms
}

func (f *form) has(name string) bool { _, ok := f.values[name]; return ok }

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRE.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
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

func expectOK(resp *http.Response, body []byte) error {
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("callback answered %s: %.300q", resp.Status, body)
	}
	fmt.Fprintf(os.Stderr, "browser-http: callback answered %s\n", resp.Status)
	return nil
}

// redactURL drops the query, which may hold a code, state or user code.
func redactURL(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	return v.String()
}
