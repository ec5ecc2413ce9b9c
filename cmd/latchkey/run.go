package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/latchkey/latchkey/internal/printable"
	"github.com/latchkey/latchkey/plugin"
)

// version is stamped at release time with -ldflags "-X main.version=...".
var version = ""

// cli is one invocation's environment.
type cli struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	// args are the command's arguments, for commands that echo them.
	args []string
	// personAtStderr: stderr is a terminal, so a person sees it. Decided
	// once, before a command may send people's output to /dev/tty.
	personAtStderr bool
	// ppid is the parent process at start, the caller interruptible
	// watches.
	ppid int
}

// command is a subcommand: its one-line summary, usage line, longer help
// with examples, and how to run it.
type command struct {
	name, summary, usage, help string
	// flags registers the command's flags and returns what runs after a
	// successful parse.
	flags func(c *cli, fs *flag.FlagSet) func(ctx context.Context) int
	// ownsSignals marks commands that install the interrupt handler
	// themselves, after their cached fast path: the handler's goroutine
	// makes the runtime start threads that cost a quarter of a cached call.
	ownsSignals bool
}

func commands() []command {
	return []command{getTokenCommand, tokenCommand, setupCommand, statusCommand, logoutCommand, cleanCommand, completionCommand(), versionCommand}
}

// run is the whole program but for process setup: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, personAtStderr: isTerminal(stderr), ppid: os.Getppid()}
	if len(args) == 0 {
		c.usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, getenv, stdin, stdout, stderr)
		}
		c.usage(stdout)
		return 0
	case "--version":
		args[0] = "version"
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return c.run(ctx, cmd, args[1:])
		}
	}
	fmt.Fprintf(stderr, "latchkey: unknown command %q (see latchkey help)\n", args[0])
	return 2
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "latchkey: OpenID Connect credentials for kubectl and other tools\n\nCommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprint(w, "\nRun 'latchkey COMMAND --help' for a command's flags and examples.\n")
}

// run parses args for cmd and runs it.
func (c *cli) run(ctx context.Context, cmd command, args []string) int {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	do := cmd.flags(c, fs)
	c.args = args
	switch err := parseFlags(fs, args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(c.stdout, "Usage: latchkey %s\n\n%s\n", cmd.usage, cmd.summary)
		if listed := listedFlags(fs); hasFlags(listed) {
			fmt.Fprint(c.stdout, "\nFlags:\n")
			listed.SetOutput(c.stdout)
			listed.PrintDefaults()
		}
		fmt.Fprint(c.stdout, cmd.help)
		return 0
	case err != nil:
		fmt.Fprintf(c.stderr, "latchkey %s: %v (see latchkey %s --help)\n", cmd.name, err, cmd.name)
		return 2
	}
	if !cmd.ownsSignals {
		var stop context.CancelFunc
		ctx, stop = c.interruptible(ctx)
		defer stop()
	}
	return do(ctx)
}

// ignored is a flag a command accepts without using or listing it.
type ignored struct{ flag.Value }

func (v ignored) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// ignoreLoginFlags makes fs accept, without listing them, the flags of a
// login that it lacks, so that the get-token arguments of a kubeconfig can
// be given to logout as they are.
func ignoreLoginFlags(fs *flag.FlagSet) {
	login := flag.NewFlagSet("", flag.ContinueOnError)
	new(plugin.Options).RegisterFlags(login)
	login.VisitAll(func(f *flag.Flag) {
		if fs.Lookup(f.Name) == nil {
			fs.Var(ignored{f.Value}, f.Name, f.Usage)
		}
	})
}

// klogFlags are the logging flags kubelogin inherits from klog. A
// kubeconfig that switches from kubelogin may carry them; latchkey accepts
// them and ignores them: it logs to stderr only, more with -v.
var klogFlags = []struct {
	name   string
	isBool bool
}{
	{"add_dir_header", true}, {"alsologtostderr", true}, {"alsologtostderrthreshold", false},
	{"legacy_stderr_threshold_behavior", true}, {"log_backtrace_at", false}, {"log_dir", false},
	{"log_file", false}, {"log_file_max_size", false}, {"logtostderr", true}, {"one_output", true},
	{"skip_headers", true}, {"skip_log_headers", true}, {"stderrthreshold", false}, {"vmodule", false},
}

// ignoreKlogFlags makes fs accept, without listing them, klogFlags.
func ignoreKlogFlags(fs *flag.FlagSet) {
	for _, f := range klogFlags {
		var v flag.Value = new(discard)
		if f.isBool {
			v = new(discardBool)
		}
		fs.Var(ignored{v}, f.name, "accepted for kubelogin kubeconfigs; ignored")
	}
}

// discard is a flag value that keeps nothing.
type discard struct{}

func (*discard) String() string   { return "" }
func (*discard) Set(string) error { return nil }

// discardBool is a boolean flag value that keeps nothing.
type discardBool struct{ discard }

func (*discardBool) IsBoolFlag() bool { return true }

// listedFlags returns the flags of fs that its help lists: all but the
// ignored ones.
func listedFlags(fs *flag.FlagSet) *flag.FlagSet {
	out := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if _, skip := f.Value.(ignored); !skip {
			out.Var(f.Value, f.Name, f.Usage)
		}
	})
	return out
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// interruptible returns ctx cancelled on SIGINT or SIGTERM, or when the
// process that started latchkey is gone, so that a login in progress shuts
// its listener down and lets go of the lock.
func (c *cli) interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	// SIGHUP: the terminal running a login was closed.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancelCause(ctx)
	go watchParent(ctx, cancel, c.ppid, os.Getppid, parentPoll)
	return ctx, func() { cancel(nil); stop() }
}

// parentPoll is how often latchkey checks that its caller is still there.
const parentPoll = 250 * time.Millisecond

// watchParent cancels ctx with plugin.ErrCallerGone when the parent process
// is gone: its children are then reparented (to init, or a subreaper), so
// the parent pid changes, on Linux and macOS alike. A caller killed in the
// middle of a login (flytectl, kubectl) used to leave latchkey running,
// holding the redirect port and the lock, so that the next caller could
// not log in. Windows keeps the pid of a parent that exited: there it
// watches nothing.
func watchParent(ctx context.Context, cancel context.CancelCauseFunc, ppid int, getppid func() int, every time.Duration) {
	if runtime.GOOS == "windows" || ppid <= 1 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if getppid() != ppid {
				cancel(plugin.ErrCallerGone)
				return
			}
		}
	}
}

// parseFlags parses args into fs without printing anything: errors come back
// as one line for the caller to print, and flag.ErrHelp for -h/--help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// client returns a plugin client for o wired to this invocation: attended
// when a person sees its stderr. The person's input is read only when
// stdinHandedOver says stdin is theirs.
func (c *cli) client(o plugin.Options, stdinHandedOver bool) *plugin.Client {
	cl := &plugin.Client{
		Options:  o,
		Logger:   c.logger(o.Verbose),
		Getenv:   c.getenv,
		Stderr:   c.stderr,
		Attended: c.personAtStderr,
	}
	if stdinHandedOver {
		cl.Stdin = c.stdin
	}
	return cl
}

// fail prints err as one line and returns the exit code for it.
func (c *cli) fail(err error) int {
	// Errors carry what providers said: shown with control characters
	// escaped (a hostile provider must not drive the terminal).
	msg := printable.String(strings.Join(strings.Fields(err.Error()), " "))
	fmt.Fprintf(c.stderr, "latchkey: %s\n", msg)
	if errors.Is(err, plugin.ErrUsage) {
		return 2
	}
	return 1
}

// logger returns a logger writing "latchkey: message key=value" lines to
// stderr: info and above, or debug too when verbose.
func (c *cli) logger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(&lineHandler{mu: new(sync.Mutex), w: c.stderr, level: level})
}

// isTerminal tells whether w is a terminal. /dev/null is a character
// device but no terminal: a caller that discards stderr runs in the
// background.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

var versionCommand = command{
	name:    "version",
	summary: "print the version, Go version and platform",
	usage:   "version",
	help: `
Example:
  latchkey version      # latchkey v1.2.3 go1.26.8 linux/amd64
`,
	flags: func(c *cli, fs *flag.FlagSet) func(context.Context) int {
		return func(context.Context) int {
			fmt.Fprintf(c.stdout, "latchkey %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return 0
		}
	},
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
