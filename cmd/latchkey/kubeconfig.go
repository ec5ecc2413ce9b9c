package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// execUser is a kubeconfig user that runs latchkey.
type execUser struct {
	APIVersion      string
	Command         string
	Args            []string
	InteractiveMode string
	InstallHint     string
}

// yaml returns the user as the lines of a kubeconfig users list item, for
// people to read and paste. Strings are JSON-quoted, which YAML reads as
// double-quoted scalars.
func (u execUser) yaml(name string) []string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	lines := []string{
		"- name: " + q(name),
		"  user:",
		"    exec:",
		"      apiVersion: " + q(u.APIVersion),
		"      command: " + q(u.Command),
		"      args:",
	}
	for _, a := range u.Args {
		lines = append(lines, "      - "+q(a))
	}
	lines = append(lines, "      interactiveMode: "+q(u.InteractiveMode))
	if u.InstallHint != "" {
		lines = append(lines, "      installHint: "+q(u.InstallHint))
	}
	return lines
}

// credentialFlags are the flags of `kubectl config set-credentials NAME`
// that set the user's exec to u; fields left empty are not set, and kubectl
// keeps what the user had. kubectl reads each --exec-arg as a CSV record (a
// comma separates arguments), so each argument is one quoted CSV field.
func (u execUser) credentialFlags() []string {
	var flags []string
	if u.APIVersion != "" {
		flags = append(flags, "--exec-api-version="+u.APIVersion)
	}
	if u.InteractiveMode != "" {
		flags = append(flags, "--exec-interactive-mode="+u.InteractiveMode)
	}
	flags = append(flags, "--exec-command="+u.Command)
	for _, a := range u.Args {
		flags = append(flags, "--exec-arg="+`"`+strings.ReplaceAll(a, `"`, `""`)+`"`)
	}
	return flags
}

// errControl reports a kubeconfig value with a control character, which
// kubectl's YAML cannot hold.
var errControl = errors.New("contains a control character, which a kubeconfig cannot hold")

// check refuses a user name or argument that kubectl could not write: one
// with a control character (C0, DEL, C1 such as NEL) or invalid UTF-8.
func (u execUser) check(name string) error {
	for _, s := range append([]string{name, u.Command}, u.Args...) {
		if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
			return fmt.Errorf("kubeconfig user %q: %q %w", name, s, errControl)
		}
	}
	return nil
}

// errNoKubectl reports that setup cannot write a kubeconfig without kubectl.
var errNoKubectl = errors.New("kubectl is not on PATH; run the kubectl command above to write the user")

// writeUsers sets each user of users (by name) in the kubeconfig at path
// with `kubectl config set-credentials`: kubectl's own writer, which locks
// the file and always writes YAML that kubectl loads (latchkey links no YAML
// library: a cached call would pay for its start-up). kubectl keeps the
// other users, clusters and contexts, and whatever else a user had, but not
// the file's comments; the file as it was is copied to path.bak first,
// whose path writeUsers returns ("" if there was no file). Nothing is
// written if a user cannot be (see execUser.check).
func (c *cli) writeUsers(ctx context.Context, path string, users map[string]execUser) (string, error) {
	for name, u := range users {
		if err := u.check(name); err != nil {
			return "", err
		}
	}
	kubectl, err := lookPath(c.getenv("PATH"), "kubectl")
	if err != nil {
		return "", errNoKubectl
	}
	bak := ""
	if old, err := os.ReadFile(path); err == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("back up kubeconfig: %w", err)
		}
		bak = path + ".bak"
		if err := writeAtomic(bak, old, fi.Mode().Perm()); err != nil {
			return "", fmt.Errorf("back up kubeconfig: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read kubeconfig: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(users)) {
		args := append([]string{"--kubeconfig=" + path, "config", "set-credentials", name}, users[name].credentialFlags()...)
		if _, err := c.kubectl(ctx, kubectl, args...); err != nil {
			return bak, fmt.Errorf("write kubeconfig %s: %w", path, err)
		}
	}
	return bak, nil
}

// kubectl runs kubectl with args and returns its standard output; an error
// carries what it printed on stderr (its stdout may be a kubeconfig with
// credentials).
func (c *cli) kubectl(ctx context.Context, kubectl string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, kubectl, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args[1:min(len(args), 3)], " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// lookPath finds an executable called name in the directories of path (a
// $PATH value), as exec.LookPath does with the process's own $PATH.
func lookPath(path, name string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		// With a directory in it, exec.LookPath checks that one file
		// (with the PATHEXT extensions on Windows).
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// writeAtomic writes data to path through a temporary file in the same
// directory, flushed and renamed over path.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
