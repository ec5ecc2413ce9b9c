// Package login holds what the two browser drivers of the e2e suite share:
// their configuration, taken from flags with defaults from the environment,
// and the record of each run that tests count.
//
// A driver is started by latchkey as its --browser-command with a login link
// on latchkey's loopback server as the last argument, which redirects to the
// authorization URL (kubelogin gives the authorization URL itself). latchkey
// splits the command on spaces, so the drivers take their settings from
// environment variables (which kubectl passes down from the kubeconfig's
// exec env or its own environment) and accept the same settings as flags.
package login

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Environment variables read by the drivers.
const (
	// EnvLog names a file to which every run appends one line.
	EnvLog = "E2E_BROWSER_LOG"
	// EnvUser and EnvPassword are the Dex static user's credentials.
	EnvUser     = "E2E_LOGIN_USER"
	EnvPassword = "E2E_LOGIN_PASSWORD"
	// EnvCA names a PEM file with the CA that signed Dex's serving certificate.
	EnvCA = "E2E_LOGIN_CA"
	// EnvFail makes a driver exit non-zero without logging in, after recording
	// the run; tests use it to assert that no login was attempted.
	EnvFail = "E2E_BROWSER_FAIL"
	// EnvMode selects what the driver does with its URL (see Mode).
	EnvMode = "E2E_BROWSER_MODE"
)

// Modes of a driver (Config.Mode).
const (
	// ModeLogin logs in at the authorization URL and follows the redirects
	// to latchkey's loopback callback: the browser login.
	ModeLogin = "login"
	// ModeRedirect logs in at the authorization URL but stops before the
	// redirect to the redirect URI, and prints that URL (with code, state
	// and iss) and a newline on stdout: what a person copies from the
	// address bar for latchkey's keyboard login. Only browser-http has it.
	ModeRedirect = "redirect"
	// ModeDevice opens a device verification URI (RFC 8628 §3.3), submits
	// the user code (Config.UserCode, or the one the page has filled in from
	// verification_uri_complete), logs in and grants access. Only
	// browser-http has it.
	ModeDevice = "device"
)

// Config is a driver's configuration.
type Config struct {
	Name     string // driver name, recorded in the log
	LogFile  string
	User     string
	Password string
	CAFile   string
	Fail     bool
	Timeout  time.Duration
	// Mode is ModeLogin, ModeRedirect or ModeDevice.
	Mode string
	// UserCode is the device login's user code; empty means the one the
	// verification page has filled in.
	UserCode string
	// Link is the URL the driver was given, which it opens: latchkey's
	// login link, an authorization URL, or in ModeDevice the verification
	// URI.
	Link *url.URL
	// AuthURL is the authorization URL: where a login link leads, or Link
	// itself if it is not one.
	AuthURL *url.URL
}

// Parse reads flags (args excludes the program name) with defaults from the
// environment. The last positional argument is the authorization URL.
func Parse(name string, args []string) (*Config, error) {
	c := &Config{Name: name}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.LogFile, "log", os.Getenv(EnvLog), "append one line per run to this `file`")
	fs.StringVar(&c.User, "user", envOr(EnvUser, "e2e@example.com"), "login name")
	fs.StringVar(&c.Password, "password", envOr(EnvPassword, "password"), "password")
	fs.StringVar(&c.CAFile, "ca", os.Getenv(EnvCA), "PEM `file` of the CA that signed the IdP's certificate")
	fs.BoolVar(&c.Fail, "fail", os.Getenv(EnvFail) != "", "record the run, then fail without logging in")
	fs.DurationVar(&c.Timeout, "timeout", 60*time.Second, "give up after this long")
	fs.StringVar(&c.Mode, "mode", envOr(EnvMode, ModeLogin), "`mode`: login, redirect (print the redirect URL, do not follow it) or device (verification URI)")
	fs.StringVar(&c.UserCode, "user-code", "", "device login: the user `code` to enter (default: the one the page has filled in)")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		return nil, fmt.Errorf("usage: %s [flags] AUTHORIZATION_URL", name)
	}
	u, err := url.Parse(fs.Arg(fs.NArg() - 1))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("last argument %q is not an http(s) URL", fs.Arg(fs.NArg()-1))
	}
	c.Link, c.AuthURL = u, u
	switch c.Mode {
	case ModeLogin, ModeRedirect, ModeDevice:
	default:
		return nil, fmt.Errorf("unknown mode %q (want %s, %s or %s)", c.Mode, ModeLogin, ModeRedirect, ModeDevice)
	}
	if c.IsLink() {
		if c.AuthURL, err = c.follow(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// IsLink reports whether the driver was given latchkey's login link (a
// /start/ path on a loopback address) rather than an authorization URL.
func (c *Config) IsLink() bool {
	ip := net.ParseIP(c.Link.Hostname())
	loopback := c.Link.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	return c.Mode != ModeDevice && loopback && strings.HasPrefix(c.Link.Path, "/start/")
}

// follow opens the login link once, without following its redirect, and
// returns the authorization URL it leads to. The driver then opens the link
// again, as the browser: that works where latchkey can tell who connects
// (Linux, where the e2e suite runs); elsewhere the link works once.
func (c *Config) follow() (*url.URL, error) {
	tr := &http.Transport{}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(c.Link.String())
	if err != nil {
		return nil, fmt.Errorf("open the login link: %w", err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusFound || err != nil {
		return nil, fmt.Errorf("login link %s: %s, want a redirect to the authorization URL", c.Link.Redacted(), resp.Status)
	}
	return loc, nil
}

// RedirectURI is the redirect_uri of the authorization request.
func (c *Config) RedirectURI() (*url.URL, error) {
	r := c.AuthURL.Query().Get("redirect_uri")
	if r == "" {
		return nil, fmt.Errorf("authorization URL has no redirect_uri")
	}
	return url.Parse(r)
}

// Record appends one line describing this run to the log file, if any:
// "<driver> <pid> <RFC3339 time> <client_id> <redirect_uri> <given>", where
// given is "link" for a login link and "url" otherwise (a test checks that
// latchkey never puts the authorization URL, state included, in a browser's
// command line). Appends of one short line with O_APPEND are atomic, so
// parallel drivers do not interleave.
func (c *Config) Record() error {
	if c.LogFile == "" {
		return nil
	}
	q := c.AuthURL.Query()
	given := "url"
	if c.IsLink() {
		given = "link"
	}
	line := fmt.Sprintf("%s %d %s %s %s %s\n", c.Name, os.Getpid(), time.Now().UTC().Format(time.RFC3339Nano),
		orDash(q.Get("client_id")), orDash(q.Get("redirect_uri")), given)
	f, err := os.OpenFile(c.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record run: %w", err)
	}
	return f.Close()
}

// IsCallback reports whether u is the redirect URI (scheme, host and path),
// that is, the browser reached latchkey's loopback server.
func IsCallback(u, redirect *url.URL) bool {
	return u.Scheme == redirect.Scheme && u.Host == redirect.Host && strings.TrimSuffix(u.Path, "/") == strings.TrimSuffix(redirect.Path, "/")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
