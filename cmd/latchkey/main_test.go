package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientauthv1beta1 "k8s.io/client-go/pkg/apis/clientauthentication/v1beta1"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// The test binary doubles as a browser: latchkey runs it as
// --browser-command with the login URL as its last argument.
const (
	browserEnv   = "LATCHKEY_TEST_BROWSER_LOG" // file the browser appends a line to per run
	browserCAEnv = "LATCHKEY_TEST_BROWSER_CA"  // CA file the browser trusts
	// browserModeEnv picks what the browser does with the login URL:
	//   follow (or empty)  follow it to the loopback callback, as a person signed in at the IdP
	//   deny               send the callback an access_denied error response, as an IdP whose user declined
	//   abandon            nothing: the person closed the tab
	//   hang               nothing, and stay running (stdout and stderr closed) until <log>.stop exists
	browserModeEnv = "LATCHKEY_TEST_BROWSER_MODE"
	// browserGateEnv, if set, names a file the browser waits for before it acts.
	browserGateEnv = "LATCHKEY_TEST_BROWSER_GATE"
	stdoutMarker   = "BROWSER-STDOUT-MARKER"
)

// bin is the latchkey binary built for these tests.
var bin string

func TestMain(m *testing.M) {
	if log := os.Getenv(browserEnv); log != "" {
		os.Exit(browse(log, os.Getenv(browserCAEnv), os.Getenv(browserModeEnv), os.Getenv(browserGateEnv), os.Args[len(os.Args)-1]))
	}
	dir, err := os.MkdirTemp("", "latchkey-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "latchkey")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build latchkey: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// browse plays a person already signed in at the IdP: it follows the login
// URL to the loopback callback, or does what mode says (see browserModeEnv).
func browse(log, caFile, mode, gate, rawURL string) int {
	f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		fmt.Fprintln(f, "opened")
		f.Close()
	}
	fmt.Println(stdoutMarker) // must never reach latchkey's stdout
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if gate != "" && !waitFile(ctx, gate) {
		fmt.Fprintln(os.Stderr, "browser: gate never opened")
		return 1
	}
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	switch mode {
	case "", "follow":
	case "abandon":
		return 0
	case "hang":
		// Close the pipes latchkey's caller may wait on, then linger.
		os.Stdout.Close()
		os.Stderr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		waitFile(ctx, log+".stop")
		return 0
	case "deny":
		// The login link redirects to the authorization URL, whose
		// redirect_uri and state the IdP would answer.
		nofollow := *hc
		nofollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := nofollow.Get(rawURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "browser:", err)
			return 1
		}
		resp.Body.Close()
		u, err := resp.Location()
		if err != nil {
			fmt.Fprintln(os.Stderr, "browser: login link:", resp.Status, err)
			return 1
		}
		cb, err := url.Parse(u.Query().Get("redirect_uri"))
		if err != nil {
			return 1
		}
		q := url.Values{"error": {"access_denied"}, "error_description": {"the user declined"}, "state": {u.Query().Get("state")}}
		cb.RawQuery = q.Encode()
		rawURL = cb.String()
		_ = idptest.Browse(ctx, hc, rawURL) // the failure page is not 2xx
		return 0
	default:
		fmt.Fprintf(os.Stderr, "browser: unknown mode %q\n", mode)
		return 1
	}
	if err := idptest.Browse(ctx, hc, rawURL); err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	return 0
}

// waitFile waits for path to exist; false if ctx ends first.
func waitFile(ctx context.Context, path string) bool {
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// env is one IdP, one cache directory and one browser log.
type env struct {
	t     *testing.T
	idp   *idptest.Server
	dir   string
	ca    string
	blog  string
	extra []string
	// browser holds extra environment variables for the browser
	// (browserModeEnv, browserGateEnv).
	browser []string
}

func newEnv(t *testing.T, cfg idptest.Config) *env {
	t.Helper()
	cfg.TLS = true
	e := &env{t: t, idp: idptest.NewServer(cfg), dir: t.TempDir()}
	t.Cleanup(e.idp.Close)
	tmp := t.TempDir()
	e.ca = filepath.Join(tmp, "ca.pem")
	e.blog = filepath.Join(tmp, "browser.log")
	if err := os.WriteFile(e.ca, e.idp.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) args() []string {
	return append([]string{
		"get-token",
		"--oidc-issuer-url=" + e.idp.URL,
		"--oidc-client-id=" + idptest.DefaultClientID,
		"--oidc-extra-scope=email,groups",
		"--certificate-authority=" + e.ca,
		"--token-cache-dir=" + e.dir,
		"--browser-command=" + os.Args[0],
		"--authentication-timeout-sec=20",
	}, e.extra...)
}

func (e *env) environ(execInfo string) []string {
	env := append(os.Environ(), browserEnv+"="+e.blog, browserCAEnv+"="+e.ca, "BROWSER=")
	env = append(env, e.browser...)
	if execInfo != "" {
		env = append(env, plugin.ExecInfoEnv+"="+execInfo)
	}
	return env
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *env) run(execInfo string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = e.environ(execInfo)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("run latchkey: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

func (e *env) browsersOpened() int {
	b, err := os.ReadFile(e.blog)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Count(string(b), "opened\n")
}

// snapshot returns the cache entries (lock files aside) and their contents.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	m := map[string]string{}
	des, _ := os.ReadDir(e.dir)
	for _, d := range des {
		if strings.HasSuffix(d.Name(), ".lock") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(e.dir, d.Name()))
		m[d.Name()] = string(b)
	}
	return m
}

const (
	execInfoV1      = `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`
	execInfoV1beta1 = `{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}`
)

// TestExecAuthenticator runs latchkey the way kubectl does: through
// client-go's exec authenticator, which checks the whole contract (stdout
// holds exactly one ExecCredential of the kubeconfig's apiVersion) and sends
// the token to the API server.
func TestExecAuthenticator(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	var mu sync.Mutex
	var auth []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"]}`)
	}))
	defer api.Close()
	var envVars []clientcmdapi.ExecEnvVar
	for _, kv := range e.environ("") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "LATCHKEY_TEST_") {
			envVars = append(envVars, clientcmdapi.ExecEnvVar{Name: k, Value: v})
		}
	}
	for _, v := range []string{plugin.APIVersionV1, plugin.APIVersionV1beta1} {
		cfg := &rest.Config{Host: api.URL, ExecProvider: &clientcmdapi.ExecConfig{
			APIVersion:      v,
			Command:         bin,
			Args:            e.args(),
			Env:             envVars,
			InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}}
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(api.URL + "/api")
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		resp.Body.Close()
	}
	entry, err := cache.Open(e.dir).Load(e.key().ID())
	if err != nil {
		t.Fatal(err)
	}
	want := "Bearer " + entry.IDToken
	if len(auth) != 2 || auth[0] != want || auth[1] != want {
		t.Errorf("API server saw Authorization %d times, want twice the cached ID token", len(auth))
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

func (e *env) key() cache.Key {
	o := plugin.Options{IssuerURL: e.idp.URL, ClientID: idptest.DefaultClientID, ExtraScopes: []string{"email", "groups"}}
	return o.Key()
}

func TestOutputContract(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	for _, tt := range []struct{ name, info, want string }{
		{"v1", execInfoV1, plugin.APIVersionV1},
		{"v1beta1", execInfoV1beta1, plugin.APIVersionV1beta1},
		{"no exec info", "", plugin.APIVersionV1beta1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(tt.info, e.args()...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if strings.Contains(r.stdout, stdoutMarker) {
				t.Fatal("the browser's output reached stdout")
			}
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			dec.DisallowUnknownFields()
			var token string
			if tt.want == plugin.APIVersionV1 {
				var c clientauthv1.ExecCredential
				if err := dec.Decode(&c); err != nil {
					t.Fatalf("decode %q: %v", r.stdout, err)
				}
				token = c.Status.Token
				if c.APIVersion != tt.want || c.Status.ExpirationTimestamp == nil {
					t.Errorf("apiVersion %q, expiration %v", c.APIVersion, c.Status.ExpirationTimestamp)
				}
			} else {
				var c clientauthv1beta1.ExecCredential
				if err := dec.Decode(&c); err != nil {
					t.Fatalf("decode %q: %v", r.stdout, err)
				}
				token = c.Status.Token
				if c.APIVersion != tt.want || c.Status.ExpirationTimestamp == nil {
					t.Errorf("apiVersion %q, expiration %v", c.APIVersion, c.Status.ExpirationTimestamp)
				}
			}
			if dec.More() {
				t.Error("stdout holds more than one document")
			}
			if token == "" || strings.Contains(r.stderr, token) {
				t.Error("token empty, or printed on stderr")
			}
		})
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

// TestBadInput: one clear line on stderr, non-zero exit, nothing on stdout,
// and the cache exactly as it was.
func TestBadInput(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	if r := e.run(execInfoV1, e.args()...); r.code != 0 {
		t.Fatalf("first login: exit %d: %s", r.code, r.stderr)
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"issuer": 42`)
	}))
	defer broken.Close()
	common := []string{"--token-cache-dir=" + e.dir, "--browser-command=" + os.Args[0]}
	tests := []struct {
		name, info string
		args       []string
		want       string
	}{
		{"no issuer", execInfoV1, []string{"get-token", "--oidc-client-id=x"}, "--oidc-issuer-url"},
		{"no client id", execInfoV1, []string{"get-token", "--oidc-issuer-url=" + e.idp.URL}, "--oidc-client-id is required"},
		{"unknown flag", execInfoV1, []string{"get-token", "--oidc-issuer=x"}, "flag provided but not defined"},
		{"unknown command", "", []string{"get-tokens"}, "unknown command"},
		{"malformed exec info", `{"apiVersion":`, e.args(), "invalid KUBERNETES_EXEC_INFO"},
		{"unknown apiVersion", `{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}`, e.args(), "unsupported apiVersion"},
		{"unreadable CA", execInfoV1, append(e.args(), "--force-refresh", "--certificate-authority=/nonexistent/ca.pem"), "read certificate authority"},
		{"broken discovery", execInfoV1, append([]string{"get-token", "--oidc-issuer-url=" + broken.URL, "--oidc-client-id=x"}, common...), "provider discovery failed"},
		{"bad timeout", execInfoV1, append(e.args(), "--authentication-timeout-sec=soon"), "positive number of seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.run(tt.info, tt.args...)
			if r.code == 0 {
				t.Errorf("exit 0, want non-zero")
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want one line containing %q", r.stderr, tt.want)
			}
			after := e.snapshot()
			if len(before) != len(after) {
				t.Errorf("cache files %d -> %d", len(before), len(after))
			}
			for k, v := range before {
				if after[k] != v {
					t.Errorf("cache file %s changed", k)
				}
			}
		})
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

// TestRacingProcesses: parallel processes on an empty cache open one
// browser; on an expired token they send one refresh.
func TestRacingProcesses(t *testing.T) {
	const n = 8
	e := newEnv(t, idptest.Config{})
	race := func() []string {
		var wg sync.WaitGroup
		out := make([]string, n)
		for i := range n {
			wg.Go(func() {
				r := e.run(execInfoV1, e.args()...)
				if r.code != 0 {
					t.Errorf("process %d: exit %d: %s", i, r.code, r.stderr)
				}
				out[i] = r.stdout
			})
		}
		wg.Wait()
		return out
	}
	outs := race()
	for i := range outs {
		if outs[i] != outs[0] {
			t.Errorf("process %d printed another credential", i)
		}
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}

	// Expire the cached token: every process must refresh, and only one may.
	c := cache.Open(e.dir)
	id := e.key().ID()
	entry, err := c.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	entry.IDTokenExpiry = time.Now().Add(-time.Minute)
	if err := c.Save(id, entry); err != nil {
		t.Fatal(err)
	}
	before := e.idp.Counts()
	outs2 := race()
	for i := range outs2 {
		if outs2[i] != outs2[0] || outs2[i] == outs[0] {
			t.Errorf("process %d printed another or the old credential", i)
		}
	}
	after := e.idp.Counts()
	if got := after.Refresh - before.Refresh; got != 1 {
		t.Errorf("refresh requests = %d, want 1", got)
	}
	if after.Discovery != before.Discovery {
		t.Errorf("refresh path fetched discovery %d times", after.Discovery-before.Discovery)
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}
