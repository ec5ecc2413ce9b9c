package plugin

import (
	"crypto/tls"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
)

// ErrUsage reports options that cannot work together or are missing.
var ErrUsage = errors.New("invalid options")

// Options configure how latchkey gets a token. The flag names are those of
// int128/kubelogin's get-token, so a kubeconfig switches by changing only its
// command.
type Options struct {
	IssuerURL string
	ClientID  string
	// ClientSecret authenticates a confidential client; ClientSecretFile
	// and ClientSecretEnv name a file or an environment variable holding
	// it instead (a secret in a command line is visible in ps). At most one
	// of the three may be set.
	ClientSecret     string
	ClientSecretFile string
	ClientSecretEnv  string
	// ExtraScopes are requested besides openid, which is requested but for
	// the client's own access token (client credentials with
	// UseAccessToken) and Flyte logins.
	ExtraScopes []string
	// RedirectURL, if set, is the redirect_uri registered at the IdP; latchkey
	// listens on its port. Otherwise http://127.0.0.1:<port>/callback.
	RedirectURL string
	// ListenAddresses are tried in order when RedirectURL is empty; the
	// default is an OS-assigned port on 127.0.0.1 (RFC 8252 §7.3).
	ListenAddresses []string
	// AuthParams are extra authorization request parameters (audience=...);
	// with the client credentials grant, extra token request parameters.
	AuthParams map[string]string
	// RequestHeaders are sent with every request to the provider
	// (discovery, keys, token, device and revocation endpoints), e.g. the
	// Origin that Entra ID wants for single-page-application clients.
	RequestHeaders map[string]string
	// LocalServerCert and LocalServerKey make the loopback redirect https,
	// for providers that refuse http redirects: PEM files of the
	// listener's certificate and key.
	LocalServerCert, LocalServerKey string
	// OpenURLAfterAuthentication, if set, is where the browser goes after
	// a successful login, instead of latchkey's page.
	OpenURLAfterAuthentication string
	// UseAccessToken outputs the access token instead of the ID token.
	UseAccessToken bool
	// CAFiles and CAData add trusted roots for the IdP's TLS certificate.
	CAFiles []string
	CAData  []string
	// InsecureSkipTLSVerify turns off the IdP's certificate verification.
	InsecureSkipTLSVerify bool
	// TLSRenegotiation allows the provider's TLS server to renegotiate
	// (kubelogin's --tls-renegotiation-once and -freely); zero never.
	TLSRenegotiation tls.RenegotiationSupport
	// CacheDir is the token cache directory; "" means $XDG_CACHE_HOME/latchkey.
	CacheDir string
	// Storage is "disk" (the default), "keyring" (the tokens in the OS
	// keyring, the rest and the lock files in CacheDir; see cache.Keyring) or
	// "none".
	Storage string
	// FlyteEndpoint, if set, is a Flyte deployment's URL: the issuer's
	// metadata (RFC 8414) and the client id, redirect URI, scopes and
	// audience come from it (see Client and the package's Flyte constants),
	// and IssuerURL and ClientID become optional overrides. Set
	// UseAccessToken too: Flyte takes the access token (RegisterFlags does).
	FlyteEndpoint string
	// FlyteConfig names flytectl's configuration file to take the endpoint,
	// insecure and the ClientSecret settings from ("-": the one flytectl
	// finds); see ApplyFlyteConfig.
	FlyteConfig string
	// Insecure is flytectl's admin.insecure: the Flyte endpoint speaks
	// plain http, on loopback or not. It also allows an http issuer off
	// loopback, refused otherwise.
	Insecure bool
	// ResendAuthParams sends the authorization request's parameters again
	// with the code exchange (see pkce.Login.ResendAuthParams); nil means
	// on with FlyteEndpoint, off otherwise.
	ResendAuthParams *bool
	// ForceRefresh ignores a cached token that still looks valid, for when
	// the API server rejected it.
	ForceRefresh bool
	// BrowserCommand opens the login link (the URL is its last
	// argument); it takes precedence over $BROWSER and the platform opener.
	BrowserCommand string
	// SkipOpenBrowser only prints the URL.
	SkipOpenBrowser bool
	// AuthTimeout bounds a browser login.
	AuthTimeout time.Duration
	// LoginCooldown is how long after a failed or abandoned browser login a
	// background caller may not start another; zero or less disables it.
	LoginCooldown time.Duration
	// GrantType is how to log in: GrantAuto ("" too), GrantAuthCode,
	// GrantAuthCodeKeyboard or GrantDeviceCode; or GrantClientCredentials
	// for the client's own tokens, with no person.
	GrantType string
	// Verbose turns on debug logs on stderr.
	Verbose bool
}

// DefaultAuthTimeout is how long a browser login may take by default
// (kubelogin's --authentication-timeout-sec default).
const DefaultAuthTimeout = 180 * time.Second

// DefaultLoginCooldown is the --login-cooldown-sec default.
const DefaultLoginCooldown = 60 * time.Second

// RegisterFlags defines the flags of the commands that log in (get-token,
// token, setup) on fs, storing into o: RegisterProviderFlags' and those
// that say how to log in. It sets the flags' defaults in o.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	o.RegisterProviderFlags(fs)
	o.LoginCooldown = DefaultLoginCooldown
	fs.StringVar(&o.RedirectURL, "oidc-redirect-url", "", "redirect URI registered at the provider (default http://127.0.0.1:<random port>/callback)")
	fs.Func("listen-address", "loopback address for the redirect listener, tried in order (repeatable, comma-separated)", func(s string) error {
		l, err := csvFields(s)
		o.ListenAddresses = append(o.ListenAddresses, l...)
		return err
	})
	fs.StringVar(&o.LocalServerCert, "local-server-cert", "", "PEM certificate of the redirect listener, which then serves https (with --local-server-key)")
	fs.StringVar(&o.LocalServerKey, "local-server-key", "", "PEM key of the redirect listener's certificate (with --local-server-cert)")
	fs.StringVar(&o.OpenURLAfterAuthentication, "open-url-after-authentication", "", "URL the browser goes to after a successful login")
	fs.Var(optionalBool{&o.ResendAuthParams}, "resend-auth-params", "resend the authorization request's parameters with the code exchange (default true with --flyte-endpoint)")
	fs.BoolVar(&o.ForceRefresh, "force-refresh", false, "ignore a cached token that looks valid and refresh it")
	fs.StringVar(&o.BrowserCommand, "browser-command", "", "command that opens the login URL, given as its last argument")
	fs.BoolVar(&o.SkipOpenBrowser, "skip-open-browser", false, "print the login URL instead of opening a browser")
	fs.Func("authentication-timeout-sec", "how long a browser login may take, in seconds (default 180)", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive number of seconds, got %q", s)
		}
		o.AuthTimeout = time.Duration(n) * time.Second
		return nil
	})
	fs.Func("login-cooldown-sec", "after a failed or abandoned browser login, seconds during which background callers do not open another (default 60, 0 disables)", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of seconds, got %q", s)
		}
		o.LoginCooldown = time.Duration(n) * time.Second
		return nil
	})
	// kubelogin's names; its password grant is refused.
	fs.Func("grant-type", "how to log in: auto, authcode, authcode-keyboard or device-code; or client-credentials, the client's own token (default auto)", func(s string) error {
		if err := checkGrantType(s); err != nil {
			return err
		}
		o.GrantType = s
		return nil
	})
	fs.Func("oidc-pkce-method", "PKCE method: auto or S256 (latchkey always uses S256)", func(s string) error {
		if s != "auto" && s != "S256" {
			return fmt.Errorf("unsupported PKCE method %q (latchkey always uses S256: PKCE is required of native apps, RFC 8252 §8.1)", s)
		}
		return nil
	})
	fs.BoolFunc("oidc-use-pkce", "accepted for kubelogin kubeconfigs (deprecated there): PKCE S256 is always used", func(s string) error {
		if v, err := strconv.ParseBool(s); err != nil || !v {
			return fmt.Errorf("want true: latchkey always uses PKCE")
		}
		return nil
	})
	// kubelogin's password grant.
	refusePassword := func(string) error { return errPasswordGrant }
	fs.Func("username", "refused: the password grant must not be used (RFC 9700 §2.4)", refusePassword)
	fs.Func("password", "refused: the password grant must not be used (RFC 9700 §2.4)", refusePassword)
}

// RegisterProviderFlags defines the flags that name a login and how to
// reach its provider, the cache flags and -v on fs, storing into o: what
// logout needs besides the login itself.
func (o *Options) RegisterProviderFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.IssuerURL, "oidc-issuer-url", "", "issuer URL of the OpenID Connect provider (required)")
	fs.StringVar(&o.ClientID, "oidc-client-id", "", "OAuth client ID (required)")
	fs.StringVar(&o.ClientSecret, "oidc-client-secret", "", "OAuth client secret, for confidential clients (visible in ps: prefer --oidc-client-secret-file or -env)")
	fs.StringVar(&o.ClientSecretFile, "oidc-client-secret-file", "", "file holding the client secret (a trailing newline is ignored)")
	fs.StringVar(&o.ClientSecretEnv, "oidc-client-secret-env", "", "environment variable holding the client secret")
	fs.Func("oidc-extra-scope", "scopes to request besides openid (repeatable, comma-separated)", func(s string) error {
		for v := range strings.SplitSeq(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				o.ExtraScopes = append(o.ExtraScopes, v)
			}
		}
		return nil
	})
	fs.Func("oidc-auth-request-extra-params", "extra authorization request parameter key=value (repeatable; a=1,b=2 sets two)", func(s string) error {
		return addPairs(&o.AuthParams, s)
	})
	fs.Func("oidc-request-header", "HTTP header NAME=VALUE sent with every request to the provider (repeatable; a=1,b=2 sets two)", func(s string) error {
		return addPairs(&o.RequestHeaders, s)
	})
	fs.BoolVar(&o.UseAccessToken, "oidc-use-access-token", false, "output the access token instead of the ID token")
	fs.Func("certificate-authority", "PEM file of CA certificates for the provider (repeatable)", func(s string) error {
		o.CAFiles = append(o.CAFiles, s)
		return nil
	})
	fs.Func("certificate-authority-data", "base64 PEM of CA certificates for the provider (repeatable)", func(s string) error {
		o.CAData = append(o.CAData, s)
		return nil
	})
	fs.BoolVar(&o.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "do not verify the provider's TLS certificate (insecure)")
	fs.BoolFunc("tls-renegotiation-once", "let the provider's TLS server renegotiate once per connection", func(string) error {
		o.TLSRenegotiation = tls.RenegotiateOnceAsClient
		return nil
	})
	fs.BoolFunc("tls-renegotiation-freely", "let the provider's TLS server renegotiate repeatedly", func(string) error {
		o.TLSRenegotiation = tls.RenegotiateFreelyAsClient
		return nil
	})
	// Flyte (see flyte.go).
	fs.Func("flyte-endpoint", "Flyte deployment to discover the login from (client id, redirect URI, scopes): a URL, host:port or flytectl's dns:///host:port; implies --oidc-use-access-token", func(s string) error {
		o.FlyteEndpoint = strings.TrimSpace(s)
		o.UseAccessToken = true
		return nil
	})
	fs.Var(flyteConfigFlag{o}, "flyte-config", "take the Flyte endpoint, insecure and ClientSecret settings from flytectl's config file (=FILE; default $FLYTECTL_CONFIG or ~/.flyte/config.yaml)")
	fs.BoolVar(&o.Insecure, "insecure", false, "allow plain http off loopback: the Flyte endpoint speaks it (flytectl's admin.insecure), or the issuer does")
	o.RegisterCacheFlags(fs)
	fs.Func("token-cache-storage", "token storage: disk, keyring (the OS keychain; lock files stay on disk) or none (default disk)", func(s string) error {
		switch s {
		case "disk", "keyring", "none":
			o.Storage = s
			return nil
		}
		return fmt.Errorf("unsupported storage %q (want disk, keyring or none)", s)
	})
	fs.Var(verbosity{&o.Verbose}, "v", "debug logs on stderr (-v or --v=N)")
}

// RegisterCacheFlags defines --token-cache-dir on fs, storing into
// o.CacheDir: what the commands that only read the cache (status) need.
func (o *Options) RegisterCacheFlags(fs *flag.FlagSet) {
	fs.Func("token-cache-dir", "token cache directory (default $XDG_CACHE_HOME/latchkey; a leading ~/ is your home)", func(s string) error {
		if rest, ok := strings.CutPrefix(s, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			s = filepath.Join(home, rest)
		}
		o.CacheDir = s
		return nil
	})
}

// verbosity accepts -v and kubelogin's klog-style --v=N.
type verbosity struct{ on *bool }

func (v verbosity) String() string {
	if v.on != nil && *v.on {
		return "1"
	}
	return "0"
}

func (v verbosity) Set(s string) error {
	if b, err := strconv.ParseBool(s); err == nil {
		*v.on = b
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a level number, got %q", s)
	}
	*v.on = n > 0
	return nil
}

func (v verbosity) IsBoolFlag() bool { return true }

// Validate reports missing or malformed options with ErrUsage.
func (o *Options) Validate() error {
	if err := o.source().validate(); err != nil {
		return err
	}
	if o.RedirectURL != "" && len(o.ListenAddresses) > 0 {
		return fmt.Errorf("%w: --oidc-redirect-url and --listen-address are exclusive (the redirect URL names the address)", ErrUsage)
	}
	if n := btoi(o.ClientSecret != "") + btoi(o.ClientSecretFile != "") + btoi(o.ClientSecretEnv != ""); n > 1 {
		return fmt.Errorf("%w: give the client secret one way: --oidc-client-secret, --oidc-client-secret-file or --oidc-client-secret-env", ErrUsage)
	}
	if o.GrantType == GrantClientCredentials && btoi(o.ClientSecret != "")+btoi(o.ClientSecretFile != "")+btoi(o.ClientSecretEnv != "") == 0 {
		return fmt.Errorf("%w: --grant-type=client-credentials needs the client's secret (--oidc-client-secret-file, --oidc-client-secret-env or --oidc-client-secret)", ErrUsage)
	}
	if (o.LocalServerCert == "") != (o.LocalServerKey == "") {
		return fmt.Errorf("%w: --local-server-cert and --local-server-key go together", ErrUsage)
	}
	if u := o.OpenURLAfterAuthentication; u != "" {
		if p, err := url.Parse(u); err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
			return fmt.Errorf("%w: --open-url-after-authentication %q is not an http(s) URL", ErrUsage, u)
		}
	}
	for name := range o.RequestHeaders {
		if !isToken(name) {
			return fmt.Errorf("%w: --oidc-request-header %q is not a header name", ErrUsage, name)
		}
	}
	if err := checkGrantType(o.GrantType); err != nil {
		return fmt.Errorf("%w: --grant-type: %w", ErrUsage, err)
	}
	// The loopback redirect is checked now, not when a login needs it:
	// bad input must fail before anything is read or written. A keyboard
	// login redirects nowhere local, so any redirect URL suits it.
	redirect, listen := o.RedirectURL, o.ListenAddresses
	if o.GrantType == GrantAuthCodeKeyboard || o.GrantType == GrantClientCredentials {
		redirect, listen = "", nil
	}
	if err := pkce.Validate(redirect, listen, o.AuthParams, o.LocalServerCert != ""); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return nil
}

// checkGrantType accepts the grant types latchkey implements ("" is auto).
func checkGrantType(s string) error {
	switch s {
	case "", GrantAuto, GrantAuthCode, GrantAuthCodeKeyboard, GrantDeviceCode, GrantClientCredentials:
		return nil
	case "password":
		return errPasswordGrant
	}
	return fmt.Errorf("unsupported grant type %q (want auto, authcode, authcode-keyboard, device-code or client-credentials)", s)
}

// errPasswordGrant refuses kubelogin's password grant and its flags.
var errPasswordGrant = errors.New("the password grant is not supported: it hands your password to a program instead of your " +
	"provider's login page, so it must not be used (RFC 9700 §2.4); log in with --grant-type=auto (a browser), " +
	"device-code (no browser here), or client-credentials (a CI job, with the client's secret)")

// addPairs adds the key=value pairs of s to *m, as kubelogin's flags of
// that kind read them: s is one pair, or, with two or more '=', a
// comma-separated (CSV) list of pairs.
func addPairs(m *map[string]string, s string) error {
	pairs := []string{s}
	if strings.Count(s, "=") >= 2 {
		var err error
		if pairs, err = csvFields(s); err != nil {
			return err
		}
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", p)
		}
		if *m == nil {
			*m = make(map[string]string)
		}
		(*m)[k] = strings.Trim(v, `"`)
	}
	return nil
}

// csvFields splits s as one CSV record (kubelogin's comma-separated flags).
func csvFields(s string) ([]string, error) {
	r := csv.NewReader(strings.NewReader(s))
	f, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("malformed comma-separated list %q: %w", s, err)
	}
	return f, nil
}

// secret returns the client secret: as given, or read from the file or
// environment variable named (getenv reads the environment); "" for a
// public client.
func (o *Options) secret(getenv func(string) string) (string, error) {
	switch {
	case o.ClientSecretFile != "":
		b, err := os.ReadFile(o.ClientSecretFile)
		if err != nil {
			return "", fmt.Errorf("read the client secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case o.ClientSecretEnv != "":
		v := getenv(o.ClientSecretEnv)
		if v == "" {
			return "", fmt.Errorf("%w: --oidc-client-secret-env: %s is empty or unset", ErrUsage, o.ClientSecretEnv)
		}
		return v, nil
	}
	return o.ClientSecret, nil
}

// grantKey is cache.Key's Grant for these options.
func (o *Options) grantKey() string {
	if o.GrantType == GrantClientCredentials {
		return GrantClientCredentials
	}
	return ""
}

// isToken tells whether s is an HTTP token (RFC 9110 §5.6.2), as a header
// name must be.
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Key returns the cache key of the token these options produce. It needs no
// network: a Flyte login's key is made of the endpoint and the flags.
func (o *Options) Key() cache.Key {
	return o.source().key()
}

// Describe names the login the options are for, for messages: the issuer
// (or Flyte endpoint) and the client id; never a secret.
func (o *Options) Describe() string {
	return o.source().describe()
}

// flyteConfigFlag is --flyte-config, alone ("-": the file flytectl finds)
// or with a file.
type flyteConfigFlag struct{ o *Options }

func (f flyteConfigFlag) String() string {
	if f.o == nil {
		return ""
	}
	return f.o.FlyteConfig
}

func (f flyteConfigFlag) Set(s string) error {
	if s == "true" {
		s = "-"
	}
	f.o.FlyteConfig = s
	f.o.UseAccessToken = true
	return nil
}

func (f flyteConfigFlag) IsBoolFlag() bool { return true }

// optionalBool is a boolean flag whose absence is told apart from false.
type optionalBool struct{ p **bool }

func (b optionalBool) String() string {
	if b.p == nil || *b.p == nil {
		return ""
	}
	return strconv.FormatBool(**b.p)
}

func (b optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", s)
	}
	*b.p = &v
	return nil
}

func (b optionalBool) IsBoolFlag() bool { return true }
