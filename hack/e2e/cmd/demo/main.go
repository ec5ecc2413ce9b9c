// Command demo shows latchkey working against a real IdP in one command (run
// by hack/demo.sh, `make demo`): it starts Dex on loopback with a demo user,
// runs `latchkey get-token`, which opens your browser (or prints the URL),
// prints the ExecCredential and the ID token's decoded claims, runs it again
// to show the cached answer, and stops Dex.
//
// With -auto-login (or DEMO_AUTO_LOGIN=1) the login form is filled by the
// e2e suite's net/http driver instead of you, for machines without a browser.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	latchkey := flag.String("latchkey", "bin/latchkey", "latchkey binary")
	dexBin := flag.String("dex", os.Getenv("E2E_DEX"), "dex binary (hack/e2e/tools.sh dex builds it)")
	autoLogin := flag.String("auto-login", "", "browser driver that fills the form for you (path of browser-http); default: your browser")
	port := flag.Int("port", 0, "Dex port on 127.0.0.1 (default: a free one)")
	flag.Parse()
	if *dexBin == "" {
		return fmt.Errorf("no Dex binary: pass -dex or set E2E_DEX")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "latchkey-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	if *port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		*port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	addr := harness.Addr(*port)
	issuer := "http://" + addr + "/dex"
	user := harness.User{Email: "demo@example.com", Password: "latchkey-demo", Username: "demo", Groups: []string{"demo-team"}}
	cfg, err := harness.DexConfig(issuer, addr, time.Hour, user, "http://127.0.0.1:1/unused", "http://127.0.0.1:2/unused")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "dex.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "dex.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	dex := exec.Command(*dexBin, "serve", cfgPath)
	dex.Stdout, dex.Stderr = logf, logf
	dex.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := dex.Start(); err != nil {
		return fmt.Errorf("start dex: %w", err)
	}
	stopped := false
	stopDex := func() {
		if !stopped {
			stopped = true
			_ = dex.Process.Signal(syscall.SIGTERM)
			_ = dex.Wait()
		}
	}
	defer stopDex()
	if err := waitReady(ctx, issuer+"/.well-known/openid-configuration"); err != nil {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("dex did not start: %w\n%s", err, b)
	}

	fmt.Printf(`==> Dex is running on loopback: issuer %s
    demo user:  %s
    password:   %s
    group:      %s

`, issuer, user.Email, user.Password, user.Groups[0])

	cache := filepath.Join(dir, "token-cache")
	args := []string{"get-token",
		"--oidc-issuer-url=" + issuer,
		"--oidc-client-id=" + harness.PublicClient,
		"--oidc-extra-scope=email,groups,offline_access",
		"--token-cache-dir=" + cache,
	}
	var env []string
	switch {
	case *autoLogin != "":
		args = append(args, "--browser-command="+*autoLogin)
		env = append(env, "E2E_LOGIN_USER="+user.Email, "E2E_LOGIN_PASSWORD="+user.Password)
		fmt.Println("==> Logging in with the scripted browser (-auto-login).")
	case !hasBrowser():
		args = append(args, "--skip-open-browser")
		fmt.Println("==> No desktop browser found: open the URL latchkey prints below (it listens on 127.0.0.1,")
		fmt.Println("    so use a browser on this machine, or forward the port it names), log in as the demo user.")
	default:
		fmt.Println("==> latchkey opens your browser: log in as the demo user.")
	}
	fmt.Printf("\n$ latchkey %s\n", strings.Join(args, " "))

	out, took, err := getToken(ctx, *latchkey, args, env)
	if err != nil {
		return err
	}
	fmt.Printf("\n==> ExecCredential on stdout (after %v):\n%s\n", took.Round(time.Millisecond), shorten(out))
	if err := printClaims(out); err != nil {
		return err
	}

	stopDex()
	fmt.Printf("\n==> Dex stopped. Second call: served from the cache in %s, no browser, no IdP.\n", cache)
	out2, took2, err := getToken(ctx, *latchkey, args, env)
	if err != nil {
		return err
	}
	same := token(out) == token(out2)
	fmt.Printf("    took %v, same token: %v\n", took2.Round(time.Millisecond), same)
	return nil
}

func getToken(ctx context.Context, bin string, args, env []string) ([]byte, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), env...),
		`KUBERNETES_EXEC_INFO={"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("latchkey get-token: %w", err)
	}
	return out, time.Since(start), nil
}

func hasBrowser() bool {
	return os.Getenv("BROWSER") != "" || os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" ||
		fileExists("/usr/bin/open") // macOS
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func waitReady(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func token(ec []byte) string {
	var v struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	_ = json.Unmarshal(ec, &v)
	return v.Status.Token
}

// shorten pretty-prints the ExecCredential with the token cut short.
func shorten(ec []byte) string {
	var v map[string]any
	if err := json.Unmarshal(ec, &v); err != nil {
		return string(ec)
	}
	if st, ok := v["status"].(map[string]any); ok {
		if t, ok := st["token"].(string); ok && len(t) > 40 {
			st["token"] = t[:20] + "..." + t[len(t)-12:]
		}
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func printClaims(ec []byte) error {
	parts := strings.Split(token(ec), ".")
	if len(parts) != 3 {
		return fmt.Errorf("token is not a JWT")
	}
	for i, name := range []string{"header", "claims"} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("decode %s: %w", name, err)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, b, "    ", "  "); err != nil {
			return err
		}
		fmt.Printf("\n==> ID token %s (decoded, not verified here; latchkey verified it):\n    %s\n", name, pretty.String())
	}
	return nil
}
