package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenRequest is what the proxy saw of one token-endpoint request.
type TokenRequest struct {
	GrantType string
	ClientID  string // from the form or HTTP basic auth
	Status    int
	// Hashes (hex SHA-256) of the tokens in a successful response, so tests
	// can tell which token latchkey handed out without keeping tokens.
	IDTokenHash, AccessTokenHash, RefreshTokenHash string
	// Error is the OAuth error and description of a failed request.
	Error string
}

// Proxy is a TLS reverse proxy in front of Dex that counts requests. Dex's
// issuer URL is the proxy's URL, so every request of latchkey, the browser
// drivers and kube-apiserver passes through it. Stop and Start close and
// reopen its listener on the same port, which looks to clients like the IdP
// going down and coming back, while Dex keeps its in-memory state.
type Proxy struct {
	Addr    string // 127.0.0.1:port
	backend *url.URL
	tlsCfg  *tls.Config

	// RecordHeader, if set before Start, names a request header whose
	// value the proxy notes for every request (Headers).
	RecordHeader string

	mu       sync.Mutex
	srv      *http.Server
	tokens   []TokenRequest
	authReqs int
	devReqs  int
	headers  map[string][]string // path -> RecordHeader values, in order
}

// Headers returns, per request path, the values of RecordHeader the
// requests carried ("" when absent), in order.
func (p *Proxy) Headers() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.headers))
	for k, v := range p.headers {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// NewProxy returns a stopped proxy for backend, serving with cert and key.
func NewProxy(addr string, backend *url.URL, certFile, keyFile string) (*Proxy, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy certificate: %w", err)
	}
	return &Proxy{Addr: addr, backend: backend, tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}}}, nil
}

// Start listens and serves. It is a no-op if already running.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return nil
	}
	var l net.Listener
	var err error
	// The port may be in TIME_WAIT or held by a connection being torn down.
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", p.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.backend)
			r.Out.Host = r.In.Host // Dex builds no URLs from Host, but keep it honest
		},
		ModifyResponse: p.inspectResponse,
		ErrorLog:       nil,
	}
	srv := &http.Server{Handler: p.count(rp), TLSConfig: p.tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	p.srv = srv
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return nil
}

// Stop closes the listener and every open connection.
func (p *Proxy) Stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

type tokenKey struct{}

// count notes token-endpoint requests (grant type, client) before proxying.
func (p *Proxy) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.RecordHeader != "" {
			p.mu.Lock()
			if p.headers == nil {
				p.headers = map[string][]string{}
			}
			p.headers[r.URL.Path] = append(p.headers[r.URL.Path], r.Header.Get(p.RecordHeader))
			p.mu.Unlock()
		}
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token"):
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			tr := &TokenRequest{GrantType: form.Get("grant_type"), ClientID: form.Get("client_id")}
			if id, _, ok := r.BasicAuth(); ok {
				tr.ClientID, _ = url.QueryUnescape(id)
			}
			r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, tr))
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			tr.Status = sw.status
			p.mu.Lock()
			p.tokens = append(p.tokens, *tr)
			p.mu.Unlock()
			return
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/auth"):
			p.mu.Lock()
			p.authReqs++
			p.mu.Unlock()
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/device/code"):
			p.mu.Lock()
			p.devReqs++
			p.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// inspectResponse makes the JWKS uncacheable and hashes the tokens of a
// token response.
//
// Dex serves its keys with Cache-Control max-age until its next rotation
// (hours). kube-apiserver's OIDC authenticator (go-oidc v2) refetches keys for
// an unknown key id only after that expiry, so after a restart of Dex (memory
// storage, new keys) it would reject every new token for hours. Without
// caching headers go-oidc treats the keys as expired at once and refetches
// when it meets a new key id, as after a real key rotation. latchkey sees the
// stripped headers too, like those of the many IdPs that send none.
func (p *Proxy) inspectResponse(resp *http.Response) error {
	if strings.HasSuffix(resp.Request.URL.Path, "/keys") {
		for _, h := range []string{"Cache-Control", "Expires", "Last-Modified", "Etag", "Age"} {
			resp.Header.Del(h)
		}
		resp.Header.Set("Cache-Control", "no-store")
		return nil
	}
	tr, ok := resp.Request.Context().Value(tokenKey{}).(*TokenRequest)
	if !ok {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var t struct {
		IDToken          string `json:"id_token"`
		AccessToken      string `json:"access_token"`
		RefreshToken     string `json:"refresh_token"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &t) != nil {
		return nil
	}
	if resp.StatusCode == http.StatusOK {
		tr.IDTokenHash, tr.AccessTokenHash, tr.RefreshTokenHash = Hash(t.IDToken), Hash(t.AccessToken), Hash(t.RefreshToken)
	} else {
		tr.Error = t.Error
		if t.ErrorDescription != "" {
			tr.Error += ": " + t.ErrorDescription
		}
	}
	return nil
}

// Hash is the hex SHA-256 of s, or "" for "".
func Hash(s string) string {
	if s == "" {
		return ""
	}
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Tokens returns the token requests seen so far.
func (p *Proxy) Tokens() []TokenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]TokenRequest(nil), p.tokens...)
}

// AuthRequests is how many authorization requests (GET .../auth) were seen.
func (p *Proxy) AuthRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.authReqs
}

// DeviceRequests is how many device authorization requests (POST
// .../device/code, RFC 8628 §3.1) were seen.
func (p *Proxy) DeviceRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.devReqs
}

// Mark returns a position in the token log; Since(mark) returns what came after.
func (p *Proxy) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tokens)
}

// Since returns the token requests seen after mark.
func (p *Proxy) Since(mark int) []TokenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]TokenRequest(nil), p.tokens[mark:]...)
}

// CountGrant counts requests with the grant type in reqs.
func CountGrant(reqs []TokenRequest, grant string) int {
	n := 0
	for _, r := range reqs {
		if r.GrantType == grant {
			n++
		}
	}
	return n
}
