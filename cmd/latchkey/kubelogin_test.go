package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/latchkey/latchkey/plugin/idptest"
)

// TestKubeloginGetTokenFlags takes every flag of int128/kubelogin's
// get-token (v1.36.3: pkg/cmd/get_token.go, authentication.go, tls.go,
// pkce.go, tokencache.go, and the klog flags of its root command) and shows
// that latchkey's get-token accepts it, or refuses it with a reason.
func TestKubeloginGetTokenFlags(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		refused string // a part of the reason; "" means accepted
	}{
		{args: []string{"--oidc-issuer-url=https://issuer.example.com"}},
		{args: []string{"--oidc-client-id=kubernetes"}},
		{args: []string{"--oidc-client-secret=s"}},
		{args: []string{"--oidc-redirect-url=http://localhost:8000"}},
		{args: []string{"--oidc-extra-scope=email,groups", "--oidc-extra-scope=profile"}},
		{args: []string{"--oidc-use-access-token"}},
		{args: []string{"--oidc-request-header=Origin=https://app.example", "--oidc-request-header=a=1,b=2"}},
		{args: []string{"--force-refresh"}},
		{args: []string{"--token-cache-dir=~/.kube/cache/oidc-login"}},
		{args: []string{"--token-cache-storage=keyring"}},
		{args: []string{"--certificate-authority=/etc/ca.pem", "--certificate-authority-data=LS0t"}},
		{args: []string{"--insecure-skip-tls-verify"}},
		{args: []string{"--tls-renegotiation-once"}},
		{args: []string{"--tls-renegotiation-freely"}},
		{args: []string{"--oidc-use-pkce"}},
		{args: []string{"--oidc-pkce-method=auto"}},
		{args: []string{"--oidc-pkce-method=S256"}},
		{args: []string{"--oidc-pkce-method=no"}, refused: "always uses S256"},
		{args: []string{"--grant-type=auto"}},
		{args: []string{"--grant-type=authcode"}},
		{args: []string{"--grant-type=authcode-keyboard"}},
		{args: []string{"--grant-type=device-code"}},
		{args: []string{"--grant-type=client-credentials"}},
		{args: []string{"--grant-type=password"}, refused: "RFC 9700"},
		{args: []string{"--listen-address=127.0.0.1:8000,127.0.0.1:18000"}},
		{args: []string{"--skip-open-browser"}},
		{args: []string{"--browser-command=firefox"}},
		{args: []string{"--authentication-timeout-sec=60"}},
		{args: []string{"--local-server-cert=/c.pem", "--local-server-key=/k.pem"}},
		{args: []string{"--open-url-after-authentication=https://docs.example.com"}},
		{args: []string{"--oidc-auth-request-extra-params=audience=a,prompt=consent"}},
		{args: []string{"--username=alice"}, refused: "RFC 9700"},
		{args: []string{"--password=secret"}, refused: "RFC 9700"},
		{args: []string{"-v=1"}},
		{args: []string{"--v=4"}},
		// klog's flags: accepted and ignored.
		{args: []string{"--add_dir_header", "--alsologtostderr", "--alsologtostderrthreshold=INFO", "--legacy_stderr_threshold_behavior=false",
			"--log_backtrace_at=x.go:1", "--log_dir=/tmp", "--log_file=/tmp/l", "--log_file_max_size=10", "--logtostderr=true", "--one_output",
			"--skip_headers", "--skip_log_headers", "--stderrthreshold=2", "--vmodule=x=2"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("get-token", flag.ContinueOnError)
			getTokenCommand.flags(&cli{}, fs)
			err := parseFlags(fs, tt.args)
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
				t.Errorf("err %v, want a refusal mentioning %q", err, tt.refused)
			}
		})
	}
	// The klog flags are not listed.
	e := &env{t: t}
	if r := e.run("", "get-token", "--help"); strings.Contains(r.stdout, "log_dir") || !strings.Contains(r.stdout, "oidc-request-header") {
		t.Errorf("get-token --help lists klog's flags or lacks --oidc-request-header:\n%s", r.stdout)
	}
}

// TestSetupFromKubelogin: setup --from-kubelogin rewrites the users that
// run kubelogin's get-token to run latchkey with the same flags, keeps
// everything else, and leaves (and names) a user whose flags latchkey
// refuses.
func TestSetupFromKubelogin(t *testing.T) {
	needKubectl(t)
	kc := filepath.Join(t.TempDir(), "config")
	const orig = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example.com
users:
- name: oidc
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubectl
      args: [oidc-login, get-token, --oidc-issuer-url=https://issuer.example.com, --oidc-client-id=kubernetes, "--oidc-extra-scope=email,groups"]
      env: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
      interactiveMode: Never
- name: standalone
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /usr/local/bin/kubelogin
      args: [get-token, --oidc-issuer-url=https://other.example.com, --oidc-client-id=k8s, --v=1]
      interactiveMode: IfAvailable
- name: ropc
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: kubectl
      args: [oidc-login, get-token, --oidc-issuer-url=https://i.example.com, --oidc-client-id=k, --grant-type=password]
- name: aws
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
- name: admin
  user:
    token: static
`
	if err := os.WriteFile(kc, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t}
	r := e.run("", "setup", "--from-kubelogin="+kc)
	if r.code != 1 || !strings.Contains(r.stderr, `user "ropc" left as it is`) || !strings.Contains(r.stderr, "RFC 9700") {
		t.Errorf("exit %d, stderr %q: want 1 and the ropc user named with the reason", r.code, r.stderr)
	}
	for _, want := range []string{`user "oidc"`, "- kubectl oidc-login get-token", "+ " + bin + " get-token --oidc-issuer-url=https://issuer.example.com", `user "standalone"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if b, _ := os.ReadFile(kc + ".bak"); string(b) != orig {
		t.Error("no backup of the original")
	}
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	oidc := cfg.AuthInfos["oidc"].Exec
	if oidc.Command != bin || !slices.Equal(oidc.Args, []string{"get-token", "--oidc-issuer-url=https://issuer.example.com", "--oidc-client-id=kubernetes", "--oidc-extra-scope=email,groups"}) ||
		oidc.APIVersion != "client.authentication.k8s.io/v1beta1" || oidc.InteractiveMode != "Never" || len(oidc.Env) != 1 || oidc.Env[0].Value != "http://proxy:3128" {
		t.Errorf("user oidc = %+v: want latchkey with the same flags and everything else kept", oidc)
	}
	if s := cfg.AuthInfos["standalone"].Exec; s.Command != bin || !slices.Equal(s.Args, []string{"get-token", "--oidc-issuer-url=https://other.example.com", "--oidc-client-id=k8s", "--v=1"}) {
		t.Errorf("user standalone = %+v", s)
	}
	if ropc := cfg.AuthInfos["ropc"].Exec; ropc.Command != "kubectl" {
		t.Errorf("user ropc was rewritten: %+v", ropc)
	}
	if aws := cfg.AuthInfos["aws"].Exec; aws.Command != "aws" || cfg.AuthInfos["admin"].Token != "static" || cfg.Clusters["prod"] == nil {
		t.Error("a user that does not run kubelogin, or the cluster, changed")
	}
	// Again: nothing left to migrate but the refused one.
	if r := e.run("", "setup", "--from-kubelogin="+kc); r.code != 1 || strings.Contains(r.stdout, `user "oidc"`) {
		t.Errorf("second run: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestCleanCommand: clean removes every cached login (entries, lock files)
// without revoking, and leaves other files alone.
func TestCleanCommand(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	if r := e.run("", e.args()...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	other := filepath.Join(e.dir, "notes.txt")
	if err := os.WriteFile(other, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("", "clean", "--token-cache-dir="+e.dir)
	if r.code != 0 || !strings.Contains(r.stderr, "removed 1 cached logins") {
		t.Fatalf("clean: exit %d: %s", r.code, r.stderr)
	}
	names, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	if !slices.Equal(names, []string{other}) {
		t.Errorf("left in the cache directory: %v, want only %s", names, other)
	}
	if got := e.idp.Counts().Revocation; got != 0 {
		t.Errorf("clean sent %d revocations", got)
	}
	if r := e.run("", e.args()...); r.code != 0 || e.browsersOpened() != 2 {
		t.Errorf("after clean: exit %d, %d browsers; want a new login", r.code, e.browsersOpened())
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"get-token", "--oidc-client-secret=s3cret", "--oidc-client-secret", "s3cret2", "--password=pw", "--oidc-client-id=x"})
	if strings.Contains(strings.Join(got, " "), "s3cret") || strings.Contains(strings.Join(got, " "), "pw") || got[len(got)-1] != "--oidc-client-id=x" {
		t.Errorf("redactArgs = %q", got)
	}
}
