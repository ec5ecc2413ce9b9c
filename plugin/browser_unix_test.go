//go:build unix

package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBrowserDoesNotHoldStderr: a browser outlives latchkey; it must not
// keep the caller's stderr open (an IDE reading it to EOF would hang).
func TestBrowserDoesNotHoldStderr(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "browser")
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(script, []byte("#!"+sh+"\necho $$ > "+pidFile+"\necho opening\nexec sleep 60\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := &Browser{Command: script, Stderr: w}
	if err := b.Open(context.Background(), "http://127.0.0.1/x"); err != nil {
		t.Fatal(err)
	}
	var pid int
	for pid == 0 {
		time.Sleep(10 * time.Millisecond)
		if s, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(s)))
		}
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond) // let "opening" through the copy
	w.Close()
	// This process's stderr pipe ends here, while the browser still runs.
	out := make(chan []byte)
	go func() {
		var b []byte
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				out <- b
				return
			}
		}
	}()
	var got []byte
	select {
	case got = <-out:
	case <-time.After(20 * time.Second):
		t.Fatal("stderr is still open 20 s after latchkey let go of it: the browser holds it")
	}
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("the browser exited; the test proves nothing")
	}
	if !strings.Contains(string(got), "http://127.0.0.1/x") {
		t.Errorf("stderr %q lacks the URL", got)
	}
}
