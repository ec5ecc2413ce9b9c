//go:build unix

package main

// Stress tests: many real latchkey processes racing for one cache key, lock
// holders killed mid-flight, damaged caches and a misbehaving IdP. They run
// only with LATCHKEY_STRESS=1 (`make stress`, which CI runs) and report their
// timings with t.Logf; they never assert on time. Waits are bounded only to
// turn a hang into a failure.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// Messages latchkey prints on stderr that the tests key on.
const (
	msgWaiting = "waiting for another latchkey process"
	msgOpening = "opening a browser to log in"
)

// procTimeout bounds one latchkey process, so that a hang fails the test
// instead of the whole run. It is far above any expected duration.
const procTimeout = 120 * time.Second

func stress(t *testing.T) {
	t.Helper()
	if os.Getenv("LATCHKEY_STRESS") != "1" {
		t.Skip("stress test: set LATCHKEY_STRESS=1 (make stress) to run")
	}
}

// watch is an io.Writer that keeps what is written and counts writes
// containing sub (latchkey writes each log line with one write).
type watch struct {
	mu   sync.Mutex
	b    bytes.Buffer
	sub  string
	hits *atomic.Int64
	seen bool
}

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.sub != "" && !w.seen && strings.Contains(w.b.String(), w.sub) {
		w.seen = true
		if w.hits != nil {
			w.hits.Add(1)
		}
	}
	return len(p), nil
}

func (w *watch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// proc is one running latchkey process.
type proc struct {
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  *watch
	cancel  context.CancelFunc
	done    chan struct{}
	res     result
	start   time.Time
	end     time.Time
	cpu     time.Duration // user + system time
	waitErr error
}

// startProc starts latchkey with args; hits (if not nil) counts processes
// whose stderr says they wait for the lock.
func (e *env) startProc(args []string, hits *atomic.Int64, extraEnv ...string) *proc {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), procTimeout)
	p := &proc{stderr: &watch{sub: msgWaiting, hits: hits}, cancel: cancel, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Env = append(e.environ(execInfoV1), extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, p.stderr
	// A browser left running must not keep Wait waiting for the pipes.
	p.cmd.WaitDelay = 5 * time.Second
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		cancel()
		e.t.Fatalf("start latchkey: %v", err)
	}
	go func() {
		defer close(p.done)
		defer cancel()
		err := p.cmd.Wait()
		p.end = time.Now()
		if st := p.cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
		p.res = result{code: 0, stdout: p.stdout.String(), stderr: p.stderr.String()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.res.code = ee.ExitCode()
			if p.res.code < 0 {
				p.res.code = -1 // killed
			}
		default:
			p.waitErr = err
			p.res.code = -2
		}
	}()
	return p
}

func (p *proc) wait() result {
	<-p.done
	return p.res
}

// many runs n latchkey processes with args at once and returns their
// results and the wall time of the whole batch.
func (e *env) many(n int, args []string, extraEnv ...string) ([]result, time.Duration) {
	e.t.Helper()
	start := time.Now()
	ps := make([]*proc, n)
	for i := range n {
		ps[i] = e.startProc(args, nil, extraEnv...)
	}
	out := make([]result, n)
	for i, p := range ps {
		out[i] = p.wait()
	}
	return out, time.Since(start)
}

// credential decodes a v1 ExecCredential from stdout and returns its token
// and expiry. It fails the test unless stdout is exactly one ExecCredential.
func credential(t *testing.T, stdout string) (string, time.Time) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var c clientauthv1.ExecCredential
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("stdout is not an ExecCredential: %v", err)
	}
	if dec.More() {
		t.Fatal("stdout holds more than one document")
	}
	if c.Status == nil || c.Status.Token == "" || c.Status.ExpirationTimestamp == nil {
		t.Fatal("ExecCredential without token or expiration")
	}
	return c.Status.Token, c.Status.ExpirationTimestamp.Time
}

// claims decodes a JWT's payload without verifying it.
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWS compact serialization (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("token payload: %v", err)
	}
	return m
}

// checkIDToken fails unless tok is an unexpired ID token of e's IdP.
func (e *env) checkIDToken(t *testing.T, tok string) {
	t.Helper()
	c := claims(t, tok)
	if c["iss"] != e.idp.URL || c["aud"] != idptest.DefaultClientID {
		t.Errorf("token iss %v aud %v, want the test IdP and client", c["iss"], c["aud"])
	}
	if exp, _ := c["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Error("token printed on stdout is expired")
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// expire makes the cached ID token stale, keeping everything else.
func (e *env) expire(t *testing.T) *cache.Entry {
	t.Helper()
	c, id := cache.Open(e.dir), e.key().ID()
	entry, err := c.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	entry.IDTokenExpiry = time.Now().Add(-time.Minute)
	entry.Expiry = time.Now().Add(-time.Minute)
	if err := c.Save(id, entry); err != nil {
		t.Fatal(err)
	}
	return entry
}

// login runs latchkey once and fails the test unless it succeeds.
func (e *env) login(t *testing.T) string {
	t.Helper()
	r := e.run(execInfoV1, e.args()...)
	if r.code != 0 {
		t.Fatalf("login: exit %d: %s", r.code, r.stderr)
	}
	tok, _ := credential(t, r.stdout)
	return tok
}

// checkPrivate fails if anything in the cache directory is readable by
// group or others.
func (e *env) checkPrivate(t *testing.T) {
	t.Helper()
	_ = filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 && strings.HasSuffix(path, ".json") {
			t.Errorf("%s has mode %04o: readable by others", path, fi.Mode().Perm())
		}
		return nil
	})
}

// stopBrowsers makes "hang" browsers exit.
func (e *env) stopBrowsers() {
	_ = os.WriteFile(e.blog+".stop", nil, 0o600)
}

// TestStressParallel64 races 64 processes on one key: on an empty cache (one
// browser), on a valid cached token (no lock at all) and on an expired token
// with a valid refresh token (one refresh).
func TestStressParallel64(t *testing.T) {
	stress(t)
	const n = 64
	e := newEnv(t, idptest.Config{})
	c, id := cache.Open(e.dir), e.key().ID()

	t.Run("no tokens: one browser", func(t *testing.T) {
		before := e.idp.Counts()
		res, wall := e.many(n, e.args())
		var first string
		for i, r := range res {
			if r.code != 0 {
				t.Errorf("process %d: exit %d: %s", i, r.code, r.stderr)
				continue
			}
			tok, _ := credential(t, r.stdout)
			if first == "" {
				first = tok
			} else if tok != first {
				t.Errorf("process %d printed another token", i)
			}
		}
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1", got)
		}
		after := e.idp.Counts()
		if got := after.Authorize - before.Authorize; got != 1 {
			t.Errorf("authorization requests = %d, want 1", got)
		}
		if got := after.CodeExchange - before.CodeExchange; got != 1 {
			t.Errorf("code exchanges = %d, want 1", got)
		}
		t.Logf("%d processes, empty cache: %v wall, 1 browser", n, wall)
	})
	entry, err := c.Load(id)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("valid token: no lock", func(t *testing.T) {
		// Without a lock file, none is created.
		if err := os.Remove(c.LockPath(id)); err != nil {
			t.Fatal(err)
		}
		res, _ := e.many(n, e.args())
		for i, r := range res {
			if r.code != 0 {
				t.Fatalf("process %d: exit %d: %s", i, r.code, r.stderr)
			}
			if tok, _ := credential(t, r.stdout); tok != entry.IDToken {
				t.Errorf("process %d did not print the cached token", i)
			}
		}
		if _, err := os.Lstat(c.LockPath(id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a cached call created the lock file (Lstat: %v)", err)
		}
		// With the lock held by this test for the whole batch, every
		// process still succeeds: none of them asks for the lock.
		l, ok, err := c.TryLock(id)
		if err != nil || !ok {
			t.Fatalf("TryLock: %v %v", ok, err)
		}
		res, _ = e.many(n, e.args())
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.code != 0 || strings.Contains(r.stderr, msgWaiting) {
				t.Errorf("process %d with the lock held elsewhere: exit %d: %s", i, r.code, r.stderr)
			}
		}
		// Timings: the median of 5 batches each way, and the CPU time the
		// processes used, which bounds what parallelism can gain.
		var par, seq, parCPU, seqCPU []time.Duration
		for range 5 {
			start := time.Now()
			ps := make([]*proc, n)
			for i := range ps {
				ps[i] = e.startProc(e.args(), nil)
			}
			var cpu time.Duration
			for _, p := range ps {
				if r := p.wait(); r.code != 0 {
					t.Fatalf("parallel run: exit %d: %s", r.code, r.stderr)
				}
				cpu += p.cpu
			}
			par, parCPU = append(par, time.Since(start)), append(parCPU, cpu)
			start, cpu = time.Now(), 0
			for range n {
				p := e.startProc(e.args(), nil)
				if r := p.wait(); r.code != 0 {
					t.Fatalf("sequential run: exit %d: %s", r.code, r.stderr)
				}
				cpu += p.cpu
			}
			seq, seqCPU = append(seq, time.Since(start)), append(seqCPU, cpu)
		}
		med := func(d []time.Duration) time.Duration {
			slices.Sort(d)
			return d[len(d)/2].Round(100 * time.Microsecond)
		}
		cores := time.Duration(runtime.NumCPU())
		t.Logf("%d cached calls, median of 5: parallel %v wall (%v CPU); sequential %v wall (%v CPU, %v per call); "+
			"sequential/%d cores = %v; parallel/(sequential/cores) = %.2f; parallel CPU/cores = %v",
			n, med(par), med(parCPU), med(seq), med(seqCPU), med(seq)/n, cores, med(seq)/cores,
			float64(med(par))/float64(med(seq)/cores), med(parCPU)/cores)
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1", got)
		}
	})

	t.Run("expired token: one refresh", func(t *testing.T) {
		old := e.expire(t)
		before := e.idp.Counts()
		res, wall := e.many(n, e.args())
		next, err := c.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		waited := 0
		for i, r := range res {
			if r.code != 0 {
				t.Errorf("process %d: exit %d: %s", i, r.code, r.stderr)
				continue
			}
			if tok, _ := credential(t, r.stdout); tok != next.IDToken || tok == old.IDToken {
				t.Errorf("process %d printed another or the old token", i)
			}
			if strings.Contains(r.stderr, msgWaiting) {
				waited++
			}
		}
		after := e.idp.Counts()
		if got := after.Refresh - before.Refresh; got != 1 {
			t.Errorf("refresh requests = %d, want 1", got)
		}
		if after.RefreshRejected != before.RefreshRejected {
			t.Errorf("refresh rejected %d times", after.RefreshRejected-before.RefreshRejected)
		}
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1", got)
		}
		t.Logf("%d processes, expired token: %v wall, 1 refresh, %d waited for the lock", n, wall, waited)
	})
	e.checkPrivate(t)
}

// failedLogin starts n processes that all need a login whose browser fails
// in mode, holds the browser back until every other process waits for the
// lock, and returns the results in start order, the index of the process
// that opened the browser, and how many processes waited.
func (e *env) failedLogin(t *testing.T, n int, mode string, args []string) ([]result, []*proc, int) {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "gate")
	var hits atomic.Int64
	ps := make([]*proc, n)
	for i := range n {
		ps[i] = e.startProc(args, &hits, browserModeEnv+"="+mode, browserGateEnv+"="+gate)
	}
	// Release the browser once everyone else waits for the lock (or a
	// process has already finished, e.g. an abandoned login timed out).
	deadline := time.Now().Add(60 * time.Second)
	for hits.Load() < int64(n-1) && time.Now().Before(deadline) {
		finished := false
		for _, p := range ps {
			select {
			case <-p.done:
				finished = true
			default:
			}
		}
		if finished {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	waiting := int(hits.Load())
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := make([]result, n)
	for i, p := range ps {
		res[i] = p.wait()
	}
	return res, ps, waiting
}

// TestStressFailedLoginWaiters: a login that is denied or abandoned is not
// retried by the processes waiting behind it; they fail at once with the
// same reason, and a background caller in the cool-down does not open a
// browser, but --force-refresh does.
func TestStressFailedLoginWaiters(t *testing.T) {
	stress(t)
	const n = 64
	for _, tc := range []struct {
		mode string
		// reason is in the error of the process that ran the login, and in
		// every waiter's.
		reason string
		// prior: there was a login before; its refresh token is then
		// revoked, so the lock holder refreshes, is refused, and logs in.
		prior bool
		args  []string
	}{
		{mode: "deny", reason: "access_denied", prior: true},
		{mode: "abandon", reason: "no answer from the browser", args: []string{"--authentication-timeout-sec=3"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t, idptest.Config{})
			e.extra = tc.args
			c, id := cache.Open(e.dir), e.key().ID()
			if tc.prior {
				e.login(t)
				e.idp.RevokeAll()
				e.expire(t)
			}
			before := e.idp.Counts()
			opened := e.browsersOpened()
			res, ps, waiting := e.failedLogin(t, n, tc.mode, e.args())

			if got := e.browsersOpened() - opened; got != 1 {
				t.Errorf("browsers opened = %d, want 1", got)
			}
			holder := -1
			var holderEnd, lastEnd time.Time
			late := 0
			for i, r := range res {
				if r.code == 0 || r.stdout != "" {
					t.Errorf("process %d: exit %d, stdout %q; want a failure and nothing on stdout", i, r.code, r.stdout)
				}
				if strings.Contains(r.stderr, msgOpening) {
					if holder >= 0 {
						t.Errorf("processes %d and %d both ran a login", holder, i)
					}
					holder, holderEnd = i, ps[i].end
				}
				if ps[i].end.After(lastEnd) {
					lastEnd = ps[i].end
				}
			}
			if holder < 0 {
				t.Fatalf("no process ran the login; process 0's stderr: %s", res[0].stderr)
			}
			if !strings.Contains(lastLine(res[holder].stderr), tc.reason) {
				t.Errorf("login's error = %q, want it to contain %q", lastLine(res[holder].stderr), tc.reason)
			}
			for i, r := range res {
				if i == holder {
					continue
				}
				line := lastLine(r.stderr)
				if !strings.HasPrefix(line, "latchkey: ") || !strings.Contains(line, tc.reason) {
					t.Errorf("process %d (waited %v): error %q, want it to contain %q", i,
						strings.Contains(r.stderr, msgWaiting), line, tc.reason)
				}
				if !strings.Contains(r.stderr, msgWaiting) {
					late++
				}
			}
			after := e.idp.Counts()
			wantRefresh := 0
			if tc.prior {
				wantRefresh = 1 // the lock holder's, refused
			}
			if got := after.Refresh - before.Refresh; got != wantRefresh {
				t.Errorf("refresh requests = %d, want %d (the waiters must not refresh)", got, wantRefresh)
			}
			if got := after.CodeExchange - before.CodeExchange; got != 0 {
				t.Errorf("code exchanges = %d, want 0", got)
			}
			entry, err := c.Load(id)
			switch {
			case err != nil:
				t.Errorf("cache after the failed login: %v, want an entry recording the failure", err)
			case entry.RefreshToken != "":
				t.Error("the cache still holds the refresh token the IdP refused")
			}
			t.Logf("%s: %d processes, %d waited behind the login, %d came after it; last waiter exited %v after the login failed",
				tc.mode, n, waiting, late, lastEnd.Sub(holderEnd).Round(time.Millisecond))
			t.Logf("login's error: %s", lastLine(res[holder].stderr))
			t.Logf("a waiter's error: %s", lastLine(res[(holder+1)%n].stderr))

			// A background caller in the cool-down: no browser, and a
			// message saying how to log in.
			opened = e.browsersOpened()
			r := e.run(execInfoV1, e.args()...)
			if r.code == 0 || r.stdout != "" {
				t.Errorf("background call in the cool-down: exit %d, stdout %q; want a failure", r.code, r.stdout)
			}
			if !strings.Contains(r.stderr, "--force-refresh") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("background call in the cool-down: stderr %q, want one line naming --force-refresh", r.stderr)
			}
			if got := e.browsersOpened() - opened; got != 0 {
				t.Errorf("background call in the cool-down opened %d browsers", got)
			}
			t.Logf("background call in the cool-down: %s", strings.TrimSpace(r.stderr))
			// --force-refresh always may log in.
			r = e.run(execInfoV1, append(e.args(), "--force-refresh")...)
			if r.code != 0 {
				t.Errorf("--force-refresh after the failed login: exit %d: %s", r.code, r.stderr)
			} else {
				tok, _ := credential(t, r.stdout)
				e.checkIDToken(t, tok)
			}
			if got := e.browsersOpened() - opened; got != 1 {
				t.Errorf("--force-refresh opened %d browsers, want 1", got)
			}
			e.checkPrivate(t)
		})
	}
}

// TestStressCooldown: who may log in during the cool-down after a failed
// login. The browser denies every login, so the failure stays recorded and
// each login attempt shows up as one more browser.
func TestStressCooldown(t *testing.T) {
	stress(t)
	e := newEnv(t, idptest.Config{})
	e.browser = []string{browserModeEnv + "=deny"}
	if r := e.run(execInfoV1, e.args()...); r.code == 0 || !strings.Contains(r.stderr, "access_denied") {
		t.Fatalf("denied login: exit %d: %s", r.code, r.stderr)
	}
	tries := []struct {
		name      string
		args      []string
		stderrNul bool // stderr is /dev/null: a character device, but no terminal
		terminal  bool // run under script(1), with a pty as stdin, stdout and stderr
		sleep     time.Duration
		login     bool // a browser opens
	}{
		{name: "background", login: false},
		{name: "background, stderr /dev/null", stderrNul: true, login: false},
		{name: "background, cool-down 600s", args: []string{"--login-cooldown-sec=600"}, login: false},
		{name: "background, cool-down disabled", args: []string{"--login-cooldown-sec=0"}, login: true},
		{name: "background, --force-refresh", args: []string{"--force-refresh"}, login: true},
		{name: "terminal", terminal: true, login: true},
		{name: "background, cool-down over", args: []string{"--login-cooldown-sec=1"}, sleep: 1500 * time.Millisecond, login: true},
	}
	for _, tt := range tries {
		t.Run(tt.name, func(t *testing.T) {
			time.Sleep(tt.sleep)
			opened := e.browsersOpened()
			counts := e.idp.Counts()
			args := append(e.args(), tt.args...)
			var code int
			var stderr string
			switch {
			case tt.terminal:
				script, err := exec.LookPath("script")
				if err != nil {
					t.Skip("script(1) not found: cannot give latchkey a terminal")
				}
				line := shellQuote(append([]string{bin}, args...))
				ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
				defer cancel()
				cmd := exec.CommandContext(ctx, script, "-qec", line, "/dev/null")
				cmd.Env = e.environ(execInfoV1)
				out, err := cmd.CombinedOutput()
				code, stderr = exitCode(t, err), string(out)
			case tt.stderrNul:
				ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Env = e.environ(execInfoV1)
				null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer null.Close()
				cmd.Stderr = null
				var out bytes.Buffer
				cmd.Stdout = &out
				code = exitCode(t, cmd.Run())
				if code == 0 {
					stderr = "(stderr is /dev/null) stdout: " + out.String()
				}
			default:
				r := e.run(execInfoV1, args...)
				code, stderr = r.code, r.stderr
				if !tt.login && (!strings.Contains(r.stderr, "--force-refresh") || r.stdout != "") {
					t.Errorf("stderr %q, stdout %q: want one line naming --force-refresh and nothing on stdout", r.stderr, r.stdout)
				}
			}
			if code == 0 {
				t.Errorf("exit 0, want a failure (every login is denied): %s", stderr)
			}
			want := 0
			if tt.login {
				want = 1
			}
			if got := e.browsersOpened() - opened; got != want {
				t.Errorf("browsers opened = %d, want %d; output: %s", got, want, stderr)
			}
			if got := e.idp.Counts(); !tt.login && got != counts {
				// Refused at once: not even discovery.
				t.Errorf("a call refused in the cool-down sent requests to the IdP: before %+v, after %+v", counts, got)
			}
		})
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return 0
}

// shellQuote joins args into a POSIX shell command line.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// stall answers requests matching match only when release is closed or
// the client goes away, and signals stalled for each stalled request.
func stall(match func(*http.Request, url.Values) bool, stalled chan<- struct{}, release <-chan struct{}) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		form := readForm(r)
		if !match(r, form) {
			return false
		}
		select {
		case stalled <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "stalled", http.StatusServiceUnavailable)
		return true
	}
}

// readForm reads a token request's form, leaving the body readable again.
func readForm(r *http.Request) url.Values {
	if r.Body == nil {
		return url.Values{}
	}
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	v, _ := url.ParseQuery(string(b))
	return v
}

func isRefresh(r *http.Request, f url.Values) bool {
	return r.URL.Path == idptest.TokenPath && f.Get("grant_type") == "refresh_token"
}

// callAfterKill runs get-token after a process holding the lock was killed:
// it must succeed without waiting for the dead process's lock.
func (e *env) callAfterKill(t *testing.T) (*proc, result) {
	t.Helper()
	next := e.startProc(e.args(), nil)
	r := next.wait()
	if r.code != 0 {
		t.Fatalf("next call: exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, msgWaiting) {
		t.Error("next call waited for the killed process's lock")
	}
	return next, r
}

// TestStressKillLockHolder: a lock holder killed with SIGKILL mid-login or
// mid-refresh leaves the lock free and the cache untorn.
func TestStressKillLockHolder(t *testing.T) {
	stress(t)
	t.Run("mid-login", func(t *testing.T) {
		e := newEnv(t, idptest.Config{})
		t.Cleanup(e.stopBrowsers)
		c, id := cache.Open(e.dir), e.key().ID()
		e.login(t)
		// The next call must log in: no refresh token, expired ID token.
		old := e.expire(t)
		old.RefreshToken = ""
		if err := c.Save(id, old); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(c.Path(id))
		opened := e.browsersOpened()
		p := e.startProc(e.args(), nil, browserModeEnv+"=hang")
		for e.browsersOpened() == opened {
			select {
			case <-p.done:
				t.Fatalf("login ended before the kill: %s", p.res.stderr)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait()
		after, err := os.ReadFile(c.Path(id))
		if err != nil || !bytes.Equal(before, after) {
			t.Errorf("cache entry changed by the killed login (err %v)", err)
		}
		next, r := e.callAfterKill(t)
		tok, _ := credential(t, r.stdout)
		e.checkIDToken(t, tok)
		t.Logf("after SIGKILL mid-login the next call took %v (a login)", next.end.Sub(next.start).Round(time.Millisecond))
	})

	t.Run("mid-refresh", func(t *testing.T) {
		e := newEnv(t, idptest.Config{})
		c, id := cache.Open(e.dir), e.key().ID()
		e.login(t)
		old := e.expire(t)
		stalled, release := make(chan struct{}, 1), make(chan struct{})
		e.idp.Update(func(c *idptest.Config) { c.Intercept = stall(isRefresh, stalled, release) })
		p := e.startProc(e.args(), nil)
		select {
		case <-stalled:
		case <-p.done:
			t.Fatalf("refresh ended before the kill: %s", p.res.stderr)
		case <-time.After(60 * time.Second):
			t.Fatal("no refresh reached the IdP")
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait()
		close(release)
		e.idp.Update(func(c *idptest.Config) { c.Intercept = nil })
		got, err := c.Load(id)
		if err != nil || got.RefreshToken != old.RefreshToken {
			t.Fatalf("cache after the kill: %v; want the old entry", err)
		}
		next, _ := e.callAfterKill(t)
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1 (the refresh token is still good)", got)
		}
		t.Logf("after SIGKILL mid-refresh the next call took %v (a refresh)", next.end.Sub(next.start).Round(time.Millisecond))
	})

	t.Run("SIGTERM after the rotation", func(t *testing.T) {
		// The red team's gap (issue 15.9): a latchkey stopped between the
		// provider's rotation of the refresh token and the save of the new
		// one kept only the spent token; replaying it (oidc-provider
		// revokes the grant then) meant a login. A signal now leaves the
		// refresh in flight refreshGrace to bring the new token back.
		e := newEnv(t, idptest.Config{ReuseRevokesFamily: true})
		c, id := cache.Open(e.dir), e.key().ID()
		e.login(t)
		old := e.expire(t)
		rotated, release := make(chan struct{}, 1), make(chan struct{})
		e.idp.Update(func(c *idptest.Config) {
			c.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
				if r.Header.Get(passHeader) != "" || !isRefresh(r, readForm(r)) {
					return false
				}
				passthrough(e.idp, w, r, func(map[string]any) {
					rotated <- struct{}{} // the IdP has spent the old token
					<-release
				})
				return true
			}
		})
		p := e.startProc(e.args(), nil)
		select {
		case <-rotated:
		case <-p.done:
			t.Fatalf("refresh ended before the signal: %s", p.res.stderr)
		case <-time.After(60 * time.Second):
			t.Fatal("no refresh reached the IdP")
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // latchkey has seen the signal
		close(release)
		r := p.wait()
		e.idp.Update(func(c *idptest.Config) { c.Intercept = nil })
		got, err := c.Load(id)
		if err != nil || got.RefreshToken == "" || got.RefreshToken == old.RefreshToken {
			t.Fatalf("cache after SIGTERM (exit %d: %s): err %v, refresh token kept %v; want the rotated one",
				r.code, lastLine(r.stderr), err, err == nil && got.RefreshToken == old.RefreshToken)
		}
		e.callAfterKill(t)
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1 (the rotated refresh token was kept)", got)
		}
		if n := e.idp.Counts().RefreshRejected; n != 0 {
			t.Errorf("the IdP refused %d refreshes: the spent refresh token was replayed", n)
		}
		t.Logf("SIGTERM while the rotated token was on its way: exit %d, rotated token saved", r.code)
	})

	t.Run("random kill points", func(t *testing.T) {
		// Kill refreshing processes at random moments: the entry is
		// always the old or the new one, never torn.
		const rounds = 40
		e := newEnv(t, idptest.Config{NoRotation: true})
		c, id := cache.Open(e.dir), e.key().ID()
		e.login(t)
		killed, finished := 0, 0
		for range rounds {
			e.expire(t)
			p := e.startProc(e.args(), nil)
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			if r := p.wait(); r.code == -1 {
				killed++
			} else {
				finished++
			}
			if _, err := c.Load(id); err != nil {
				t.Fatalf("cache after a kill: %v", err)
			}
		}
		tmp, _ := filepath.Glob(filepath.Join(e.dir, ".*.tmp"))
		if r := e.run(execInfoV1, e.args()...); r.code != 0 {
			t.Fatalf("call after the kills: exit %d: %s", r.code, r.stderr)
		}
		t.Logf("%d kills at random points (%d processes finished first): cache never torn; %d temporary files left behind", killed, finished, len(tmp))
		if got := e.browsersOpened(); got != 1 {
			t.Errorf("browsers opened = %d, want 1", got)
		}
	})
}

// TestStressRotatingRefreshTokens: refresh tokens rotated on every use are
// never replayed by parallel processes.
func TestStressRotatingRefreshTokens(t *testing.T) {
	stress(t)
	for _, tc := range []struct {
		name string
		cfg  idptest.Config
	}{
		{"invalid_grant on reuse", idptest.Config{}},
		{"Dex: invalid_request on reuse", idptest.Config{ReuseErrorCode: "invalid_request"}},
		{"reuse revokes the family", idptest.Config{ReuseRevokesFamily: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const rounds, procs = 10, 16
			e := newEnv(t, tc.cfg)
			e.login(t)
			start := time.Now()
			before := e.idp.Counts()
			for round := range rounds {
				e.expire(t)
				res, _ := e.many(procs, e.args())
				for i, r := range res {
					if r.code != 0 {
						t.Fatalf("round %d process %d: exit %d: %s", round, i, r.code, r.stderr)
					}
				}
			}
			after := e.idp.Counts()
			if got := after.Refresh - before.Refresh; got != rounds {
				t.Errorf("refreshes = %d, want %d (one per round)", got, rounds)
			}
			roundsTook := time.Since(start)

			// Then a storm: 16 workers calling --force-refresh until the
			// IdP has seen 300 more refreshes, so that refreshes overlap
			// continuously.
			const workers, wantRefreshes, maxCalls = 16, 300, 3000
			start = time.Now()
			stormFrom := e.idp.Counts().Refresh
			var wg sync.WaitGroup
			var failed, calls atomic.Int64
			for range workers {
				wg.Go(func() {
					for e.idp.Counts().Refresh-stormFrom < wantRefreshes && calls.Add(1) <= maxCalls {
						p := e.startProc(append(e.args(), "--force-refresh"), nil)
						if r := p.wait(); r.code != 0 {
							if failed.Add(1) == 1 {
								t.Errorf("--force-refresh: exit %d: %s", r.code, r.stderr)
							}
						}
					}
				})
			}
			wg.Wait()
			final := e.idp.Counts()
			if final.RefreshRejected != 0 {
				t.Errorf("the IdP refused %d refreshes: a superseded refresh token was replayed", final.RefreshRejected)
			}
			if got := e.browsersOpened(); got != 1 {
				t.Errorf("browsers opened = %d, want 1", got)
			}
			if failed.Load() != 0 {
				t.Errorf("%d of %d --force-refresh calls failed", failed.Load(), min(calls.Load(), maxCalls))
			}
			t.Logf("%s: %d rounds x %d processes (%v) then %d --force-refresh calls by %d workers (%v): %d refreshes in all, %d refused, %d browser",
				tc.name, rounds, procs, roundsTook.Round(time.Millisecond), min(calls.Load(), maxCalls), workers, time.Since(start).Round(time.Millisecond),
				final.Refresh, final.RefreshRejected, e.browsersOpened())
		})
	}
}

// TestStressCacheKeyStable: the same options in other orders, in separate
// processes, share one entry.
func TestStressCacheKeyStable(t *testing.T) {
	stress(t)
	e := newEnv(t, idptest.Config{})
	common := []string{
		"get-token",
		"--oidc-issuer-url=" + e.idp.URL,
		"--oidc-client-id=" + idptest.DefaultClientID,
		"--certificate-authority=" + e.ca,
		"--token-cache-dir=" + e.dir,
		"--browser-command=" + os.Args[0],
	}
	variants := [][]string{
		{"--oidc-extra-scope=email,groups", "--oidc-auth-request-extra-params=audience=k8s", "--oidc-auth-request-extra-params=prompt=login", "--oidc-auth-request-extra-params=login_hint=a@b.example", "--oidc-auth-request-extra-params=acr_values=mfa"},
		{"--oidc-auth-request-extra-params=acr_values=mfa", "--oidc-auth-request-extra-params=login_hint=a@b.example", "--oidc-extra-scope=groups", "--oidc-auth-request-extra-params=prompt=login", "--oidc-extra-scope=email", "--oidc-auth-request-extra-params=audience=k8s"},
		{"--oidc-extra-scope=groups,email,groups", "--oidc-auth-request-extra-params=prompt=login", "--oidc-auth-request-extra-params=audience=k8s", "--oidc-auth-request-extra-params=acr_values=mfa", "--oidc-auth-request-extra-params=login_hint=a@b.example"},
	}
	for round := range 3 {
		for i, v := range variants {
			args := append(slices.Clone(common), v...)
			if round%2 == 1 {
				// Same flags, common ones last.
				args = append(append([]string{"get-token"}, v...), common[1:]...)
			}
			if r := e.run(execInfoV1, args...); r.code != 0 {
				t.Fatalf("round %d variant %d: exit %d: %s", round, i, r.code, r.stderr)
			}
		}
	}
	// And all variants at once.
	var wg sync.WaitGroup
	for i, v := range variants {
		for range 8 {
			wg.Go(func() {
				p := e.startProc(append(slices.Clone(common), v...), nil)
				if r := p.wait(); r.code != 0 {
					t.Errorf("parallel variant %d: exit %d: %s", i, r.code, r.stderr)
				}
			})
		}
	}
	wg.Wait()
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
	if got := len(e.snapshot()); got != 1 {
		t.Errorf("cache entries = %d, want 1", got)
	}
	// A different value is a different entry.
	args := append(slices.Clone(common), "--oidc-extra-scope=email,groups", "--oidc-auth-request-extra-params=audience=other")
	if r := e.run(execInfoV1, args...); r.code != 0 {
		t.Fatalf("other audience: exit %d: %s", r.code, r.stderr)
	}
	if got := e.browsersOpened(); got != 2 {
		t.Errorf("browsers opened = %d, want 2 (another audience is another entry)", got)
	}
	t.Logf("%d runs with 3 orderings of 2 scopes and 4 extra params: 1 entry, 1 browser", 3*len(variants)+8*len(variants))
}

// TestStressCacheDamage: damaged caches end in a fresh login or a clear
// message, never a crash, an invalid token on stdout or a token file others
// can read.
func TestStressCacheDamage(t *testing.T) {
	stress(t)
	type damage struct {
		name string
		// harm damages the entry at path (valid is its content before).
		harm func(t *testing.T, e *env, path string, valid []byte)
		// cached: the cached token is still used (no browser).
		cached bool
	}
	elsewhere := func(t *testing.T) string { return filepath.Join(t.TempDir(), "elsewhere.json") }
	var planted string
	cases := []damage{
		{name: "truncated", harm: func(t *testing.T, e *env, path string, valid []byte) {
			write(t, path, valid[:len(valid)/2], 0o600)
		}},
		{name: "empty", harm: func(t *testing.T, e *env, path string, valid []byte) {
			write(t, path, nil, 0o600)
		}},
		{name: "garbage", harm: func(t *testing.T, e *env, path string, valid []byte) {
			b := make([]byte, 4096)
			for i := range b {
				b[i] = byte(rand.IntN(256))
			}
			write(t, path, b, 0o600)
		}},
		{name: "JSON of the wrong shape", harm: func(t *testing.T, e *env, path string, valid []byte) {
			write(t, path, []byte(`{"version":1,"id_token":42,"id_token_expiry":"tomorrow"}`), 0o600)
		}},
		{name: "directory at the entry path", harm: func(t *testing.T, e *env, path string, valid []byte) {
			os.Remove(path)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink at the entry path", harm: func(t *testing.T, e *env, path string, valid []byte) {
			// A valid entry elsewhere: following the link would print its token.
			target := elsewhere(t)
			write(t, target, valid, 0o600)
			var en cache.Entry
			_ = json.Unmarshal(valid, &en)
			planted = en.IDToken
			os.Remove(path)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode 0644", cached: true, harm: func(t *testing.T, e *env, path string, valid []byte) {
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "format version 99", harm: func(t *testing.T, e *env, path string, valid []byte) {
			m := map[string]any{}
			_ = json.Unmarshal(valid, &m)
			m["version"] = 99
			b, _ := json.Marshal(m)
			write(t, path, b, 0o600)
		}},
		{name: "fifo at the entry path", harm: func(t *testing.T, e *env, path string, valid []byte) {
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			planted = ""
			e := newEnv(t, idptest.Config{})
			c, id := cache.Open(e.dir), e.key().ID()
			e.login(t)
			path := c.Path(id)
			valid, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.harm(t, e, path, valid)
			var target []byte
			if planted != "" {
				link, _ := os.Readlink(path)
				target, _ = os.ReadFile(link)
			}
			for i := range 2 {
				r := e.run(execInfoV1, e.args()...)
				if r.code != 0 {
					if r.stdout != "" {
						t.Errorf("run %d: exit %d with stdout %q", i, r.code, r.stdout)
					}
					if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
						t.Errorf("run %d: exit %d, stderr not one line: %q", i, r.code, r.stderr)
					}
					t.Logf("run %d: exit %d: %s", i, r.code, strings.TrimSpace(r.stderr))
					continue
				}
				tok, _ := credential(t, r.stdout)
				e.checkIDToken(t, tok)
				if planted != "" && tok == planted {
					t.Errorf("run %d printed the token of the symlink's target", i)
				}
				if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
					t.Errorf("run %d: stderr shows a crash: %s", i, r.stderr)
				}
				t.Logf("run %d: exit 0, stderr: %q", i, strings.TrimSpace(r.stderr))
			}
			want := 2
			if tc.cached {
				want = 1
			}
			if got := e.browsersOpened(); got != want {
				t.Errorf("browsers opened = %d, want %d (one login to repair the cache, then the cache)", got, want)
			}
			if planted != "" {
				if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					t.Log("the symlink is still there")
				}
				if target != nil && !bytes.Equal(target, valid) {
					t.Error("the symlink's target was written through")
				}
			}
			if _, err := c.Load(id); err != nil {
				t.Errorf("cache after two runs: %v, want a repaired entry", err)
			}
			if fi, err := os.Lstat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("entry mode %04o, want 0600", fi.Mode().Perm())
			}
			e.checkPrivate(t)
		})
	}

	t.Run("full disk", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to mount a tiny tmpfs")
		}
		e := newEnv(t, idptest.Config{})
		e.dir = t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", e.dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs here (%v: %s); full disk not tested", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", e.dir).Run() })
		c, id := cache.Open(e.dir), e.key().ID()
		first := e.login(t)
		spent := e.expire(t)
		// Fill the file system.
		f, err := os.Create(filepath.Join(e.dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write(make([]byte, 1<<20))
		f.Close()
		if !errors.Is(werr, syscall.ENOSPC) {
			t.Fatalf("filling the tmpfs: %v, want ENOSPC", werr)
		}
		r := e.run(execInfoV1, e.args()...)
		t.Logf("refresh on a full disk: exit %d, stderr %q", r.code, strings.TrimSpace(r.stderr))
		if r.code == 0 {
			tok, _ := credential(t, r.stdout)
			e.checkIDToken(t, tok)
			if tok == first {
				t.Error("printed the expired token")
			}
		}
		// The refresh rotated the refresh token: the cache may keep the new
		// entry or none, never the spent token, never a torn file.
		switch got, err := c.Load(id); {
		case errors.Is(err, cache.ErrNotFound):
			t.Log("after the full-disk refresh: no entry")
		case err != nil:
			t.Errorf("cache after the full-disk refresh: %v", err)
		case got.RefreshToken == spent.RefreshToken:
			t.Error("the cache still holds the spent refresh token")
		default:
			t.Log("after the full-disk refresh: the new entry")
		}
		tmp, _ := filepath.Glob(filepath.Join(e.dir, ".*.tmp"))
		if len(tmp) != 0 {
			t.Errorf("temporary files left on the full disk: %v", tmp)
		}
		// Space again: the next call must recover without replaying the
		// spent refresh token.
		os.Remove(filepath.Join(e.dir, "filler"))
		counts, opened := e.idp.Counts(), e.browsersOpened()
		r = e.run(execInfoV1, e.args()...)
		if r.code != 0 {
			t.Fatalf("after freeing space: exit %d: %s", r.code, r.stderr)
		}
		if got := e.idp.Counts().RefreshRejected - counts.RefreshRejected; got != 0 {
			t.Errorf("after freeing space the IdP refused %d refreshes: the spent refresh token was replayed", got)
		}
		t.Logf("after freeing space: exit 0, %d more browsers, stderr %q", e.browsersOpened()-opened, strings.TrimSpace(r.stderr))
		e.checkPrivate(t)
	})
}

// selfSignedCA returns the PEM certificate of a new self-signed CA.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "latchkey stress other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func write(t *testing.T, path string, b []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// passthrough answers r by forwarding it to the IdP (past the Intercept)
// and editing the JSON response with edit.
const passHeader = "X-Stress-Passthrough"

func passthrough(idp *idptest.Server, w http.ResponseWriter, r *http.Request, edit func(map[string]any)) {
	body, _ := io.ReadAll(r.Body)
	req, err := http.NewRequestWithContext(r.Context(), r.Method, idp.URL+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	req.Header.Set(passHeader, "1")
	resp, err := idp.Client().Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		m := map[string]any{}
		if json.Unmarshal(b, &m) == nil {
			edit(m)
			b, _ = json.Marshal(m)
		}
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}

// TestStressIdPFaults: an IdP that fails, stalls, lies or answers oddly
// costs bounded time, gives a clear one-line error and keeps the cache.
func TestStressIdPFaults(t *testing.T) {
	stress(t)
	// httptest servers all share one certificate: make another CA.
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	write(t, otherCA, selfSignedCA(t), 0o600)

	type fault struct {
		name string
		// empty: no cache entry; otherwise an expired entry with a good
		// refresh token.
		empty bool
		cfg   idptest.Config
		// intercept builds the fault; nil for none.
		intercept func(idp *idptest.Server) func(http.ResponseWriter, *http.Request) bool
		// args replace e.args() when set (with the env's values).
		args func(e *env) []string
		// ok: the call succeeds; otherwise it fails with want in stderr.
		ok   bool
		want string
		// accessToken: --oidc-use-access-token, and check the expiry.
		accessToken bool
	}
	tokenWith := func(grant string, edit func(map[string]any)) func(idp *idptest.Server) func(http.ResponseWriter, *http.Request) bool {
		return func(idp *idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.Header.Get(passHeader) != "" || r.URL.Path != idptest.TokenPath {
					return false
				}
				if readForm(r).Get("grant_type") != grant {
					return false
				}
				passthrough(idp, w, r, edit)
				return true
			}
		}
	}
	status := func(path string, code int, body string) func(idp *idptest.Server) func(http.ResponseWriter, *http.Request) bool {
		return func(*idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != path {
					return false
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(code)
				io.WriteString(w, body)
				return true
			}
		}
	}
	faults := []fault{
		{name: "token endpoint 500 on refresh", intercept: status(idptest.TokenPath, 500, "<html>oops</html>"), want: "500"},
		{name: "token endpoint 503 JSON server_error on refresh", intercept: func(*idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != idptest.TokenPath {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(503)
				io.WriteString(w, `{"error":"temporarily_unavailable"}`)
				return true
			}
		}, want: "temporarily_unavailable"},
		{name: "discovery 502 before a login", empty: true, intercept: status(idptest.DiscoveryPath, 502, "bad gateway"), want: "502"},
		{name: "token endpoint stalled on refresh", intercept: func(*idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return stall(isRefresh, make(chan struct{}, 1), make(chan struct{}))
		}, args: func(e *env) []string { return append(e.args(), "--authentication-timeout-sec=5") }, want: "token"},
		{name: "whole IdP stalled on refresh", intercept: func(*idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return stall(func(*http.Request, url.Values) bool { return true }, make(chan struct{}, 1), make(chan struct{}))
		}, want: "timeout"},
		{name: "token endpoint slow (2s) on refresh", ok: true, intercept: func(*idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == idptest.TokenPath {
					time.Sleep(2 * time.Second)
				}
				return false
			}
		}},
		{name: "TLS: wrong CA", args: func(e *env) []string {
			var out []string
			for _, a := range e.args() {
				if !strings.HasPrefix(a, "--certificate-authority=") {
					out = append(out, a)
				}
			}
			return append(out, "--certificate-authority="+otherCA)
		}, want: "certificate"},
		{name: "discovery names another issuer", empty: true, intercept: func(idp *idptest.Server) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != idptest.DiscoveryPath {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"issuer":"https://evil.example","authorization_endpoint":"%[1]s/authorize","token_endpoint":"%[1]s/token","jwks_uri":"%[1]s/keys"}`, idp.URL)
				return true
			}
		}, want: "issuer"},
		{name: "code exchange without id_token", empty: true, intercept: tokenWith("authorization_code", func(m map[string]any) { delete(m, "id_token") }), want: "no ID token"},
		{name: "refresh without id_token (a login follows)", ok: true, cfg: idptest.Config{OmitIDTokenOnRefresh: true}},
		{name: "refresh without expires_in", ok: true, accessToken: true, cfg: idptest.Config{OmitExpiresIn: true}},
		{name: "refresh with expires_in 1e15", ok: true, accessToken: true, intercept: tokenWith("refresh_token", func(m map[string]any) { m["expires_in"] = 1e15 })},
		{name: "refresh with expires_in -3600", ok: true, accessToken: true, intercept: tokenWith("refresh_token", func(m map[string]any) { m["expires_in"] = -3600 })},
		{name: "refresh with expires_in \"soon\"", ok: true, accessToken: true, intercept: tokenWith("refresh_token", func(m map[string]any) { m["expires_in"] = "soon" })},
		{name: "refresh with expires_in 1.5", ok: true, accessToken: true, intercept: tokenWith("refresh_token", func(m map[string]any) { m["expires_in"] = 1.5 })},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, f.cfg)
			if f.accessToken {
				e.extra = []string{"--oidc-use-access-token"}
			}
			args := e.args()
			if f.args != nil {
				args = f.args(e)
			}
			if !f.empty {
				e.login(t)
				e.expire(t)
			}
			before := e.snapshot()
			opened := e.browsersOpened()
			if f.intercept != nil {
				ic := f.intercept(e.idp)
				e.idp.Update(func(c *idptest.Config) { c.Intercept = ic })
			}
			p := e.startProc(args, nil)
			r := p.wait()
			took := p.end.Sub(p.start).Round(time.Millisecond)
			e.idp.Update(func(c *idptest.Config) { c.Intercept = nil })
			if f.ok {
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				tok, exp := credential(t, r.stdout)
				if f.accessToken {
					if !exp.After(time.Now()) || exp.After(time.Now().Add(366*24*time.Hour)) {
						t.Errorf("expirationTimestamp %v, want in the future and within a year", exp)
					}
				} else {
					e.checkIDToken(t, tok)
				}
				t.Logf("ok in %v, expiry in %v, browsers %d, stderr %q", took, time.Until(exp).Round(time.Second),
					e.browsersOpened()-opened, strings.TrimSpace(r.stderr))
				return
			}
			if r.code == 0 || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want a failure and nothing on stdout", r.code, r.stdout)
			}
			line := lastLine(r.stderr)
			if !strings.HasPrefix(line, "latchkey: ") || !strings.Contains(strings.ToLower(line), strings.ToLower(f.want)) {
				t.Errorf("stderr %q, want it to end with one line containing %q", r.stderr, f.want)
			}
			if got := e.browsersOpened() - opened; got != 0 && !f.empty {
				t.Errorf("a provider fault opened %d browsers", got)
			}
			after := e.snapshot()
			for k, v := range before {
				if !sameTokens(after[k], v) {
					t.Errorf("cache entry %s changed its tokens", k)
				}
			}
			t.Logf("failed in %v: %s", took, line)
		})
	}
}

// TestStressStalledRefreshWaiters: processes waiting behind a refresh that
// stalls (the IdP accepts the connection and never answers). Each process
// that gets the lock tries the refresh again, so the waiters' time is bounded
// by the lock wait (authentication timeout + 30 s), not by the first
// failure. This test records what happens; it asserts only the contract
// (failure, nothing on stdout, no browser, cache kept).
func TestStressStalledRefreshWaiters(t *testing.T) {
	stress(t)
	const n = 4
	e := newEnv(t, idptest.Config{})
	e.extra = []string{"--authentication-timeout-sec=5"}
	e.login(t)
	e.expire(t)
	id := e.key().ID()
	before, err := cache.Open(e.dir).Load(id)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	stalled := make(chan struct{}, n)
	e.idp.Update(func(c *idptest.Config) { c.Intercept = stall(isRefresh, stalled, release) })
	ps := make([]*proc, n)
	start := time.Now()
	for i := range ps {
		ps[i] = e.startProc(e.args(), nil)
	}
	shared := 0
	for i, p := range ps {
		r := p.wait()
		if r.code == 0 || r.stdout != "" {
			t.Errorf("process %d: exit %d, stdout %q; want a failure", i, r.code, r.stdout)
		}
		if strings.Contains(r.stderr, "refresh failed in another latchkey process") {
			shared++
		}
		t.Logf("process %d: failed after %v: %s", i, p.end.Sub(start).Round(100*time.Millisecond), lastLine(r.stderr))
	}
	// One process waits out the stalled provider; the others, queued on
	// the lock behind it, share its failure instead of each waiting again.
	if got := len(stalled); got != 1 {
		t.Errorf("refresh requests that reached the stalled provider = %d, want 1", got)
	}
	if shared != n-1 {
		t.Errorf("%d processes shared the failure, want %d", shared, n-1)
	}
	if got := e.browsersOpened(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
	after, err := cache.Open(e.dir).Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if after.RefreshToken != before.RefreshToken || after.IDToken != before.IDToken {
		t.Error("the stalled refresh changed the cached tokens")
	}
}

// sameTokens compares two cache entries' tokens; a failed refresh may add a
// note of itself (refresh_failure) but must keep every token.
func sameTokens(a, b string) bool {
	var ea, eb cache.Entry
	if json.Unmarshal([]byte(a), &ea) != nil || json.Unmarshal([]byte(b), &eb) != nil {
		return a == b
	}
	return ea.IDToken == eb.IDToken && ea.AccessToken == eb.AccessToken && ea.RefreshToken == eb.RefreshToken &&
		ea.IDTokenExpiry.Equal(eb.IDTokenExpiry) && ea.Expiry.Equal(eb.Expiry)
}
