package plugin

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

type connKey struct{}

// TestTokenRequestAfterIdle: a token request never goes out on a
// kept-alive connection that the server may be closing. oidc-provider (Node)
// closes idle connections after 5 s; latchkey reused the discovery
// connection for the code exchange after the person's browser login, the
// server closed it as the POST went out, and the exchange failed with
// "connection reset by peer" (Go does not retry a POST). This server closes
// any connection on its second request, as Node's did then.
func TestTokenRequestAfterIdle(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(connKey{}).(*atomic.Int32).Add(1) > 1 {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":60}`))
			return
		}
		w.Write([]byte(`{}`))
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, new(atomic.Int32))
	}
	srv.Start()
	defer srv.Close()

	hc := srv.Client()
	var v map[string]any
	if err := getJSON(t.Context(), hc, srv.URL+"/.well-known/openid-configuration", &v); err != nil {
		t.Fatal(err)
	}
	tc := &tokenClient{hc: hc, clientID: "c", now: time.Now}
	if _, err := tc.token(t.Context(), srv.URL+"/token", url.Values{"grant_type": {"authorization_code"}}); err != nil {
		t.Errorf("token request after a GET on a kept-alive connection: %v", err)
	}
}
