package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Client ids of the Dex configuration.
const (
	// PublicClient has no redirect URIs: Dex accepts any loopback redirect.
	// ParallelClient and AccessClient are the same kind. Dex keeps one
	// refresh token per user and client (a new login deletes the previous
	// one), so token holders that must keep refreshing need their own client.
	PublicClient   = "latchkey-e2e"
	ParallelClient = "latchkey-e2e-parallel"
	AccessClient   = "latchkey-e2e-access"
	// DeviceClient and KeyboardClient are public clients without redirect
	// URIs for the headless logins: Dex's device flow redirects to its own
	// /device/callback, which Dex accepts for public clients without
	// registered redirect URIs, and the keyboard login's default redirect
	// is http://localhost. Their own ids keep their refresh tokens apart
	// from the browser logins'.
	DeviceClient   = "latchkey-e2e-device"
	KeyboardClient = "latchkey-e2e-keyboard"
	// FixedClient is public with exactly one redirect URI (Dex.FixedRedirect).
	FixedClient = "latchkey-e2e-fixed"
	// ConfidentialClient has a secret (ConfidentialSecret) and one redirect
	// URI (Dex.ConfidentialRedirect).
	ConfidentialClient = "latchkey-e2e-confidential"
	ConfidentialSecret = "e2e-confidential-secret"
	// TLSClient is public with exactly one https redirect URI
	// (Dex.TLSRedirect): Dex takes https loopback redirects only when
	// registered, which is what kubelogin's --local-server-cert is for.
	TLSClient = "latchkey-e2e-tls"
)

// Clients are all the client ids of the configuration, for kube-apiserver's
// audiences.
var Clients = []string{PublicClient, ParallelClient, AccessClient, DeviceClient, KeyboardClient, FixedClient, ConfidentialClient, TLSClient}

// User is a static Dex user.
type User struct {
	Email    string
	Password string
	Username string
	Groups   []string
}

// DexOptions configure Dex.
type DexOptions struct {
	Bin string
	Dir string // config, logs
	PKI *PKI
	// IDTokenTTL is Dex's expiry.idTokens (also the access token's).
	IDTokenTTL time.Duration
	User       User
	// ApprovalScreen makes Dex ask the person to grant access after the
	// login (oauth2.skipApprovalScreen false).
	ApprovalScreen bool
	// RecordHeader names a request header whose values the proxy notes
	// (Proxy.Headers).
	RecordHeader string
	// DeviceRequestsTTL is Dex's expiry.deviceRequests, how long a device
	// code (RFC 8628) stays valid; 0 means Dex's default, 5 minutes.
	DeviceRequestsTTL time.Duration
}

// Dex is a Dex process on plain http on loopback behind a TLS Proxy; its
// issuer is https://<proxy>/dex.
type Dex struct {
	Opts                 DexOptions
	Issuer               string
	Proxy                *Proxy
	FixedRedirect        string
	ConfidentialRedirect string
	TLSRedirect          string
	ConfigPath           string

	backendAddr string
	proc        *Proc
	t           testing.TB
}

// StartDex writes the configuration and starts Dex and its proxy.
func StartDex(t testing.TB, o DexOptions) *Dex {
	t.Helper()
	d := &Dex{Opts: o, t: t, backendAddr: Addr(FreePort(t))}
	proxyAddr := Addr(FreePort(t))
	d.Issuer = "https://" + proxyAddr + "/dex"
	d.FixedRedirect = "http://" + Addr(FreePort(t)) + "/callback"
	d.ConfidentialRedirect = "http://" + Addr(FreePort(t)) + "/callback"
	d.TLSRedirect = "https://" + Addr(FreePort(t)) + "/callback"
	d.ConfigPath = filepath.Join(o.Dir, "dex-config.json")
	cfg, err := dexConfig(d.Issuer, d.backendAddr, o.IDTokenTTL, o.User, d.FixedRedirect, d.ConfidentialRedirect,
		dexExtras{skipApproval: !o.ApprovalScreen, deviceTTL: o.DeviceRequestsTTL, tlsRedirect: d.TLSRedirect})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	d.Proxy, err = NewProxy(proxyAddr, &url.URL{Scheme: "http", Host: d.backendAddr}, o.PKI.ServingCert, o.PKI.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	d.Proxy.RecordHeader = o.RecordHeader
	if err := d.Proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Proxy.Stop)
	d.start()
	return d
}

func (d *Dex) start() {
	d.t.Helper()
	d.proc = StartProc(d.t, d.Opts.Dir, "dex", d.Opts.Bin, []string{"serve", d.ConfigPath}, nil)
	u := "http://" + d.backendAddr + "/dex/.well-known/openid-configuration"
	err := WaitFor(context.Background(), "dex", d.proc, 30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", u, resp.Status)
		}
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
}

// Restart stops Dex and starts it again. Its memory storage is lost: every
// refresh token and session is gone and its signing keys are new.
func (d *Dex) Restart() {
	d.t.Helper()
	d.proc.Stop()
	d.start()
}

// DexConfig returns a Dex configuration (JSON, which Dex reads as YAML): memory
// storage, http on backendAddr, the clients of Clients, the password DB with
// user, no approval screen, ID tokens of ttl, refresh tokens rotated on every
// use. Dex's device authorization endpoint (RFC 8628) is on by default for
// every client; device requests stay valid for Dex's default 5 minutes.
func DexConfig(issuer, backendAddr string, ttl time.Duration, u User, fixedRedirect, confidentialRedirect string) ([]byte, error) {
	return dexConfig(issuer, backendAddr, ttl, u, fixedRedirect, confidentialRedirect, dexExtras{skipApproval: true})
}

// dexExtras are the DexOptions that DexConfig's callers leave at their
// defaults.
type dexExtras struct {
	skipApproval bool
	deviceTTL    time.Duration
	tlsRedirect  string
}

func dexConfig(issuer, backendAddr string, ttl time.Duration, u User, fixedRedirect, confidentialRedirect string, x dexExtras) ([]byte, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost+6) // Dex requires cost >= 10
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	cfg := map[string]any{
		"issuer":  issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": backendAddr},
		"logger":  map[string]any{"level": "debug", "format": "text"},
		"oauth2": map[string]any{
			"skipApprovalScreen": x.skipApproval,
			"responseTypes":      []string{"code"},
		},
		"expiry": map[string]any{
			"idTokens": ttl.String(),
			"refreshTokens": map[string]any{
				"reuseInterval": "0s",
			},
		},
		"staticClients": []map[string]any{
			{"id": PublicClient, "name": "latchkey e2e (any loopback port)", "public": true},
			{"id": ParallelClient, "name": "latchkey e2e (any loopback port, 2)", "public": true},
			{"id": AccessClient, "name": "latchkey e2e (any loopback port, 3)", "public": true},
			{"id": DeviceClient, "name": "latchkey e2e (device code)", "public": true},
			{"id": KeyboardClient, "name": "latchkey e2e (pasted code)", "public": true},
			{"id": FixedClient, "name": "latchkey e2e (fixed redirect)", "public": true, "redirectURIs": []string{fixedRedirect}},
			{"id": TLSClient, "name": "latchkey e2e (https redirect)", "public": true, "redirectURIs": []string{cmp.Or(x.tlsRedirect, "https://127.0.0.1:1/callback")}},
			{"id": ConfidentialClient, "name": "latchkey e2e (confidential)", "secret": ConfidentialSecret, "redirectURIs": []string{confidentialRedirect}},
		},
		"enablePasswordDB": true,
		"staticPasswords": []map[string]any{{
			"email":             u.Email,
			"hash":              string(hash),
			"username":          u.Username,
			"name":              u.Username,
			"preferredUsername": u.Username,
			"emailVerified":     true,
			"userID":            "0c9e3c4a-6f7e-4a39-9d3c-5e2e2e2e2e2e",
			"groups":            u.Groups,
		}},
	}
	if x.deviceTTL > 0 {
		cfg["expiry"].(map[string]any)["deviceRequests"] = x.deviceTTL.String()
	}
	return json.MarshalIndent(cfg, "", "  ")
}
