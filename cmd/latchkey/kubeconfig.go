package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// execUser is a kubeconfig user that runs latchkey.
type execUser struct {
	APIVersion      string
	Command         string
	Args            []string
	InteractiveMode string
	InstallHint     string
}

// yaml returns the user as the lines of a kubeconfig users list item, each
// indented by indent. Strings are JSON-quoted, which YAML reads as
// double-quoted scalars.
func (u execUser) yaml(name, indent string) []string {
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
	for i := range lines {
		lines[i] = indent + lines[i]
	}
	return lines
}

// errKubeconfigLayout reports a kubeconfig whose users list latchkey does
// not edit (flow style, or not a list): the printed kubectl command does.
var errKubeconfigLayout = errors.New("the kubeconfig is not in the layout latchkey edits (one block-style users list, LF line ends); run the kubectl command above instead")

// setKubeconfigUser sets the user called name in the kubeconfig at path to
// u, creating the file if needed. Only that user's lines change: the rest of
// the file, comments and formatting included, stays byte for byte. The old
// file is kept as path + ".bak"; the new one replaces it atomically.
func setKubeconfigUser(path, name string, u execUser) error {
	// Write through a symbolic link, not over it.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return fmt.Errorf("read kubeconfig: %w", err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	out, err := withUser(string(old), name, u)
	if err != nil {
		return fmt.Errorf("update kubeconfig %s: %w", path, err)
	}
	if old != nil {
		if err := writeAtomic(path+".bak", old, mode); err != nil {
			return fmt.Errorf("back up kubeconfig: %w", err)
		}
	}
	if err := writeAtomic(path, []byte(out), mode); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// withUser returns the kubeconfig doc with the user called name set to u,
// splicing text: it finds the top-level users key, the list item whose name
// is name, and replaces that item's lines, or appends a new item.
func withUser(doc, name string, u execUser) (string, error) {
	if strings.TrimSpace(doc) == "" {
		doc = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: \"\"\npreferences: {}\nusers: []\n"
	}
	if strings.Contains(doc, "\r") {
		return "", errKubeconfigLayout
	}
	lines := strings.Split(strings.TrimSuffix(doc, "\n"), "\n")
	key := -1
	for i, l := range lines {
		if l == "users:" || strings.HasPrefix(l, "users:") && (l[6] == ' ' || l[6] == '\t') {
			if key >= 0 {
				return "", errKubeconfigLayout // two users keys
			}
			key = i
		}
	}
	if key < 0 {
		lines = append(append(lines, "users:"), u.yaml(name, "")...)
		return strings.Join(lines, "\n") + "\n", nil
	}
	switch rest := strings.TrimSpace(stripComment(lines[key][len("users:"):])); rest {
	case "":
	case "[]", "null", "~":
		out := append(append(append([]string{}, lines[:key]...), "users:"), u.yaml(name, "")...)
		out = append(out, lines[key+1:]...)
		return strings.Join(out, "\n") + "\n", nil
	default:
		return "", errKubeconfigLayout
	}
	// The block: the lines after the key up to the next top-level key.
	end := len(lines)
	for i := key + 1; i < len(lines); i++ {
		l := lines[i]
		if l != "" && l[0] != ' ' && l[0] != '\t' && l[0] != '#' && !strings.HasPrefix(l, "- ") && l != "-" {
			end = i
			break
		}
	}
	indent, items := "", [][2]int{} // [start, end) of each item
	for i := key + 1; i < end; i++ {
		l := lines[i]
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := l[:len(l)-len(t)]
		if len(items) == 0 {
			if !strings.HasPrefix(t, "- ") && t != "-" {
				return "", errKubeconfigLayout
			}
			indent = ind
		}
		if ind == indent && (strings.HasPrefix(t, "- {") || strings.HasPrefix(t, "- [")) {
			return "", errKubeconfigLayout // an item in flow style
		}
		if ind == indent && (strings.HasPrefix(t, "- ") || t == "-") {
			if len(items) > 0 {
				items[len(items)-1][1] = i
			}
			items = append(items, [2]int{i, end})
		} else if len(ind) <= len(indent) {
			return "", errKubeconfigLayout
		}
	}
	// An item ends at its last non-blank, non-comment line.
	for k := range items {
		for items[k][1] > items[k][0]+1 {
			t := strings.TrimSpace(lines[items[k][1]-1])
			if t != "" && !strings.HasPrefix(t, "#") {
				break
			}
			items[k][1]--
		}
	}
	repl := u.yaml(name, indent)
	for _, it := range items {
		if itemName(lines[it[0]:it[1]], indent) == name {
			out := append(append(append([]string{}, lines[:it[0]]...), repl...), lines[it[1]:]...)
			return strings.Join(out, "\n") + "\n", nil
		}
	}
	at := key + 1
	if len(items) > 0 {
		at = items[len(items)-1][1]
	}
	out := append(append(append([]string{}, lines[:at]...), repl...), lines[at:]...)
	return strings.Join(out, "\n") + "\n", nil
}

// itemName returns the value of the name key of a list item's lines.
func itemName(item []string, indent string) string {
	for i, l := range item {
		var rest string
		switch {
		case i == 0 && strings.HasPrefix(l, indent+"- name:"):
			rest = l[len(indent+"- name:"):]
		case strings.HasPrefix(l, indent+"  name:"):
			rest = l[len(indent+"  name:"):]
		default:
			continue
		}
		v := strings.TrimSpace(stripComment(rest))
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if v[0] == '"' {
				var s string
				if json.Unmarshal([]byte(v), &s) == nil {
					return s
				}
			}
			return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
		}
		return v
	}
	return ""
}

// stripComment removes a trailing " # comment" outside quotes.
func stripComment(s string) string {
	inQuote := byte(0)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote != 0:
			if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'':
			inQuote = c
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// writeAtomic writes data to path through a temporary file in the same
// directory, flushed and renamed over path.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
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
