package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// flagsOf returns e.args() without the leading "get-token".
func (e *env) flagsOf() []string { return e.args()[1:] }

func (e *env) entry(k cache.Key) *cache.Entry {
	e.t.Helper()
	en, err := cache.Open(e.dir).Load(k.ID())
	if err != nil {
		e.t.Fatalf("load entry: %v", err)
	}
	return en
}

func TestTokenCommand(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	accessKey := e.key() // one login for both tokens

	r := e.run("", append([]string{"token"}, e.flagsOf()...)...)
	if r.code != 0 {
		t.Fatalf("token: exit %d: %s", r.code, r.stderr)
	}
	en := e.entry(accessKey)
	if r.stdout != en.AccessToken+"\n" {
		t.Errorf("token printed %q, want the access token and a newline", r.stdout)
	}

	r = e.run("", append([]string{"token", "--output=header"}, e.flagsOf()...)...)
	if r.stdout != "Authorization: Bearer "+en.AccessToken+"\n" {
		t.Errorf("--output=header printed %q", r.stdout)
	}

	r = e.run("", append([]string{"token", "--output=json"}, e.flagsOf()...)...)
	var j struct {
		AccessToken string    `json:"access_token"`
		IDToken     string    `json:"id_token"`
		TokenType   string    `json:"token_type"`
		Expiry      time.Time `json:"expiry"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("--output=json printed %q: %v", r.stdout, err)
	}
	if j.AccessToken != en.AccessToken || j.IDToken != en.IDToken || j.TokenType != "Bearer" || !j.Expiry.Equal(en.Expiry.Truncate(0)) {
		t.Errorf("--output=json = %+v", j)
	}

	// get-token prints the ID token of the same login: no second login
	// (two logins would spend each other's refresh tokens at Dex, which
	// keeps one per user and client).
	if r := e.run(execInfoV1, e.args()...); r.code != 0 || !strings.Contains(r.stdout, en.IDToken) {
		t.Fatalf("get-token after token: exit %d, stderr %s", r.code, r.stderr)
	}
	r = e.run("", append([]string{"token", "--id-token"}, e.flagsOf()...)...)
	if r.stdout != e.entry(e.key()).IDToken+"\n" {
		t.Errorf("--id-token printed %q", r.stdout)
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1 (one login whatever is printed)", got)
	}

	if r := e.run("", append([]string{"token", "--output=yaml"}, e.flagsOf()...)...); r.code == 0 || r.stdout != "" {
		t.Errorf("--output=yaml: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestStatusCommand(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	if r := e.run("", e.args()...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	en := e.entry(e.key())
	r := e.run("", "status", "--token-cache-dir="+e.dir)
	if r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{e.idp.URL, idptest.DefaultClientID, idptest.DefaultEmail, "openid,email,groups", "yes", e.key().ID()} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.run("", "status", "--json", "--token-cache-dir="+e.dir)
	var st []plugin.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if len(st) != 1 || st[0].Subject != idptest.DefaultSubject || st[0].Email != idptest.DefaultEmail || !st[0].RefreshToken ||
		st[0].IDTokenExpiry == nil || !st[0].IDTokenExpiry.Equal(en.IDTokenExpiry) {
		t.Errorf("status --json = %+v", st)
	}
	for _, secret := range []string{en.IDToken, en.AccessToken, en.RefreshToken} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Error("status printed a token")
		}
	}
}

func TestLogoutCommand(t *testing.T) {
	var failRevoke atomic.Bool
	e := newEnv(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if failRevoke.Load() && r.URL.Path == idptest.RevocationPath {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		}
		return false
	}})
	if r := e.run("", e.args()...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	path := cache.Open(e.dir).Path(e.key().ID())
	r := e.run("", append([]string{"logout"}, e.flagsOf()...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "revoked the refresh token and access token") {
		t.Errorf("logout: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := e.idp.Counts().Revocation; got != 2 {
		t.Errorf("revocation requests = %d, want 2", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("entry still there after logout: %v", err)
	}

	// A failed revocation still removes the entry, and says so.
	if r := e.run("", e.args()...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	failRevoke.Store(true)
	r = e.run("", "logout", "--all", "--token-cache-dir="+e.dir, "--certificate-authority="+e.ca)
	if r.code == 0 || !strings.Contains(r.stderr, "revocation failed") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("logout --all with a failing revocation: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("entry still there after a failed revocation: %v", err)
	}
	if r := e.run("", append([]string{"logout"}, e.flagsOf()...)...); r.code != 0 || !strings.Contains(r.stderr, "not logged in") {
		t.Errorf("logout when logged out: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSetupWritesKubeconfig(t *testing.T) {
	needKubectl(t)
	e := newEnv(t, idptest.Config{})
	kc := filepath.Join(t.TempDir(), "config")
	orig := `# my clusters
apiVersion: v1
kind: Config
clusters:
- name: prod # the real one
  cluster:
    server: https://prod.example.com
users:
- name: admin
  user:
    token: static-admin-token
current-context: ""
`
	if err := os.WriteFile(kc, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"setup"}, e.flagsOf()...)
	args = append(args, "--kubeconfig", kc, "--user=oidc", "-v")
	r := e.run("", args...)
	if r.code != 0 {
		t.Fatalf("setup: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"subject:  " + idptest.DefaultSubject, "groups:   admins", "kubectl config set-credentials oidc", "--oidc-issuer-url=" + e.idp.URL} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("setup output lacks %q:\n%s", want, r.stdout)
		}
	}
	out, _ := os.ReadFile(kc)
	// kubectl writes the file (and drops its comments); the .bak keeps it
	// as it was.
	if bak, _ := os.ReadFile(kc + ".bak"); string(bak) != orig {
		t.Errorf("backup = %q, want the original", bak)
	}
	// client-go reads the result and finds the exec user.
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatalf("client-go cannot load the kubeconfig: %v\n%s", err, out)
	}
	u := cfg.AuthInfos["oidc"]
	if u == nil || u.Exec == nil {
		t.Fatalf("no exec user oidc in:\n%s", out)
	}
	if u.Exec.APIVersion != "client.authentication.k8s.io/v1" || u.Exec.InteractiveMode != "IfAvailable" {
		t.Errorf("exec = %+v", u.Exec)
	}
	wantArgs := append([]string{"get-token"}, e.flagsOf()...)
	if !slices.Equal(u.Exec.Args, wantArgs) {
		t.Errorf("args = %q, want %q (setup's own flags and -v dropped)", u.Exec.Args, wantArgs)
	}
	if cfg.AuthInfos["admin"] == nil || cfg.AuthInfos["admin"].Token != "static-admin-token" || cfg.Clusters["prod"] == nil {
		t.Error("the other user or the cluster was lost")
	}
	// Running it again replaces the user rather than adding another.
	if r := e.run("", args...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	again, _ := os.ReadFile(kc)
	if strings.Count(string(again), "name: oidc") != 1 {
		t.Errorf("second setup duplicated the user:\n%s", again)
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

func TestCompletion(t *testing.T) {
	e := &env{t: t}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := e.run("", "completion", "--shell="+sh)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", sh, r.code, r.stderr)
		}
		for _, want := range []string{"get-token", "--oidc-issuer-url", "logout", "--all"} {
			if !strings.Contains(r.stdout, strings.TrimPrefix(want, "--")) {
				t.Errorf("%s completion lacks %s", sh, want)
			}
		}
		if sh == "bash" {
			if bash, err := exec.LookPath("bash"); err == nil {
				cmd := exec.Command(bash, "-n")
				cmd.Stdin = strings.NewReader(r.stdout)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("bash -n: %v: %s", err, out)
				}
			}
		}
	}
	if r := e.run("", "completion", "--shell=tcsh"); r.code == 0 {
		t.Error("unknown shell accepted")
	}
}

// TestSetupNotHeldByCooldown: setup is run by a person, even with its stderr
// in a file; tried as a new user would, `latchkey setup ... 2>setup.err`
// right after a failed login was refused with "not starting another login
// yet ... a background caller waits".
func TestSetupNotHeldByCooldown(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	e.browser = []string{browserModeEnv + "=deny"}
	if r := e.run(execInfoV1, e.args()...); r.code == 0 {
		t.Fatalf("denied login succeeded: %s", r.stderr)
	}
	// A background get-token is held by the cool-down...
	if r := e.run(execInfoV1, e.args()...); r.code == 0 || !strings.Contains(r.stderr, "not starting another login yet") {
		t.Fatalf("background get-token in the cool-down: exit %d: %s", r.code, r.stderr)
	}
	// ...setup is not.
	e.browser = nil
	opened := e.browsersOpened()
	r := e.run("", append([]string{"setup"}, e.flagsOf()...)...)
	if r.code != 0 || e.browsersOpened() != opened+1 {
		t.Errorf("setup in the cool-down: exit %d, %d browsers opened: %s", r.code, e.browsersOpened()-opened, r.stderr)
	}
}

// TestStatusExpandsHome: status takes the same --token-cache-dir as the
// other commands, ~/ included (it used to look in ./~/c).
func TestStatusExpandsHome(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	home := t.TempDir()
	e.dir = filepath.Join(home, "c")
	e.extra = []string{"--token-cache-dir=~/c"}
	e.browser = []string{"HOME=" + home}
	if r := e.run("", e.args()...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := e.run("", "status", "--token-cache-dir=~/c")
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Join(home, "c")) {
		t.Errorf("status --token-cache-dir=~/c: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestCommandHelp: each command lists its own flags and shows an example;
// logout lists none of the flags that only matter to a login, yet accepts
// them, so a kubeconfig's get-token arguments work as they are.
func TestCommandHelp(t *testing.T) {
	e := &env{t: t}
	loginOnly := []string{"-browser-command", "-grant-type", "-skip-open-browser", "-force-refresh", "-listen-address", "-authentication-timeout-sec"}
	for _, cmd := range commands() {
		r := e.run("", cmd.name, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Example") {
			t.Errorf("%s --help: exit %d, no example:\n%s", cmd.name, r.code, r.stdout)
		}
		if strings.Contains(r.stdout, "Flags:\n\n") || strings.HasSuffix(strings.TrimSpace(r.stdout), "Flags:") {
			t.Errorf("%s --help prints an empty Flags:\n%s", cmd.name, r.stdout)
		}
		for _, f := range loginOnly {
			listed := strings.Contains(r.stdout, "  "+f+" ") || strings.Contains(r.stdout, "  "+f+"\n")
			if want := cmd.name == "get-token" || cmd.name == "token" || cmd.name == "setup"; listed != want {
				t.Errorf("%s --help lists %s: %v, want %v", cmd.name, f, listed, want)
			}
		}
	}
	if r := e.run("", "version", "--help"); strings.Contains(r.stdout, "Flags:") {
		t.Errorf("version --help prints Flags:\n%s", r.stdout)
	}
}

// TestAPIServerFlags: setup proposes only claims the ID token has.
// oidc-provider puts email in the code flow's ID token only when asked
// (claims parameter), and LemonLDAP::NG sends no email_verified and, unless
// mapped, no groups: setup once proposed email and groups for such tokens,
// and the API server would have rejected every request.
func TestAPIServerFlags(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		name      string
		cl        plugin.Claims
		want      []string
		wantNotes []string
	}{
		{"Dex", plugin.Claims{Subject: "C2lk", Email: "a@b", EmailVerified: &yes, Groups: []string{"g"}},
			[]string{"--oidc-username-claim=email", "--oidc-groups-claim=groups"}, nil},
		{"oidc-provider, no claims asked", plugin.Claims{Subject: "u1"},
			[]string{"--oidc-username-claim=sub", "--oidc-username-prefix=oidc:"}, []string{"no email claim", "claims=", "no groups claim"}},
		{"LemonLDAP::NG", plugin.Claims{Subject: "dwho", Email: "dwho@example.com", Username: "dwho"},
			[]string{"--oidc-username-claim=email"}, []string{"no groups claim"}},
		{"unverified email", plugin.Claims{Subject: "x", Email: "x@y", EmailVerified: &no, Username: "x", Groups: []string{"g"}},
			[]string{"--oidc-username-claim=preferred_username", "--oidc-username-prefix=oidc:", "--oidc-groups-claim=groups"}, []string{"email_verified is false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			flags, notes := apiserverFlags(&tt.cl)
			if !slices.Equal(flags, tt.want) {
				t.Errorf("flags %q, want %q", flags, tt.want)
			}
			all := strings.Join(notes, "\n")
			for _, n := range tt.wantNotes {
				if !strings.Contains(all, n) {
					t.Errorf("notes %q lack %q", notes, n)
				}
			}
			if len(tt.wantNotes) == 0 && len(notes) > 0 {
				t.Errorf("notes %q, want none", notes)
			}
		})
	}
}

// TestTerminalEscapesFromTheNetwork: a hostile provider's error description
// (and HTTP status text) reached the terminal raw: it could retitle the
// window, clear the screen and print fake instructions. Now what came from
// the network is shown with its control characters escaped.
func TestTerminalEscapesFromTheNetwork(t *testing.T) {
	const evil = "\x1b]0;owned\x07\x1b[2J\u202e"
	e := newEnv(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != idptest.TokenPath {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "call " + evil + "now"})
		return true
	}})
	r := e.run(execInfoV1, e.args()...)
	if r.code == 0 || strings.ContainsAny(r.stderr, "\x1b\x07\u202e") || !strings.Contains(r.stderr, `\x1b]0;owned`) {
		t.Errorf("exit %d, stderr %q: want the description with its escapes shown as text", r.code, r.stderr)
	}
}
