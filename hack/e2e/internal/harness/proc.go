// Package harness starts the real-world parts of latchkey's end-to-end suite
// on loopback: a throwaway CA made with openssl, Dex behind a counting
// reverse proxy, etcd and kube-apiserver, and writes kubeconfigs whose exec
// stanza runs latchkey.
//
// Every process is tied to a testing.TB: it is stopped in t.Cleanup.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a child process whose output goes to a log file.
type Proc struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

// StartProc starts bin with args, output appended to dir/name.log. The process
// is stopped when the test ends, and its log tail is printed if the test
// failed.
func StartProc(t testing.TB, dir, name, bin string, args []string, env []string) *Proc {
	t.Helper()
	p, err := startProc(dir, name, bin, args, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", p.LogPath, p.Tail(40))
		}
	})
	return p
}

func startProc(dir, name, bin string, args []string, env []string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	// Own process group, so a Ctrl-C of `go test` does not race our stop, and
	// a Pdeathsig so a crashed test binary does not leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "=== %s %s %q\n", time.Now().UTC().Format(time.RFC3339Nano), bin, args)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILLs. It signals only this
// process (by pid), never a group or a name.
func (p *Proc) Stop() {
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Tail returns the last n lines of the log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is "127.0.0.1:<port>".
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// WaitFor calls check every 100 ms until it returns nil, the process exits,
// or the timeout passes.
func WaitFor(ctx context.Context, what string, p *Proc, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		if p != nil {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("wait for %s: process exited (%v); log %s:\n%s", what, err, p.LogPath, p.Tail(30))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LookBin returns the path in the environment variable env, else the first
// name found in PATH, else an error saying how to get it.
func LookBin(env string, names ...string) (string, error) {
	if v := os.Getenv(env); v != "" {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("$%s: %w", env, err)
		}
		return v, nil
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("$" + env + " is not set and none of " + fmt.Sprint(names) + " is in PATH (run hack/e2e/tools.sh)")
}
