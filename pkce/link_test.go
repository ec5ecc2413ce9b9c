package pkce

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoginLinkHidesState is the red team's report (#15.7): the browser was started with the authorization URL, so
// its state (and nonce, and challenge) sat in the browser's command line, which every local user can read in
// /proc/PID/cmdline. The browser now gets a login link on the loopback server that carries none of them.
func TestLoginLinkHidesState(t *testing.T) {
	for _, tc := range []struct {
		name, redirectURL, host string
	}{
		{name: "default", host: "127.0.0.1"},
		{name: "localhost redirect", redirectURL: "http://localhost:" + freePort(t, false) + "/callback", host: "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newFakeIdP(t)
			var (
				link string
				got  *page
			)
			follow := browse(t, &got)
			l := idp.login(func(ctx context.Context, u string) error {
				link = u
				return follow(ctx, u)
			})
			l.RedirectURL = tc.redirectURL
			res, err := runLogin(t, l)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got == nil || got.status != http.StatusOK {
				t.Fatalf("final page %+v, want 200", got)
			}
			u, err := url.Parse(link)
			if err != nil {
				t.Fatal(err)
			}
			if u.Scheme != "http" || u.Hostname() != tc.host || !strings.HasPrefix(u.Path, "/start/") || u.RawQuery != "" {
				t.Errorf("login link %q, want http://%s:PORT/start/... without a query", link, tc.host)
			}
			for name, secret := range map[string]string{"state": res.State, "nonce": res.Nonce, "code_challenge": Challenge(res.Verifier)} {
				if strings.Contains(link, secret) {
					t.Errorf("the login link carries the %s", name)
				}
			}
			if auths, _, _ := idp.requests(); len(auths) != 1 || auths[0].Get("state") != res.State {
				t.Errorf("authorization requests %v, want the one with the login's state", auths)
			}
		})
	}
}

// TestLoginLinkOnceWithoutPeerCheck: where the loopback server cannot tell who sends a request (not Linux), another
// user who reads the link from the browser's command line and opens it first learns the state. The person's browser
// then opens the link a second time, and the login ends with ErrLinkReused; the other user's answer is not taken.
func TestLoginLinkOnceWithoutPeerCheck(t *testing.T) {
	for _, redirectURL := range []string{"", "http://localhost:" + freePort(t, false) + "/callback"} {
		t.Run(cmp.Or(redirectURL, "default"), func(t *testing.T) { linkOnce(t, redirectURL) })
	}
}

// linkOnce is TestLoginLinkOnceWithoutPeerCheck with one redirect URL ("localhost" has two listeners).
func linkOnce(t *testing.T, redirectURL string) {
	idp := newFakeIdP(t)
	var second *page
	c := newBrowser(t)
	l := idp.login(func(_ context.Context, link string) error {
		au := authURLOf(t, link) // the other user, first
		var err error
		if second, err = visit(t, c, http.MethodGet, link); err != nil { // the person's browser
			t.Errorf("browser: %v", err)
		}
		forged := au.Query().Get("redirect_uri") + "?error=access_denied&error_description=forged&state=" + url.QueryEscape(au.Query().Get("state"))
		if p, err := visit(t, c, http.MethodGet, forged); err == nil && p.status != http.StatusBadRequest {
			t.Errorf("forged error response after the login ended: status %d, want 400 or no server", p.status)
		}
		return nil
	})
	l.peerTables = []string{"/nonexistent/tcp"}
	l.RedirectURL = redirectURL
	_, err := runLogin(t, l)
	var ae *AuthError
	if !errors.Is(err, ErrLinkReused) || errors.As(err, &ae) {
		t.Fatalf("Run: %v, want ErrLinkReused", err)
	}
	if second == nil || second.status != http.StatusConflict {
		t.Errorf("second opening of the link: %+v, want 409", second)
	}
	if auths, _, _ := idp.requests(); len(auths) != 0 {
		t.Errorf("%d authorization requests reached the provider, want none", len(auths))
	}
}

// TestPeerCheckOwnConnection looks up a real loopback connection in the system's socket table.
func TestPeerCheckOwnConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := mustAddrPort(t, ln.Addr())
	var p peerCheck
	if !p.available(server) {
		t.Skip("this system's socket table does not show the listener (not Linux?)")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := mustAddrPort(t, c.LocalAddr())
	uid, err := p.owner(client, server)
	if err != nil || uid != os.Getuid() {
		t.Errorf("owner of the client socket: %d, %v; want %d", uid, err, os.Getuid())
	}
	// The same addresses the other way round are the server's accepted socket; a port nobody uses is no socket.
	other := netip.AddrPortFrom(client.Addr(), 1)
	if _, err := p.owner(other, server); !errors.Is(err, errNoSocket) {
		t.Errorf("owner of a socket that does not exist: %v, want errNoSocket", err)
	}
}

func TestFindOwner(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample table is from a little-endian machine")
	}
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A7A3 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:A7A3 01 00000000:00000000 00:00000000 00000000 65534        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A7A3 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0000000000000000 20 4 30 10 -1
   3: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000  1001 0 1 1
   4: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000  1002 0 1 1
   5: 0100007F:9C41 0100007F:A7A3 05 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000 20 4 30 10 -1
`
	server := netip.MustParseAddrPort("127.0.0.1:42915") // 0xA7A3
	for _, tc := range []struct {
		local, remote netip.AddrPort
		want          int
		err           error
	}{
		{local: server, remote: netip.MustParseAddrPort("0.0.0.0:0"), want: 1000},
		{local: netip.MustParseAddrPort("127.0.0.1:40000"), remote: server, want: 65534},
		{local: server, remote: netip.MustParseAddrPort("127.0.0.1:40000"), want: 1000},
		{local: netip.MustParseAddrPort("[::1]:8080"), remote: netip.MustParseAddrPort("[::1]:54321"), want: 1001},
		{local: netip.MustParseAddrPort("127.0.0.1:8081"), remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:54322"), want: 1002},
		// Line 5: closed (FIN_WAIT2, inode 0), shown with uid 0; it must not pass for root's.
		{local: netip.MustParseAddrPort("127.0.0.1:40001"), remote: server, err: errNoSocket},
	} {
		got, err := findOwner(strings.NewReader(table), tc.local, tc.remote)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("findOwner(%v, %v) = %d, %v; want %d, %v", tc.local, tc.remote, got, err, tc.want, tc.err)
		}
	}
}

func mustAddrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// socketLine formats one line of a /proc/net/tcp-style table, as Linux would on this machine.
func socketLine(local, remote netip.AddrPort, uid int) string {
	addr := func(ap netip.AddrPort) string {
		var b []byte
		if ap.Addr().Is4() {
			a := ap.Addr().As4()
			b = a[:]
		} else {
			a := ap.Addr().As16()
			b = a[:]
		}
		out := make([]byte, len(b))
		for i := 0; i < len(b); i += 4 {
			binary.BigEndian.PutUint32(out[i:], binary.NativeEndian.Uint32(b[i:]))
		}
		return fmt.Sprintf("%X:%04X", out, ap.Port())
	}
	return fmt.Sprintf("   0: %s %s 01 00000000:00000000 00:00000000 00000000 %5d        0 1 1\n", addr(local), addr(remote), uid)
}

func TestSameUser(t *testing.T) {
	server := netip.MustParseAddrPort("127.0.0.1:8000")
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	client6 := netip.MustParseAddrPort("[::1]:40001")
	server6 := netip.MustParseAddrPort("[::1]:8000")
	other := os.Getuid() + 1
	for _, tc := range []struct {
		name     string
		table    string
		v6       bool
		unlisted bool
		want     bool
	}{
		{name: "own user", table: socketLine(client, server, os.Getuid()), want: true},
		{name: "own user, IPv6", table: socketLine(client6, server6, os.Getuid()), v6: true, want: true},
		{name: "root", table: socketLine(client, server, 0), want: true},
		{name: "another user", table: socketLine(client, server, other)},
		{name: "another user, even with unlisted peers allowed", table: socketLine(client, server, other), unlisted: true},
		{name: "the server's own socket is not the peer", table: socketLine(server, client, os.Getuid())},
		{name: "not listed", table: ""},
		{name: "not listed, unlisted peers allowed (WSL)", table: "", unlisted: true, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "tcp")
			if err := os.WriteFile(f, []byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+tc.table), 0o600); err != nil {
				t.Fatal(err)
			}
			h := newCallbackHandler("/callback", &Request{})
			h.peers, h.unlisted = &peerCheck{tables: []string{f}}, tc.unlisted
			from, to := client, server
			if tc.v6 {
				from, to = client6, server6
			}
			r := httptest.NewRequest(http.MethodGet, "http://"+to.String()+"/callback", nil)
			r.RemoteAddr = from.String()
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(to)))
			if got := h.sameUser(r); got != tc.want {
				t.Errorf("sameUser = %v, want %v", got, tc.want)
			}
		})
	}
}
