package harness

import (
	"encoding/json"
)

// ExecKubeconfig returns a kubeconfig (JSON, which kubectl reads as YAML)
// whose user runs command with args through the client.authentication.k8s.io/v1
// exec contract, interactiveMode IfAvailable.
func ExecKubeconfig(server, caFile, command string, args []string, env map[string]string) []byte {
	var envList []map[string]string
	for k, v := range env {
		envList = append(envList, map[string]string{"name": k, "value": v})
	}
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": "e2e",
		"clusters": []any{map[string]any{
			"name":    "e2e",
			"cluster": map[string]any{"server": server, "certificate-authority": caFile},
		}},
		"users": []any{map[string]any{
			"name": "oidc",
			"user": map[string]any{"exec": map[string]any{
				"apiVersion":      "client.authentication.k8s.io/v1",
				"command":         command,
				"args":            args,
				"env":             envList,
				"interactiveMode": "IfAvailable",
				"installHint":     "build latchkey: go build -o bin/latchkey ./cmd/latchkey",
			}},
		}},
		"contexts": []any{map[string]any{
			"name":    "e2e",
			"context": map[string]any{"cluster": "e2e", "user": "oidc", "namespace": "default"},
		}},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// AdminKubeconfig returns a kubeconfig for the system:masters client cert.
func AdminKubeconfig(server string, p *PKI) []byte {
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": "admin",
		"clusters": []any{map[string]any{
			"name":    "e2e",
			"cluster": map[string]any{"server": server, "certificate-authority": p.CACert},
		}},
		"users": []any{map[string]any{
			"name": "admin",
			"user": map[string]any{"client-certificate": p.AdminCert, "client-key": p.AdminKey},
		}},
		"contexts": []any{map[string]any{
			"name":    "admin",
			"context": map[string]any{"cluster": "e2e", "user": "admin"},
		}},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}
