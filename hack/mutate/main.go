// Command mutate (make mutate) checks that the tests notice when a security
// or correctness check is removed: for each mutation in mutations.txt it
// copies the tracked files to a temporary directory once, changes the one
// place the mutation names, runs the tests that should fail, and puts the
// place back. A mutation the tests survive, or one that no longer applies
// (its text is not in the file exactly once) or does not build, fails the
// run.
//
// mutations.txt holds blocks separated by blank lines; # starts a comment:
//
//	file: plugin/verify.go
//	test: ./plugin TestIDTokenForAnotherLogin
//	from: if nonce != "" && idt.Nonce != nonce {
//	to:   if false && nonce != "" && idt.Nonce != nonce {
//
// from and to are compared after trimming spaces at both ends, so they match
// within a line whatever its indentation.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type mutation struct {
	line              int // where its block starts in the list
	file, pkg         string
	tests             []string
	from, to, comment string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	list := "hack/mutate/mutations.txt"
	if len(args) == 1 {
		list = args[0]
	}
	ms, err := parse(list)
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "latchkey-mutate-")
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	if err := copyTracked(ctx, dir); err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 2
	}
	failed := 0
	for _, m := range ms {
		start := time.Now()
		verdict, err := try(ctx, dir, m)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "ERROR     %s:%d %s: %v\n", list, m.line, m.file, err)
			continue
		}
		if verdict != "killed" {
			failed++
		}
		fmt.Fprintf(stdout, "%-9s %s:%d %s (%s) %.1fs\n", verdict, list, m.line, m.file, m.comment, time.Since(start).Seconds())
	}
	fmt.Fprintf(stdout, "%d mutations, %d not killed\n", len(ms), failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// parse reads the mutation list.
func parse(path string) ([]mutation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mutation
	var m *mutation
	var comment []string
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "":
			m, comment = nil, nil
			continue
		case strings.HasPrefix(line, "#"):
			comment = append(comment, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			continue
		}
		if m == nil {
			ms = append(ms, mutation{line: n, comment: strings.Join(comment, " ")})
			m, comment = &ms[len(ms)-1], nil
		}
		key, value, ok := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: want key: value", path, n)
		case key == "file":
			m.file = value
		case key == "test":
			f := strings.Fields(value)
			if len(f) < 2 {
				return nil, fmt.Errorf("%s:%d: want test: PACKAGE TEST [TEST]", path, n)
			}
			m.pkg, m.tests = f[0], f[1:]
		case key == "from":
			m.from = value
		case key == "to":
			m.to = value
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %q", path, n, key)
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.file == "" || m.pkg == "" || m.from == "" || m.from == m.to {
			return nil, fmt.Errorf("%s:%d: a mutation needs file, test, from and a different to", path, m.line)
		}
	}
	return ms, nil
}

// copyTracked copies the files git tracks into dir.
func copyTracked(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, "git", "ls-files", "-z").Output()
	if err != nil {
		return fmt.Errorf("list tracked files: %w", err)
	}
	for _, name := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		fi, err := os.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// try applies m in dir, runs its tests and restores the file. The verdict
// is "killed" when a test failed, "SURVIVED" when they all passed.
func try(ctx context.Context, dir string, m mutation) (string, error) {
	path := filepath.Join(dir, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if n := bytes.Count(orig, []byte(m.from)); n != 1 {
		return "", fmt.Errorf("%q occurs %d times, want once: update the list", m.from, n)
	}
	if err := os.WriteFile(path, bytes.Replace(orig, []byte(m.from), []byte(m.to), 1), 0o644); err != nil {
		return "", err
	}
	defer os.WriteFile(path, orig, 0o644)
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^("+strings.Join(m.tests, "|")+")$", m.pkg)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case bytes.Contains(out, []byte("no tests to run")):
		return "", fmt.Errorf("no test matches %v", m.tests)
	case err == nil:
		return "SURVIVED", nil
	case !errors.As(err, &exit):
		return "", err
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return "", fmt.Errorf("the mutation does not build:\n%s", out)
	}
	return "killed", nil
}
