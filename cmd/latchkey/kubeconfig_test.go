package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestWithUser(t *testing.T) {
	u := execUser{
		APIVersion:      "client.authentication.k8s.io/v1",
		Command:         "/opt/bin/latchkey",
		Args:            []string{"get-token", "--oidc-issuer-url=https://issuer.example.com", "--oidc-extra-scope=a b: #c"},
		InteractiveMode: "IfAvailable",
	}
	const cluster = "clusters:\n- name: prod # keep me\n  cluster:\n    server: https://prod.example.com\n"
	tests := []struct {
		name, doc string
		// keep are lines that must survive unchanged, in order.
		keep []string
		// others are users that must still be there.
		others []string
	}{
		{name: "empty file", doc: ""},
		{name: "empty list", doc: "apiVersion: v1\nkind: Config\n" + cluster + "users: [] # none yet\ncurrent-context: prod\n",
			keep: []string{"- name: prod # keep me", "current-context: prod"}},
		{name: "no users key", doc: "apiVersion: v1\nkind: Config\n" + cluster, keep: []string{"- name: prod # keep me"}},
		{name: "append, items at column 0", doc: "apiVersion: v1\nkind: Config\n" + cluster + "users:\n- name: admin\n  user:\n    token: t0k\n# trailing comment\n\ncontexts: []\n",
			keep: []string{"- name: admin", "    token: t0k", "# trailing comment", "contexts: []"}, others: []string{"admin"}},
		{name: "replace, indented items, comments between",
			doc:  "apiVersion: v1\nkind: Config\n" + cluster + "users:\n  # first\n  - name: admin\n    user:\n      token: t0k\n  # ours, old\n  - name: oidc\n    user:\n      exec:\n        apiVersion: client.authentication.k8s.io/v1beta1\n        command: kubectl\n        args: [oidc-login, get-token]\n  - name: last\n    user: {}\ncurrent-context: prod\n",
			keep: []string{"  # first", "  - name: admin", "  # ours, old", "  - name: last", "current-context: prod"}, others: []string{"admin", "last"}},
		{name: "replace, name not first, quoted",
			doc:  "apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: old\n  name: \"oidc\" # quoted\n- name: 'other'\n  user: {}\n",
			keep: []string{"- name: 'other'"}, others: []string{"other"}},
		{name: "null list", doc: "apiVersion: v1\nkind: Config\nusers: null\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := withUser(tt.doc, "oidc", u)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.Load([]byte(out))
			if err != nil {
				t.Fatalf("client-go cannot load the result: %v\n%s", err, out)
			}
			got := cfg.AuthInfos["oidc"]
			if got == nil || got.Exec == nil || got.Exec.Command != u.Command || !slices.Equal(got.Exec.Args, u.Args) ||
				got.Exec.APIVersion != u.APIVersion || string(got.Exec.InteractiveMode) != u.InteractiveMode || got.Token != "" {
				t.Fatalf("user oidc = %+v in:\n%s", got, out)
			}
			if n := len(cfg.AuthInfos); n != 1+len(tt.others) {
				t.Errorf("%d users, want %d:\n%s", n, 1+len(tt.others), out)
			}
			for _, o := range tt.others {
				if cfg.AuthInfos[o] == nil {
					t.Errorf("user %s lost:\n%s", o, out)
				}
			}
			rest := out
			for _, k := range tt.keep {
				i := strings.Index(rest, k+"\n")
				if i < 0 {
					t.Fatalf("line %q lost or out of order:\n%s", k, out)
				}
				rest = rest[i+len(k):]
			}
			// Idempotent: setting the same user again changes nothing.
			again, err := withUser(out, "oidc", u)
			if err != nil || again != out {
				t.Errorf("second run changed the file (err %v):\n%s", err, again)
			}
		})
	}
}

func TestWithUserRefusesFlowStyle(t *testing.T) {
	for _, doc := range []string{
		"users: [{name: admin, user: {token: x}}]\n",
		"users:\n  name: admin\n",
		"users:\r\n- name: admin\r\n  user: {}\r\n",
		"users:\n- {name: oidc, user: {}}\n",
		"users:\n- name: a\n  user: {}\nusers:\n- name: b\n  user: {}\n",
	} {
		if _, err := withUser(doc, "oidc", execUser{}); !errors.Is(err, errKubeconfigLayout) {
			t.Errorf("withUser(%q) error = %v, want errKubeconfigLayout", doc, err)
		}
	}
}
