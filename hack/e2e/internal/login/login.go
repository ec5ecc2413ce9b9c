// Package login holds what the two browser drivers of the e2e suite share:
// their configuration, taken from flags with defaults from the environment,
// and the record of each run that tests count.
//
// A driver is started by latchkey as its --browser-command with the
// authorization URL as the last argument. latchkey splits the command on
// spaces, so the drivers take their settings from environment variables
// (which kubectl passes down from the kubeconfig's exec env or its own
// environment) and accept the same settings as flags.
package login

import (
	"flag"
	"fmt"
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
	// AuthURL is the URL to open: the authorization URL, or in ModeDevice
	// the verification URI.
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
	c.AuthURL = u
	switch c.Mode {
	case ModeLogin, ModeRedirect, ModeDevice:
	default:
		return nil, fmt.Errorf("unknown mode %q (want %s, %s or %s)", c.Mode, ModeLogin, ModeRedirect, ModeDevice)
	}
	return c, nil
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
// "<driver> <pid> <RFC3339 time> <client_id> <redirect_uri>". Appends of one
// short line with O_APPEND are atomic, so parallel drivers do not interleave.
func (c *Config) Record() error {
	if c.LogFile == "" {
		return nil
	}
	q := c.AuthURL.Query()
	line := fmt.Sprintf("%s %d %s %s %s\n", c.Name, os.Getpid(), time.Now().UTC().Format(time.RFC3339Nano),
		orDash(q.Get("client_id")), orDash(q.Get("redirect_uri")))
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
