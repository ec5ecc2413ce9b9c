package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// execUser is a kubeconfig user that runs latchkey.
type execUser struct {
	Exec execConfig `yaml:"exec"`
}

type execConfig struct {
	APIVersion      string   `yaml:"apiVersion"`
	Command         string   `yaml:"command"`
	Args            []string `yaml:"args"`
	InteractiveMode string   `yaml:"interactiveMode"`
	InstallHint     string   `yaml:"installHint,omitempty"`
}

// setKubeconfigUser sets the user called name in the kubeconfig at path to
// u, creating the file if needed and keeping the rest of it, comments
// included, as it was. The old file is kept as path + ".bak"; the new one
// replaces it atomically.
func setKubeconfigUser(path, name string, u execUser) error {
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
	out, err := withUser(old, name, u)
	if err != nil {
		return fmt.Errorf("update kubeconfig %s: %w", path, err)
	}
	if old != nil {
		if err := writeAtomic(path+".bak", old, mode); err != nil {
			return fmt.Errorf("back up kubeconfig: %w", err)
		}
	}
	if err := writeAtomic(path, out, mode); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// withUser returns the kubeconfig document doc with user name set to u.
func withUser(doc []byte, name string, u execUser) ([]byte, error) {
	var root yaml.Node
	if len(bytes.TrimSpace(doc)) == 0 {
		doc = []byte("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
	}
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a kubeconfig: the document is not a mapping")
	}
	top := root.Content[0]
	users := mapValue(top, "users")
	if users == nil {
		users = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "users"}, users)
	}
	if users.Kind != yaml.SequenceNode {
		if users.Tag == "!!null" {
			users.Kind, users.Tag, users.Value = yaml.SequenceNode, "!!seq", ""
		} else {
			return nil, errors.New("not a kubeconfig: users is not a list")
		}
	}
	var user yaml.Node
	if err := user.Encode(u); err != nil {
		return nil, err
	}
	for _, item := range users.Content {
		if n := mapValue(item, "name"); n != nil && n.Value == name {
			if v := mapValue(item, "user"); v != nil {
				*v = user
			} else {
				item.Content = append(item.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "user"}, &user)
			}
			return encode(&root)
		}
	}
	var entry yaml.Node
	if err := entry.Encode(map[string]any{"name": name}); err != nil {
		return nil, err
	}
	entry.Content = append(entry.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "user"}, &user)
	users.Style = 0 // block style, also for a "users: []" written in flow style
	users.Content = append(users.Content, &entry)
	return encode(&root)
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func encode(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
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
