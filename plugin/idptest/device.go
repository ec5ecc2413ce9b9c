package idptest

import (
	"crypto/rand"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ErrUnknownUserCode is returned by Approve and Deny for a user code that was
// never issued or whose device authorization has finished.
var ErrUnknownUserCode = errors.New("idptest: unknown user code")

// deviceState is where a device authorization request stands (RFC 8628 §3.3).
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
	deviceDone // tokens issued; the device code is spent
)

// deviceAuth is an outstanding device authorization request (RFC 8628 §3.2).
type deviceAuth struct {
	clientID string
	userCode string
	scopes   []string
	expiry   time.Time
	interval time.Duration // grows by 5 s with each slow_down (RFC 8628 §3.5)
	lastPoll time.Time
	state    deviceState
}

// userCodeAlphabet is the base-20 consonant set RFC 8628 §6.1 suggests.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// newUserCode returns a random user code of the form XXXX-XXXX (RFC 8628
// §6.1).
func newUserCode() string {
	var b [9]byte
	for i := range b {
		if i == 4 {
			b[i] = '-'
			continue
		}
		var r [1]byte
		for {
			rand.Read(r[:])
			if r[0] < 240 { // 240 = 12*20: unbiased
				break
			}
		}
		b[i] = userCodeAlphabet[int(r[0])%len(userCodeAlphabet)]
	}
	return string(b[:])
}

// normalizeUserCode makes user codes compare case-insensitively and without
// dashes or spaces (RFC 8628 §6.1).
func normalizeUserCode(c string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(c))
}

// handleDeviceCode implements the device authorization endpoint (RFC 8628
// §3.1, §3.2).
func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	form, terr := s.parsePost(r, false)
	s.mu.Lock()
	s.counts.Device++
	cfg := s.cfg
	s.mu.Unlock()
	if terr == nil {
		terr = authenticateClient(r, form, cfg)
	}
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	scopes := strings.Fields(form.Get("scope"))
	if !slices.Contains(scopes, scopeOpenID) {
		writeTokenError(w, badRequest(errInvalidScope, `missing required scope "openid"`))
		return
	}
	interval := time.Duration(math.Ceil(cfg.DeviceInterval.Seconds())) * time.Second
	da := &deviceAuth{
		clientID: cfg.ClientID,
		userCode: newUserCode(),
		scopes:   scopes,
		expiry:   cfg.Now().Add(cfg.DeviceCodeLifetime),
		interval: interval,
	}
	if cfg.DeviceAutoApprove {
		da.state = deviceApproved
	}
	deviceCode := rand.Text()
	s.mu.Lock()
	s.devices[deviceCode] = da
	s.userCodes[normalizeUserCode(da.userCode)] = deviceCode
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               deviceCode,
		"user_code":                 da.userCode,
		"verification_uri":          s.URL + DeviceVerifyPath,
		"verification_uri_complete": s.URL + DeviceVerifyPath + "?user_code=" + da.userCode,
		"expires_in":                int64(math.Ceil(cfg.DeviceCodeLifetime.Seconds())),
		"interval":                  int64(interval / time.Second),
	})
}

// handleDeviceVerify plays the user entering the code at the verification
// URI (RFC 8628 §3.3): GET DeviceVerifyPath?user_code=CODE approves the
// request, so Browse(verification_uri_complete) completes a device login.
func (s *Server) handleDeviceVerify(w http.ResponseWriter, r *http.Request) {
	if err := s.Approve(r.URL.Query().Get("user_code")); err != nil {
		writePage(w, http.StatusBadRequest, "unknown or expired user code")
		return
	}
	writePage(w, http.StatusOK, "device approved; return to your device")
}

// Approve approves the pending device authorization with userCode (compared
// case-insensitively, ignoring dashes), as if the user had entered it and
// consented (RFC 8628 §3.3).
func (s *Server) Approve(userCode string) error {
	return s.decide(userCode, deviceApproved)
}

// Deny denies the pending device authorization with userCode; its next poll
// gets access_denied (RFC 8628 §3.5).
func (s *Server) Deny(userCode string) error {
	return s.decide(userCode, deviceDenied)
}

func (s *Server) decide(userCode string, st deviceState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	da := s.devices[s.userCodes[normalizeUserCode(userCode)]]
	if da == nil || da.state == deviceDone || !s.cfg.Now().Before(da.expiry) {
		return ErrUnknownUserCode
	}
	da.state = st
	return nil
}

// ApproveAll approves every pending device authorization request. See also
// Config.DeviceAutoApprove.
func (s *Server) ApproveAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, da := range s.devices {
		if da.state == devicePending {
			da.state = deviceApproved
		}
	}
}

// pollDevice answers a device access token request (RFC 8628 §3.4, §3.5).
func (s *Server) pollDevice(form url.Values, cfg Config) (*tokenResponse, *tokenError) {
	now := cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	da := s.devices[form.Get("device_code")]
	switch {
	case da == nil || da.state == deviceDone:
		return nil, badRequest(errInvalidGrant, "unknown or spent device code")
	case da.clientID != cfg.ClientID:
		return nil, badRequest(errInvalidGrant, "device code issued to another client")
	case !now.Before(da.expiry):
		return nil, badRequest("expired_token", "device code expired")
	}
	last := da.lastPoll
	da.lastPoll = now
	switch {
	case !last.IsZero() && now.Sub(last) < da.interval/2:
		da.interval += 5 * time.Second
		return nil, badRequest("slow_down", "polling too fast")
	case da.state == deviceDenied:
		return nil, badRequest("access_denied", "the user denied the request")
	case cfg.DenyAuthorization != "":
		return nil, badRequest(cfg.DenyAuthorization, "authorization denied by the test")
	case da.state == devicePending:
		return nil, badRequest("authorization_pending", "waiting for the user")
	}
	da.state = deviceDone
	resp := &tokenResponse{scopes: da.scopes, idToken: true}
	if !cfg.OmitRefreshToken {
		resp.refreshToken = s.newRefreshLocked(&family{clientID: da.clientID, scopes: da.scopes})
	}
	return resp, nil
}
