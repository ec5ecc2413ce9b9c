package plugin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testAuthURL has every character that cmd.exe treats specially in an
// authorization URL's query: & between parameters, % from percent-encoding.
const testAuthURL = "https://idp.example.com/auth?client_id=kube&redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fcallback&state=s1&nonce=n1"

// platform is what a Browser sees of the machine it runs on.
type platform struct {
	goos      string
	env       map[string]string
	path      map[string]string // executable name -> path that LookPath finds
	osrelease string            // /proc/sys/kernel/osrelease; "" means unreadable
}

// browser returns a Browser that sees only p, never the test machine.
func (p platform) browser(command string) *Browser {
	return &Browser{
		Command: command,
		GOOS:    p.goos,
		Getenv:  func(k string) string { return p.env[k] },
		LookPath: func(name string) (string, error) {
			if path, ok := p.path[name]; ok {
				return path, nil
			}
			return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
		},
		ReadFile: func(name string) ([]byte, error) {
			if name == "/proc/sys/kernel/osrelease" && p.osrelease != "" {
				return []byte(p.osrelease), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
	}
}

var (
	x11     = map[string]string{"DISPLAY": ":0"}
	openers = map[string]string{"xdg-open": "/usr/bin/xdg-open", "x-www-browser": "/usr/bin/x-www-browser"}
)

func TestBrowserArgv(t *testing.T) {
	u := testAuthURL
	for _, tc := range []struct {
		name    string
		p       platform
		command string // --browser-command
		want    []string
		wantErr error
	}{
		// --browser-command, then BROWSER, then the platform's opener.
		{
			name:    "command wins over BROWSER and xdg-open",
			p:       platform{goos: "linux", env: map[string]string{"DISPLAY": ":0", "BROWSER": "lynx"}, path: openers},
			command: "firefox --new-window",
			want:    []string{"firefox", "--new-window", u},
		},
		{
			name:    "command wins over open on macOS",
			p:       platform{goos: "darwin", env: map[string]string{"BROWSER": "lynx"}},
			command: "open -a Safari",
			want:    []string{"open", "-a", "Safari", u},
		},
		{
			name:    "command wins over rundll32 on Windows",
			p:       platform{goos: "windows"},
			command: `C:\Tools\browser.exe`,
			want:    []string{`C:\Tools\browser.exe`, u},
		},
		{
			name:    "command wins without a display",
			p:       platform{goos: "linux"},
			command: "w3m",
			want:    []string{"w3m", u},
		},
		{
			name:    "command with %s",
			p:       platform{goos: "linux", env: x11},
			command: "chromium --app=%s --incognito",
			want:    []string{"chromium", "--app=" + u, "--incognito"},
		},
		{
			name:    "command split on runs of spaces",
			p:       platform{goos: "linux", env: x11},
			command: "  firefox   -P  work ",
			want:    []string{"firefox", "-P", "work", u},
		},
		{
			name: "BROWSER wins over xdg-open",
			p:    platform{goos: "linux", env: map[string]string{"DISPLAY": ":0", "BROWSER": "firefox -P work"}, path: openers},
			want: []string{"firefox", "-P", "work", u},
		},
		{
			name: "BROWSER wins over open on macOS",
			p:    platform{goos: "darwin", env: map[string]string{"BROWSER": "lynx"}},
			want: []string{"lynx", u},
		},
		{
			name: "BROWSER wins over rundll32 on Windows",
			p:    platform{goos: "windows", env: map[string]string{"BROWSER": "firefox.exe"}},
			want: []string{"firefox.exe", u},
		},
		{
			name: "BROWSER wins over wslview",
			p:    platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu", "BROWSER": "wslview"}, path: map[string]string{"wslview": "/usr/bin/wslview"}},
			want: []string{"wslview", u},
		},
		{
			name: "BROWSER with %s",
			p:    platform{goos: "linux", env: map[string]string{"DISPLAY": ":0", "BROWSER": "w3m %s -no-mouse"}},
			want: []string{"w3m", u, "-no-mouse"},
		},
		{
			name: "blank BROWSER is ignored",
			p:    platform{goos: "darwin", env: map[string]string{"BROWSER": "  "}},
			want: []string{"open", u},
		},

		// The platform's opener.
		{
			name: "macOS open, no display needed",
			p:    platform{goos: "darwin"},
			want: []string{"open", u},
		},
		{
			name: "Windows rundll32",
			p:    platform{goos: "windows"},
			want: []string{"rundll32", "url.dll,FileProtocolHandler", u},
		},
		{
			name: "Windows is not WSL",
			p:    platform{goos: "windows", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu"}, osrelease: "microsoft"},
			want: []string{"rundll32", "url.dll,FileProtocolHandler", u},
		},
		{
			name: "WSL without wslview or cmd.exe on PATH, System32 cmd.exe",
			p:    platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu"}, path: map[string]string{"/mnt/c/Windows/System32/cmd.exe": "/mnt/c/Windows/System32/cmd.exe"}},
			want: []string{"/mnt/c/Windows/System32/cmd.exe", "/c", "start", "", escapeCmd(u)},
		},
		{
			name:    "WSL without any opener",
			p:       platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu"}},
			wantErr: ErrNoBrowser,
		},
		{
			name:    "FreeBSD without a display",
			p:       platform{goos: "freebsd", path: map[string]string{"xdg-open": "/usr/local/bin/xdg-open"}},
			wantErr: ErrNoBrowser,
		},
		{
			name: "WSL_DISTRO_NAME, wslview",
			p:    platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu"}, path: map[string]string{"wslview": "/usr/bin/wslview"}},
			want: []string{"/usr/bin/wslview", u},
		},
		{
			name: "WSL_INTEROP, wslview",
			p:    platform{goos: "linux", env: map[string]string{"WSL_INTEROP": "/run/WSL/8_interop"}, path: map[string]string{"wslview": "/usr/bin/wslview"}},
			want: []string{"/usr/bin/wslview", u},
		},
		{
			name: "WSL2 kernel release, wslview",
			p:    platform{goos: "linux", path: map[string]string{"wslview": "/usr/bin/wslview"}, osrelease: "5.15.167.4-microsoft-standard-WSL2\n"},
			want: []string{"/usr/bin/wslview", u},
		},
		{
			name: "WSL1 kernel release, wslview",
			p:    platform{goos: "linux", path: map[string]string{"wslview": "/usr/bin/wslview"}, osrelease: "4.4.0-19041-Microsoft\n"},
			want: []string{"/usr/bin/wslview", u},
		},
		{
			name: "WSL with WSLg's display still prefers wslview",
			p:    platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, path: map[string]string{"wslview": "/usr/bin/wslview", "xdg-open": "/usr/bin/xdg-open"}},
			want: []string{"/usr/bin/wslview", u},
		},
		{
			name:    "Linux without a display",
			p:       platform{goos: "linux", path: openers, osrelease: "6.8.0-45-generic\n"},
			wantErr: ErrNoBrowser,
		},
		{
			name: "Linux X11, xdg-open",
			p:    platform{goos: "linux", env: x11, path: openers, osrelease: "6.8.0-45-generic\n"},
			want: []string{"/usr/bin/xdg-open", u},
		},
		{
			name: "Linux Wayland, xdg-open",
			p:    platform{goos: "linux", env: map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, path: openers},
			want: []string{"/usr/bin/xdg-open", u},
		},
		{
			name: "Linux, x-www-browser when xdg-open is missing",
			p:    platform{goos: "linux", env: x11, path: map[string]string{"x-www-browser": "/etc/alternatives/x-www-browser"}},
			want: []string{"/etc/alternatives/x-www-browser", u},
		},
		{
			name:    "Linux, no opener",
			p:       platform{goos: "linux", env: x11},
			wantErr: ErrNoBrowser,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.browser(tc.command).Argv(u)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Argv error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Argv (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBrowserArgvWSLCmd checks what cmd.exe receives when WSL has no wslview.
// Linux has no command line: WSL's interop joins the argv that exec passes
// into one, quoting an argument only if it is empty or holds a space, tab,
// CR, LF or '"', and escaping '"' as \" (FormatCommandLine in microsoft/WSL
// src/windows/common/interop.cpp). cmd.exe then reads that line with its own
// rules: outside quotes, ^ escapes the next character and & | < > separate
// commands, and start takes its first quoted argument as the window title.
func TestBrowserArgvWSLCmd(t *testing.T) {
	p := platform{goos: "linux", env: map[string]string{"WSL_DISTRO_NAME": "Ubuntu"}, path: map[string]string{"cmd.exe": "cmd.exe"}}
	for _, u := range []string{
		testAuthURL,
		"https://idp.example.com/auth?a=1|2&b=<3>&c=(4)&d=5^6&e=%PATH%&f=!x!",
	} {
		argv, err := p.browser("").Argv(u)
		if err != nil {
			t.Fatalf("Argv(%q): %v", u, err)
		}
		got := wslCommandLine(argv)
		// start "" <url>: an empty title, then the URL with cmd.exe's
		// operators escaped, unquoted so that cmd.exe honours the ^.
		want := `cmd.exe /c start "" ` + escapeCmd(u)
		if got != want {
			t.Errorf("cmd.exe receives\n\t%s\nwant\n\t%s", got, want)
		}
		if got := cmdUnescape(escapeCmd(u)); got != u {
			t.Errorf("start receives %q, want %q", got, u)
		}
	}
}

// wslCommandLine joins argv as WSL's interop does for a Windows executable.
func wslCommandLine(argv []string) string {
	var line []string
	for _, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\r\n\"") {
			line = append(line, a)
			continue
		}
		var b strings.Builder
		b.WriteByte('"')
		backslashes := 0
		for _, c := range []byte(a) {
			switch c {
			case '"':
				b.WriteString(strings.Repeat(`\`, 2*backslashes+1))
				backslashes = 0
			case '\\':
				backslashes++
				continue
			default:
				b.WriteString(strings.Repeat(`\`, backslashes))
				backslashes = 0
			}
			b.WriteByte(c)
		}
		b.WriteString(strings.Repeat(`\`, 2*backslashes))
		b.WriteByte('"')
		line = append(line, b.String())
	}
	return strings.Join(line, " ")
}

// cmdUnescape is what cmd.exe makes of an unquoted word: each ^ escapes the
// character after it. (An unescaped operator would end the command instead.)
func cmdUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '^' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestEscapeCmd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://a.example/x", "https://a.example/x"},
		{"a&b|c<d>e^f", "a^&b^|c^<d^>e^^f"},
		{"(%x%)!y!", `^(^%x^%^)^!y^!`},
		{`q"r`, `q^"r`},
		{"é&ü", "é^&ü"},
	} {
		if got := escapeCmd(tc.in); got != tc.want {
			t.Errorf("escapeCmd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// lockedBuffer is a bytes.Buffer that the launcher's output relay and the
// test may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor returns once b holds all of want, or fails the test when ctx ends.
func waitFor(ctx context.Context, t *testing.T, b *lockedBuffer, want ...string) {
	t.Helper()
	for {
		missing := false
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				missing = true
			}
		}
		if !missing {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stderr never got %q; it has:\n%s", want, b.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestBrowserOpenOutputToStderr runs a real launcher that writes to both its
// stdout and its stderr: both must reach Browser.Stderr, since latchkey's
// stdout carries only the ExecCredential.
func TestBrowserOpenOutputToStderr(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	// Run through sh rather than exec'ing a file just written, which can fail
	// with ETXTBSY while another goroutine forks.
	script := filepath.Join(t.TempDir(), "launcher.sh")
	if err := os.WriteFile(script, []byte("printf 'launcher stdout %s\\n' \"$1\"\nprintf 'launcher stderr\\n' >&2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	b := &Browser{
		Command: sh + " " + script,
		Stderr:  &stderr,
		GOOS:    "linux",
		Getenv:  func(string) string { return "" },
	}
	if err := b.Open(t.Context(), testAuthURL); err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	waitFor(ctx, t, &stderr, "launcher stdout "+testAuthURL+"\n", "launcher stderr\n")
	if !strings.Contains(stderr.String(), "    "+testAuthURL+"\n") {
		t.Errorf("stderr does not show the URL on a line of its own:\n%s", stderr.String())
	}
}

func TestBrowserOpenSkip(t *testing.T) {
	var stderr bytes.Buffer
	b := &Browser{
		// Open would fail to start this if it tried.
		Command: filepath.Join(t.TempDir(), "no-such-browser"),
		Skip:    true,
		Stderr:  &stderr,
	}
	if err := b.Open(t.Context(), testAuthURL); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := stderr.String(); !strings.Contains(got, "\n    "+testAuthURL+"\n") {
		t.Errorf("stderr = %q, want the URL on a line of its own", got)
	}
}

func TestBrowserOpenNoBrowserPrintsURL(t *testing.T) {
	var stderr bytes.Buffer
	b := platform{goos: "linux", path: openers}.browser("")
	b.Stderr = &stderr
	// The URL is printed for the person; the error tells the caller that
	// no browser opened (a caller whose stderr nobody sees stops at once).
	if err := b.Open(t.Context(), testAuthURL); !errors.Is(err, ErrNoBrowser) {
		t.Fatalf("Open without a display = %v, want ErrNoBrowser", err)
	}
	got := stderr.String()
	if !strings.Contains(got, "\n    "+testAuthURL+"\n") {
		t.Errorf("stderr = %q, want the URL on a line of its own", got)
	}
	if !strings.Contains(got, "no display") {
		t.Errorf("stderr = %q, want the reason", got)
	}
}

func TestBrowserOpenStartFails(t *testing.T) {
	var stderr bytes.Buffer
	missing := filepath.Join(t.TempDir(), "no-such-browser")
	b := &Browser{Command: missing, Stderr: &stderr}
	err := b.Open(t.Context(), testAuthURL)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open = %v, want fs.ErrNotExist", err)
	}
	// The URL carries state and nonce, which stay out of error strings.
	if strings.Contains(err.Error(), "state=") || strings.Contains(err.Error(), "nonce=") {
		t.Errorf("error %q shows the authorization URL", err)
	}
	if !strings.Contains(stderr.String(), testAuthURL) {
		t.Errorf("stderr = %q, want the URL for the person", stderr.String())
	}
}

// TestBrowserCommandFails: a browser command that fails (--browser-command
// /bin/false, a launcher that exits 1) is said at once, and reported: it
// used to cost the whole --authentication-timeout-sec with nothing said.
func TestBrowserCommandFails(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if runtime.GOOS == "windows" {
		t.Skip("shell scripts")
	}
	var stderr lockedBuffer
	err := (&Browser{Command: script("fails", "exit 1"), Stderr: &stderr}).Open(t.Context(), testAuthURL)
	if err == nil || !strings.Contains(stderr.String(), "failed") {
		t.Errorf("Open with a failing command = %v, stderr %q; want an error said at once", err, stderr.String())
	}
	// A command that keeps running (a browser) or exits 0 (xdg-open) is fine.
	for _, cmd := range []string{script("ok", "exit 0"), script("runs", "sleep 5")} {
		if err := (&Browser{Command: cmd, Stderr: io.Discard}).Open(t.Context(), testAuthURL); err != nil {
			t.Errorf("Open(%s) = %v", cmd, err)
		}
	}
}

// TestBrowserOpenRefusesUnopenable: Browser.Open itself never runs the
// command for a URL that is not https, or http on loopback.
func TestBrowserOpenRefusesUnopenable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("shell script")
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "browser")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"file:///etc/passwd", `\\host\share\x.exe`} {
		if err := (&Browser{Command: script, Stderr: io.Discard}).Open(t.Context(), u); !errors.Is(err, ErrNoBrowser) {
			t.Errorf("Open(%q) = %v, want a refusal", u, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the browser command ran for an unopenable URL")
	}
}
