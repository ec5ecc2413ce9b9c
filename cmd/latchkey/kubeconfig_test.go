package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// needKubectl skips a test that writes a kubeconfig when kubectl is not on
// PATH (the machines CI runs on have it).
func needKubectl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
}

// TestWriteUser: setup writes through kubectl, so the result always loads
// and round-trips exactly, whatever the user's name and arguments hold
// (DEL, C1 controls and NEL were once written as JSON escapes that are no
// YAML, which broke every context of the file); an existing user of that
// name is updated, not duplicated, and the rest is kept.
func TestWriteUser(t *testing.T) {
	needKubectl(t)
	c := &cli{getenv: os.Getenv}
	for _, name := range []string{"oidc", "quote\"s 'and' # hash: colon, comma", "ünïcode\u2028"} {
		t.Run(name, func(t *testing.T) {
			kc := filepath.Join(t.TempDir(), "config")
			orig := "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: t0k\n- name: " + `"` + "oidc\"\n  user:\n    token: old\n"
			if err := os.WriteFile(kc, []byte(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			u := execUser{
				APIVersion:      "client.authentication.k8s.io/v1",
				Command:         "/opt/bin/latchkey",
				Args:            []string{"get-token", "--oidc-issuer-url=https://issuer.example.com", "--oidc-extra-scope=a,b: #c" + name, `--x="y"`},
				InteractiveMode: "IfAvailable",
			}
			bak, err := c.writeUsers(context.Background(), kc, map[string]execUser{name: u})
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(bak); string(b) != orig {
				t.Errorf("backup %s = %q, want the original", bak, b)
			}
			cfg, err := clientcmd.LoadFromFile(kc)
			if err != nil {
				out, _ := os.ReadFile(kc)
				t.Fatalf("client-go cannot load the result: %v\n%s", err, out)
			}
			got := cfg.AuthInfos[name]
			if got == nil || got.Exec == nil || got.Exec.Command != u.Command || !slices.Equal(got.Exec.Args, u.Args) ||
				got.Exec.APIVersion != u.APIVersion || string(got.Exec.InteractiveMode) != u.InteractiveMode {
				t.Fatalf("user %q = %+v", name, got)
			}
			if cfg.AuthInfos["admin"] == nil || cfg.AuthInfos["admin"].Token != "t0k" {
				t.Error("user admin lost")
			}
			if want := 2 + btoi(name != "oidc"); len(cfg.AuthInfos) != want {
				t.Errorf("%d users, want %d", len(cfg.AuthInfos), want)
			}
		})
	}
}

// TestWriteUserRefusesControlCharacters: what kubectl could not write (DEL,
// C1 controls, NEL: once written as JSON escapes that are no YAML, which
// broke every context of the file) is refused before anything is written.
func TestWriteUserRefusesControlCharacters(t *testing.T) {
	c := &cli{getenv: os.Getenv}
	for _, bad := range []string{"a\x7fb", "c\u0085d", "e\u0080f", "g\x1bh", "i\xffj"} {
		kc := filepath.Join(t.TempDir(), "config")
		const orig = "apiVersion: v1\nkind: Config\n"
		if err := os.WriteFile(kc, []byte(orig), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct {
			name string
			user execUser
		}{{bad, execUser{Command: "latchkey"}}, {"oidc", execUser{Command: "latchkey", Args: []string{"get-token", "--x=" + bad}}}} {
			if _, err := c.writeUsers(context.Background(), kc, map[string]execUser{u.name: u.user}); !errors.Is(err, errControl) {
				t.Errorf("writeUsers(%q, %q): %v, want errControl", u.name, u.user.Args, err)
			}
		}
		if b, _ := os.ReadFile(kc); string(b) != orig {
			t.Errorf("%q: kubeconfig changed to %q", bad, b)
		}
		if _, err := os.Stat(kc + ".bak"); err == nil {
			t.Errorf("%q: a backup was written", bad)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestWriteUserWithoutKubectl(t *testing.T) {
	c := &cli{getenv: func(k string) string {
		if k == "PATH" {
			return t.TempDir()
		}
		return ""
	}}
	kc := filepath.Join(t.TempDir(), "config")
	if _, err := c.writeUsers(context.Background(), kc, map[string]execUser{"oidc": {}}); !errors.Is(err, errNoKubectl) {
		t.Errorf("writeUsers without kubectl: %v, want errNoKubectl", err)
	}
	if _, err := os.Stat(kc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a kubeconfig was written without kubectl: %v", err)
	}
}
