//go:build linux

package pkce

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary a tiny HTTP client: it GETs each URL in the variable (space-separated), follows no
// redirect, and prints each status code on a line.
const helperEnv = "PKCE_TEST_GET"

func TestMain(m *testing.M) {
	if urls := os.Getenv(helperEnv); urls != "" {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
		for _, u := range strings.Fields(urls) {
			resp, err := c.Get(u)
			if err != nil {
				fmt.Println(err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLoginRefusesOtherUsers is the red team's report (#15.7): another local user read the browser's command line,
// answered the login first with error=access_denied and a text of their choosing, and latchkey showed it and gave
// up. Now a real process of another user (nobody) is refused on the login link and on the redirect URI, even with
// the right state, and the person's login goes on.
func TestLoginRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	if !socketTableWorks(t) {
		t.Skip("this system's socket table does not show who owns a connection")
	}
	helper := helperCopy(t)
	idp := newFakeIdP(t)
	var got *page
	follow := browse(t, &got)
	l := idp.login(func(ctx context.Context, link string) error {
		au := authURLOf(t, link) // the person's own processes may open the link
		forged := au.Query().Get("redirect_uri") + "?error=access_denied&error_description=forged&state=" + url.QueryEscape(au.Query().Get("state"))
		out, err := asNobody(ctx, helper, link, forged)
		if err != nil {
			t.Errorf("helper as nobody: %v\n%s", err, out)
		}
		if want := "403\n403\n"; out != want {
			t.Errorf("another user's requests (login link, error response with the right state) got\n%swant\n%s", out, want)
		}
		return follow(ctx, link)
	})
	if _, err := runLogin(t, l); err != nil {
		t.Fatalf("Run: %v (another user's answer must not end the login)", err)
	}
	if got == nil || got.status != http.StatusOK {
		t.Errorf("the person's page: %+v, want 200", got)
	}
}

// socketTableWorks tells whether the socket table shows a listener of this process.
func socketTableWorks(t *testing.T) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return (peerCheck{}).available(mustAddrPort(t, ln.Addr()))
}

// helperCopy copies the test binary where user nobody can run it.
func helperCopy(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pkce-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// asNobody runs the helper as user and group 65534 to GET urls.
func asNobody(ctx context.Context, helper string, urls ...string) (string, error) {
	cmd := exec.CommandContext(ctx, helper)
	cmd.Env = []string{helperEnv + "=" + strings.Join(urls, " ")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
