package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/latchkey/latchkey/internal/printable"
)

// ErrNoBrowser reports that no way to open a browser was found; the person
// can still open the printed URL by hand.
var ErrNoBrowser = errors.New("no browser to open")

// Browser opens a login URL (pkce's login link, or a device verification
// URI) in the person's browser. It tries, in
// order: Command (--browser-command), the BROWSER environment variable, and
// the platform's opener: open on macOS, rundll32's URL handler on Windows,
// wslview or cmd.exe under WSL, xdg-open or x-www-browser elsewhere. The
// launcher's output goes to Stderr, never to stdout, which is the protocol.
type Browser struct {
	// Command is a command line split on spaces; the URL is appended as its
	// last argument, or replaces a %s.
	Command string
	// Skip only prints the URL.
	Skip bool
	// Stderr receives the URL for the person and the launcher's output; nil
	// means os.Stderr.
	Stderr io.Writer
	// GOOS is the platform; "" means runtime.GOOS.
	GOOS string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// LookPath finds executables; nil means exec.LookPath.
	LookPath func(string) (string, error)
	// ReadFile reads files (for WSL detection); nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// launchWait is how long Open watches the browser command: one that fails
// (a launcher that finds no browser, /bin/false) exits at once, while a
// browser keeps running and a launcher such as xdg-open exits 0.
const launchWait = 2 * time.Second

// Open prints url for the person and starts the browser on it without
// waiting for the browser to exit. It reports ErrNoBrowser when there is
// none to start (the URL is printed), and an error when the command fails
// to start or exits non-zero within launchWait (it says so on Stderr at
// once).
func (b *Browser) Open(ctx context.Context, url string) error {
	w := b.stderr()
	shown := printable.String(url) // its host and path came from the provider
	if err := openable(url); err != nil {
		return fmt.Errorf("%w: %s", ErrNoBrowser, printable.String(err.Error()))
	}
	if b.Skip {
		fmt.Fprintf(w, "latchkey: open this URL in a browser to log in:\n\n    %s\n\n", shown)
		return nil
	}
	argv, err := b.Argv(url)
	if err != nil {
		fmt.Fprintf(w, "latchkey: %v; open this URL in a browser to log in:\n\n    %s\n\n", err, shown)
		return err
	}
	fmt.Fprintf(w, "latchkey: opening a browser to log in; if none opens, visit:\n\n    %s\n\n", shown)
	cmd := exec.Command(argv[0], argv[1:]...)
	// Through a pipe, never the inherited descriptor: a browser lives on
	// after latchkey exits, and holding a caller's stderr pipe open would
	// keep an IDE that reads it to EOF waiting until the browser quits.
	cmd.Stdout = struct{ io.Writer }{w}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start browser %s: %w", argv[0], err)
	}
	if b.Logger != nil {
		b.Logger.Debug("started browser", "command", argv[0], "pid", cmd.Process.Pid)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			fmt.Fprintf(w, "latchkey: the browser command %s failed (%v); open the URL above yourself\n", argv[0], err)
			return fmt.Errorf("browser command %s: %w", argv[0], err)
		}
	case <-time.After(launchWait):
	case <-ctx.Done():
	}
	return nil
}

// Argv returns the command line that opens url, or ErrNoBrowser.
func (b *Browser) Argv(url string) ([]string, error) {
	if b.Command != "" {
		return withURL(b.Command, url), nil
	}
	if env := b.getenv("BROWSER"); strings.TrimSpace(env) != "" {
		return withURL(env, url), nil
	}
	switch b.goos() {
	case "darwin":
		return []string{"open", url}, nil
	case "windows":
		return []string{"rundll32", "url.dll,FileProtocolHandler", url}, nil
	}
	if b.isWSL() {
		if p, err := b.lookPath("wslview"); err == nil {
			return []string{p, url}, nil
		}
		// cmd.exe's start takes its first quoted argument as a window
		// title: WSL quotes the empty argument as "". cmd.exe reads
		// & | < > ^ as operators: escape them with ^.
		cmd, err := b.lookPath("cmd.exe")
		if err != nil {
			// WSL with appendWindowsPath=false.
			cmd = "/mnt/c/Windows/System32/cmd.exe"
			if _, err := b.lookPath(cmd); err != nil {
				return nil, fmt.Errorf("%w: under WSL, neither wslview nor cmd.exe found", ErrNoBrowser)
			}
		}
		return []string{cmd, "/c", "start", "", escapeCmd(url)}, nil
	}
	if b.getenv("DISPLAY") == "" && b.getenv("WAYLAND_DISPLAY") == "" {
		return nil, fmt.Errorf("%w: no display (DISPLAY and WAYLAND_DISPLAY are unset)", ErrNoBrowser)
	}
	for _, name := range []string{"xdg-open", "x-www-browser"} {
		if p, err := b.lookPath(name); err == nil {
			return []string{p, url}, nil
		}
	}
	return nil, fmt.Errorf("%w: neither xdg-open nor x-www-browser found", ErrNoBrowser)
}

// isWSL tells whether this is Linux under the Windows Subsystem for Linux.
func (b *Browser) isWSL() bool {
	if b.goos() != "linux" {
		return false
	}
	if b.getenv("WSL_DISTRO_NAME") != "" || b.getenv("WSL_INTEROP") != "" {
		return true
	}
	read := b.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	rel, err := read("/proc/sys/kernel/osrelease")
	return err == nil && strings.Contains(strings.ToLower(string(rel)), "microsoft")
}

func withURL(command, url string) []string {
	argv := strings.Fields(command)
	for i, a := range argv {
		if strings.Contains(a, "%s") {
			argv[i] = strings.ReplaceAll(a, "%s", url)
			return argv
		}
	}
	return append(argv, url)
}

func escapeCmd(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune("&|<>^()%!\"", r) {
			sb.WriteByte('^')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func (b *Browser) stderr() io.Writer {
	if b.Stderr != nil {
		return b.Stderr
	}
	return os.Stderr
}

func (b *Browser) goos() string {
	if b.GOOS != "" {
		return b.GOOS
	}
	return runtime.GOOS
}

func (b *Browser) getenv(k string) string {
	if b.Getenv != nil {
		return b.Getenv(k)
	}
	return os.Getenv(k)
}

func (b *Browser) lookPath(name string) (string, error) {
	if b.LookPath != nil {
		return b.LookPath(name)
	}
	return exec.LookPath(name)
}
