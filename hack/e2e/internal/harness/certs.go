package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PKI is a throwaway CA with the certificates and keys the suite needs, all
// made with openssl in Dir.
type PKI struct {
	Dir string
	// CA signs everything below; clients trust it for Dex and kube-apiserver.
	CACert, CAKey string
	// Serving is for 127.0.0.1, ::1 and localhost (Dex's proxy, kube-apiserver).
	ServingCert, ServingKey string
	// Admin is a client certificate in group system:masters.
	AdminCert, AdminKey string
	// SAKey and SAPub sign and verify service account tokens.
	SAKey, SAPub string
}

// NewPKI makes the CA and certificates in dir with openssl.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{
		Dir:         dir,
		CACert:      filepath.Join(dir, "ca.crt"),
		CAKey:       filepath.Join(dir, "ca.key"),
		ServingCert: filepath.Join(dir, "serving.crt"),
		ServingKey:  filepath.Join(dir, "serving.key"),
		AdminCert:   filepath.Join(dir, "admin.crt"),
		AdminKey:    filepath.Join(dir, "admin.key"),
		SAKey:       filepath.Join(dir, "sa.key"),
		SAPub:       filepath.Join(dir, "sa.pub"),
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	steps := [][]string{
		append(append([]string{"req", "-x509"}, ec...),
			"-keyout", p.CAKey, "-out", p.CACert, "-days", "2", "-subj", "/CN=latchkey e2e throwaway CA",
			"-addext", "basicConstraints=critical,CA:TRUE",
			"-addext", "keyUsage=critical,keyCertSign,cRLSign"),
		append(append([]string{"req"}, ec...),
			"-keyout", p.ServingKey, "-out", filepath.Join(dir, "serving.csr"), "-subj", "/CN=127.0.0.1"),
		{"x509", "-req", "-in", filepath.Join(dir, "serving.csr"), "-CA", p.CACert, "-CAkey", p.CAKey,
			"-CAcreateserial", "-out", p.ServingCert, "-days", "2", "-extfile", "EXT:serving"},
		append(append([]string{"req"}, ec...),
			"-keyout", p.AdminKey, "-out", filepath.Join(dir, "admin.csr"), "-subj", "/O=system:masters/CN=e2e-admin"),
		{"x509", "-req", "-in", filepath.Join(dir, "admin.csr"), "-CA", p.CACert, "-CAkey", p.CAKey,
			"-CAcreateserial", "-out", p.AdminCert, "-days", "2", "-extfile", "EXT:client"},
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p.SAKey},
		{"pkey", "-in", p.SAKey, "-pubout", "-out", p.SAPub},
	}
	exts := map[string]string{
		"EXT:serving": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
			"extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n",
		"EXT:client": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
			"extendedKeyUsage=clientAuth\n",
	}
	for name, body := range exts {
		f := filepath.Join(dir, strings.TrimPrefix(name, "EXT:")+".ext")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			return nil, err
		}
		exts[name] = f
	}
	for _, args := range steps {
		for i, a := range args {
			if f, ok := exts[a]; ok {
				args[i] = f
			}
		}
		cmd := exec.Command("openssl", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("openssl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return p, nil
}
