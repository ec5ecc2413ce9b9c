package main

import (
	"bufio"
	"bytes"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbiddenDeps are import path prefixes that must never be linked into the
// binary. The Kubernetes type machinery (apimachinery's scheme, klog,
// json-iterator, sigs.k8s.io/yaml and structured-merge-diff) initializes
// hundreds of types at start-up: measured, a program that only prints an
// ExecCredential with those types takes about 4 ms per run against 1.5 ms
// with local structs, and kubectl runs latchkey once per command.
// plugin/exec.go keeps local copies of the few ExecCredential fields for this
// reason. Tests may import client-go (go list -deps ignores test files).
var forbiddenDeps = []string{
	"k8s.io/", // apimachinery, client-go, klog, utils, kube-openapi
	"sigs.k8s.io/",
	"github.com/json-iterator/",
	"github.com/modern-go/", // json-iterator's reflection helpers
}

// depPlatforms are the platforms checked, among the release targets: build
// tags can add imports on one platform only.
var depPlatforms = []string{"linux/amd64", "darwin/arm64", "windows/amd64"}

func TestNoKubernetesDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	for _, p := range depPlatforms {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			t.Parallel()
			goos, goarch, _ := strings.Cut(p, "/")
			// One line per package: its import path, then its imports.
			cmd := exec.CommandContext(t.Context(), goTool, "list", "-deps",
				"-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps ./cmd/latchkey: %v\n%s", err, stderr.Bytes())
			}
			imports := parseDeps(out)
			if _, ok := imports["github.com/latchkey/latchkey/plugin"]; !ok {
				t.Fatalf("go list -deps did not list github.com/latchkey/latchkey/plugin:\n%s", out)
			}
			// One error per forbidden prefix, with the chain that pulls in
			// its first package.
			for _, prefix := range forbiddenDeps {
				var found []string
				for _, pkg := range slices.Sorted(maps.Keys(imports)) {
					if strings.HasPrefix(pkg, prefix) {
						found = append(found, pkg)
					}
				}
				if len(found) == 0 {
					continue
				}
				t.Errorf("the %s binary links %d %s* packages (%s) through %s: the Kubernetes type machinery "+
					"multiplies the start-up time of every cached get-token, and kubectl runs latchkey once per "+
					"command; keep to the local types of plugin/exec.go",
					p, len(found), prefix, strings.Join(found[:min(3, len(found))], ", "),
					strings.Join(importChain(imports, "github.com/latchkey/latchkey/cmd/latchkey", found[0]), " -> "))
			}
		})
	}
}

// parseDeps reads go list lines "pkg import1 import2 ..." into a map from
// package to its imports.
func parseDeps(out []byte) map[string][]string {
	m := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

// importChain returns the shortest chain of imports from root to pkg.
func importChain(imports map[string][]string, root, pkg string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == pkg {
			var chain []string
			for p := pkg; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, next := range imports[cur] {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return []string{root, "...", pkg}
}

func TestImportChain(t *testing.T) {
	imports := map[string][]string{
		"main": {"a", "b"},
		"a":    {"c"},
		"b":    {"c", "k8s.io/klog/v2"},
		"c":    {"k8s.io/klog/v2"},
	}
	got := strings.Join(importChain(imports, "main", "k8s.io/klog/v2"), " ")
	if want := "main b k8s.io/klog/v2"; got != want {
		t.Errorf("importChain = %q, want %q", got, want)
	}
}
