package e2e

import (
	"crypto/tls"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// TestBrowserDrivers checks both browser drivers against a stand-in for Dex's
// login form (same ids, same redirects) served over TLS by the throwaway CA,
// and a stand-in for latchkey's loopback callback. It needs neither latchkey
// nor Dex, only Chromium for the chromedp driver.
func TestBrowserDrivers(t *testing.T) {
	dir := t.TempDir()
	pki, err := harness.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/browser-chromedp", "./cmd/browser-http")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build drivers: %v\n%s", err, out)
	}

	var callbacks atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" || r.URL.Query().Get("code") != "the-code" || r.URL.Query().Get("state") != "st" {
			http.Error(w, "bad callback "+r.URL.String(), http.StatusBadRequest)
			return
		}
		callbacks.Add(1)
		fmt.Fprint(w, "<html><body>Logged in. You can close this window.</body></html>")
	}))
	defer cb.Close()

	idp := httptest.NewUnstartedServer(fakeDexLogin(t))
	serving, err := tlsConfig(pki)
	if err != nil {
		t.Fatal(err)
	}
	idp.TLS = serving
	idp.StartTLS()
	defer idp.Close()

	authURL := idp.URL + "/dex/auth?" + url.Values{
		"client_id":    {"c"},
		"redirect_uri": {cb.URL + "/callback"},
		"state":        {"st"},
	}.Encode()

	chromium, chromiumErr := harness.LookBin("E2E_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
	for _, d := range []string{"browser-http", "browser-chromedp"} {
		t.Run(d, func(t *testing.T) {
			if d == "browser-chromedp" && chromiumErr != nil {
				if os.Getenv("CI") == "true" {
					t.Fatal(chromiumErr)
				}
				t.Skip(chromiumErr)
			}
			done := phase(t, d+" login")
			log := filepath.Join(dir, d+".log")
			before := callbacks.Load()
			cmd := exec.Command(filepath.Join(dir, d), authURL)
			cmd.Env = append(os.Environ(), "E2E_BROWSER_LOG="+log, "E2E_LOGIN_USER=u@example.com",
				"E2E_LOGIN_PASSWORD=pw", "E2E_LOGIN_CA="+pki.CACert, "E2E_CHROMIUM="+chromium)
			out, err := cmd.Output()
			done()
			if err != nil {
				t.Fatalf("%s: %v\n%s", d, err, errOutput(err))
			}
			if len(out) != 0 {
				t.Errorf("%s wrote to stdout: %q", d, out)
			}
			if got := callbacks.Load() - before; got != 1 {
				t.Errorf("callbacks = %d, want 1", got)
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if lines := strings.Count(string(b), "\n"); lines != 1 || !strings.HasPrefix(string(b), d+" ") {
				t.Errorf("run log = %q, want one line for %s", b, d)
			}
		})
	}
	t.Run("browser-http redirect mode", func(t *testing.T) {
		before := callbacks.Load()
		cmd := exec.Command(filepath.Join(dir, "browser-http"), "-mode=redirect", authURL)
		cmd.Env = append(os.Environ(), "E2E_BROWSER_LOG=", "E2E_LOGIN_USER=u@example.com",
			"E2E_LOGIN_PASSWORD=pw", "E2E_LOGIN_CA="+pki.CACert)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("browser-http -mode=redirect: %v\n%s", err, errOutput(err))
		}
		if want := cb.URL + "/callback?code=the-code&state=st\n"; string(out) != want {
			t.Errorf("stdout = %q, want %q", out, want)
		}
		if got := callbacks.Load() - before; got != 0 {
			t.Errorf("callbacks = %d, want 0 (the redirect is printed, not followed)", got)
		}
	})
	t.Run("fail", func(t *testing.T) {
		log := filepath.Join(dir, "fail.log")
		cmd := exec.Command(filepath.Join(dir, "browser-http"), authURL)
		cmd.Env = append(os.Environ(), "E2E_BROWSER_LOG="+log, "E2E_BROWSER_FAIL=1")
		if err := cmd.Run(); err == nil {
			t.Errorf("E2E_BROWSER_FAIL: driver succeeded")
		}
		if b, _ := os.ReadFile(log); strings.Count(string(b), "\n") != 1 {
			t.Errorf("run log = %q, want one line", b)
		}
	})
}

// fakeDexLogin mimics Dex's local password connector: /dex/auth redirects
// to a form with the ids login, password, submit-login, and a correct POST
// redirects to the client's redirect_uri with a code.
func fakeDexLogin(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dex/auth", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dex/auth/local/login?back=&"+r.URL.RawQuery, http.StatusFound)
	})
	mux.HandleFunc("GET /dex/auth/local/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/", Secure: true})
		action := "/dex/auth/local/login?" + r.URL.RawQuery
		fmt.Fprintf(w, `<!DOCTYPE html><html><body><form method="post" action="%s">
<input id="login" name="login" type="text"/>
<input id="password" name="password" type="password"/>
<button id="submit-login" type="submit">Login</button></form></body></html>`, html.EscapeString(action))
	})
	mux.HandleFunc("POST /dex/auth/local/login", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("session"); err != nil || c.Value != "s1" {
			http.Error(w, "no session cookie", http.StatusBadRequest)
			return
		}
		if r.PostFormValue("login") != "u@example.com" || r.PostFormValue("password") != "pw" {
			http.Error(w, "Invalid Email Address and password.", http.StatusUnauthorized)
			return
		}
		q := r.URL.Query()
		u, err := url.Parse(q.Get("redirect_uri"))
		if err != nil || !isLoopback(u.Hostname()) {
			http.Error(w, "bad redirect_uri", http.StatusBadRequest)
			return
		}
		u.RawQuery = url.Values{"code": {"the-code"}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
	})
	return mux
}

func tlsConfig(p *harness.PKI) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.ServingCert, p.ServingKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

func isLoopback(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func errOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
