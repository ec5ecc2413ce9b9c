package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// The Dex user of the suite and the group bound to harness.ViewerRole.
var e2eUser = harness.User{
	Email:    "e2e@example.com",
	Password: "e2e-password",
	Username: "e2e",
	Groups:   []string{"e2e-team", "e2e-other"},
}

// env is everything the scenarios share: the programs and the servers.
type env struct {
	dir                     string
	latchkey, kubectl       string
	chromedpDriver, httpDrv string
	chromium                string
	pki                     *harness.PKI
	dex                     *harness.Dex
	kube                    *harness.Kube
	ttl                     time.Duration
	verbose                 bool
}

// need returns the path of a required program or stops the test: Skip only
// for LATCHKEY_BIN outside CI, Fatal otherwise.
func need(t *testing.T, envVar string, names ...string) string {
	t.Helper()
	p, err := harness.LookBin(envVar, names...)
	if err == nil {
		return p
	}
	if envVar == "LATCHKEY_BIN" && os.Getenv(envVar) == "" {
		const msg = "LATCHKEY_BIN is not set: run `make e2e`, which builds latchkey and sets it"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: not skipping)")
		}
		t.Skip(msg)
	}
	t.Fatalf("%v", err)
	return ""
}

// phase logs how long a phase took when the returned func is called.
func phase(t testing.TB, name string) func() {
	start := time.Now()
	return func() {
		t.Helper()
		t.Logf("phase %-40s %v", name, time.Since(start).Round(time.Millisecond))
	}
}

func setup(t *testing.T) *env {
	e := &env{dir: t.TempDir()}
	e.latchkey = need(t, "LATCHKEY_BIN")
	e.kubectl = need(t, "E2E_KUBECTL", "kubectl")
	apiserver := need(t, "E2E_KUBE_APISERVER", "kube-apiserver")
	etcd := need(t, "E2E_ETCD", "etcd")
	dexBin := need(t, "E2E_DEX", "dex")
	e.chromium = need(t, "E2E_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
	e.verbose = os.Getenv("E2E_VERBOSE") != ""
	e.ttl = 20 * time.Second
	if v := os.Getenv("E2E_ID_TOKEN_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("E2E_ID_TOKEN_TTL: %v", err)
		}
		e.ttl = d
	}
	t.Logf("latchkey %s, kubectl %s, kube-apiserver %s, etcd %s, dex %s, chromium %s, ID token TTL %v",
		e.latchkey, e.kubectl, apiserver, etcd, dexBin, e.chromium, e.ttl)

	done := phase(t, "build browser drivers")
	bin := filepath.Join(e.dir, "bin")
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/browser-chromedp", "./cmd/browser-http")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build drivers: %v\n%s", err, out)
	}
	e.chromedpDriver, e.httpDrv = filepath.Join(bin, "browser-chromedp"), filepath.Join(bin, "browser-http")
	done()

	done = phase(t, "make CA and certificates (openssl)")
	var err error
	if e.pki, err = harness.NewPKI(filepath.Join(e.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	done()

	done = phase(t, "start Dex and its counting proxy")
	e.dex = harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: e.dir, PKI: e.pki, IDTokenTTL: e.ttl, User: e2eUser})
	done()
	t.Logf("Dex issuer %s", e.dex.Issuer)

	done = phase(t, "start etcd and kube-apiserver, apply RBAC")
	e.kube = harness.StartKube(t, harness.KubeOptions{
		EtcdBin: etcd, APIServerBin: apiserver, KubectlBin: e.kubectl,
		Dir: e.dir, PKI: e.pki, Issuer: e.dex.Issuer,
		Audiences: harness.Clients,
		Group:     e2eUser.Groups[0],
	})
	done()
	return e
}

// client is one kubeconfig user: its own token cache and browser record.
type client struct {
	e          *env
	name       string
	dir        string
	cacheDir   string
	browserLog string
	kubeconfig string
	args       []string
	vars       map[string]string
}

type clientOpts struct {
	chromium    bool     // real browser driver instead of the net/http one
	clientID    string   // default harness.PublicClient
	secret      string   // confidential clients
	redirectURL string   // --oidc-redirect-url
	accessToken bool     // --oidc-use-access-token
	extraArgs   []string // more get-token flags
}

func (e *env) newClient(t *testing.T, name string, o clientOpts) *client {
	t.Helper()
	c := &client{e: e, name: name, dir: filepath.Join(e.dir, "clients", name)}
	c.cacheDir = filepath.Join(c.dir, "token-cache")
	c.browserLog = filepath.Join(c.dir, "browser-runs.log")
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if o.clientID == "" {
		o.clientID = harness.PublicClient
	}
	driver := e.httpDrv
	if o.chromium {
		driver = e.chromedpDriver
	}
	c.args = []string{
		"get-token",
		"--oidc-issuer-url=" + e.dex.Issuer,
		"--oidc-client-id=" + o.clientID,
		"--oidc-extra-scope=email,groups,offline_access",
		"--certificate-authority=" + e.pki.CACert,
		"--token-cache-dir=" + c.cacheDir,
		"--browser-command=" + driver,
		"--authentication-timeout-sec=90",
	}
	if o.secret != "" {
		c.args = append(c.args, "--oidc-client-secret="+o.secret)
	}
	if o.redirectURL != "" {
		c.args = append(c.args, "--oidc-redirect-url="+o.redirectURL)
	}
	if o.accessToken {
		c.args = append(c.args, "--oidc-use-access-token")
	}
	if e.verbose {
		c.args = append(c.args, "-v")
	}
	c.args = append(c.args, o.extraArgs...)
	c.vars = map[string]string{
		"E2E_BROWSER_LOG":    c.browserLog,
		"E2E_LOGIN_USER":     e2eUser.Email,
		"E2E_LOGIN_PASSWORD": e2eUser.Password,
		"E2E_LOGIN_CA":       e.pki.CACert,
		"E2E_CHROMIUM":       e.chromium,
	}
	kc := harness.ExecKubeconfig(e.kube.Server, e.pki.CACert, e.latchkey, c.args, c.vars)
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// result of one kubectl run.
type result struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("err=%v took=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// kubectl runs kubectl with the client's kubeconfig.
func (c *client) kubectl(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.e.kubectl, append([]string{"--kubeconfig=" + c.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+filepath.Join(c.dir, "kube-cache"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}
}

// mustKubectl runs kubectl and fails the test unless it succeeds.
func (c *client) mustKubectl(t testing.TB, args ...string) result {
	t.Helper()
	r := c.kubectl(t, args...)
	if r.err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// parallel runs n kubectl processes at once and returns their results.
func (c *client) parallel(t testing.TB, n int, args ...string) []result {
	t.Helper()
	res := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			res[i] = c.kubectl(t, args...)
		})
	}
	close(start)
	wg.Wait()
	return res
}

// browserRuns is how many times a browser driver ran for this client.
func (c *client) browserRuns(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(c.browserLog)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// execCredential runs latchkey get-token directly, as client-go would.
func (c *client) execCredential(t testing.TB) (token string, expiry time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.e.latchkey, c.args...)
	cmd.Env = append(os.Environ(), `KUBERNETES_EXEC_INFO={"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`)
	for k, v := range c.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("latchkey get-token: %v\n%s", err, stderr.String())
	}
	var ec struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     struct {
			Token               string    `json:"token"`
			ExpirationTimestamp time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &ec); err != nil {
		t.Fatalf("latchkey stdout is not one ExecCredential: %v\n%q", err, stdout.String())
	}
	if ec.APIVersion != "client.authentication.k8s.io/v1" || ec.Kind != "ExecCredential" || ec.Status.Token == "" {
		t.Fatalf("ExecCredential = %s", stdout.String())
	}
	return ec.Status.Token, ec.Status.ExpirationTimestamp
}

// cachedTokens returns, for each JSON file of the token cache (lock files
// excluded), the SHA-256 of its top-level id_token, access_token and
// refresh_token fields. Tests compare these rather than whole files because
// latchkey may also keep bookkeeping in an entry (provider metadata, the last
// failed refresh); the tokens are what must survive. Hashes keep tokens out
// of test logs.
func (c *client) cachedTokens(t testing.TB) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(c.cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".lock") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var e struct {
			IDToken      string `json:"id_token"`
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("cache file %s: %w", p, err)
		}
		m[strings.TrimPrefix(p, c.cacheDir)] = fmt.Sprintf("id=%.12s access=%.12s refresh=%.12s",
			harness.Hash(e.IDToken), harness.Hash(e.AccessToken), harness.Hash(e.RefreshToken))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return m
}

// whoami is the SelfSubjectReview's user.
type whoami struct {
	Username string
	Groups   []string
}

func parseWhoami(t testing.TB, r result) whoami {
	t.Helper()
	var ssr struct {
		Status struct {
			UserInfo whoami `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ssr); err != nil {
		t.Fatalf("decode whoami: %v\n%s", err, r)
	}
	return ssr.Status.UserInfo
}

// claims decodes a JWT's payload without verifying it.
func claims(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode JWT payload: %v", err)
	}
	return m
}

// waitExpired sleeps until a token obtained before `after` has expired.
func (e *env) waitExpired(t testing.TB, after time.Time) {
	t.Helper()
	waitTTL(t, after, e.ttl)
}

// waitTTL sleeps until a token of lifetime ttl obtained before `after` has
// expired.
func waitTTL(t testing.TB, after time.Time, ttl time.Duration) {
	t.Helper()
	d := time.Until(after.Add(ttl + time.Second))
	if d <= 0 {
		return
	}
	t.Logf("waiting %v for the tokens (TTL %v) to expire", d.Round(time.Millisecond), ttl)
	select {
	case <-time.After(d):
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
}
