package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// flytectlConfig is what latchkey takes from flytectl's configuration file:
// its admin section (flytectl's admin.Config).
type flytectlConfig struct {
	Endpoint             string
	Insecure             bool
	AuthType             string
	ClientID             string
	ClientSecretLocation string
	ClientSecretEnvVar   string
	Scopes               []string
	Audience             string
}

// errFlyteConfig reports a flytectl configuration file latchkey cannot read.
var errFlyteConfig = errors.New("flytectl configuration")

// maxFlyteConfigBytes caps what latchkey reads of a flytectl configuration.
const maxFlyteConfigBytes = 1 << 20

// flyteConfigPath is where flytectl finds its configuration: $FLYTECTL_CONFIG,
// else ~/.flyte/config.yaml.
func flyteConfigPath(getenv func(string) string) (string, error) {
	if p := getenv("FLYTECTL_CONFIG"); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: find ~/.flyte/config.yaml: %w", errFlyteConfig, err)
	}
	return filepath.Join(home, ".flyte", "config.yaml"), nil
}

// ApplyFlyteConfig completes o from flytectl's configuration file: the file
// o.FlyteConfig names, or, when it is "-" (the flag without a value), the one
// flytectl finds (FLYTECTL_CONFIG, else ~/.flyte/config.yaml); getenv reads
// the environment. It takes admin.endpoint, insecure, and the ClientSecret
// settings (authType ClientSecret, clientId, clientSecretLocation,
// clientSecretEnvVar, scopes, audience); flags already set win. Without
// FlyteConfig it does nothing.
func (o *Options) ApplyFlyteConfig(getenv func(string) string) error {
	if o.FlyteConfig == "" {
		return nil
	}
	path := o.FlyteConfig
	if path == "-" {
		var err error
		if path, err = flyteConfigPath(getenv); err != nil {
			return err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", errFlyteConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFlyteConfigBytes+1))
	if err != nil {
		return fmt.Errorf("%w %s: %w", errFlyteConfig, path, err)
	}
	if len(data) > maxFlyteConfigBytes {
		return fmt.Errorf("%w %s: larger than %d bytes", errFlyteConfig, path, maxFlyteConfigBytes)
	}
	c, err := parseFlytectlConfig(string(data))
	if err != nil {
		return fmt.Errorf("%w %s: %w", errFlyteConfig, path, err)
	}
	if c.Endpoint == "" && o.FlyteEndpoint == "" {
		return fmt.Errorf("%w %s: no admin.endpoint", errFlyteConfig, path)
	}
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&o.FlyteEndpoint, c.Endpoint)
	o.UseAccessToken = true
	o.Insecure = o.Insecure || c.Insecure
	if strings.EqualFold(c.AuthType, "ClientSecret") {
		set(&o.GrantType, GrantClientCredentials)
		set(&o.ClientID, c.ClientID)
		if o.ClientSecret == "" && o.ClientSecretEnv == "" {
			set(&o.ClientSecretFile, c.ClientSecretLocation)
		}
		if o.ClientSecret == "" && o.ClientSecretFile == "" {
			set(&o.ClientSecretEnv, c.ClientSecretEnvVar)
		}
		if len(o.ExtraScopes) == 0 {
			o.ExtraScopes = c.Scopes
		}
		if _, ok := o.AuthParams["audience"]; !ok && c.Audience != "" {
			if o.AuthParams == nil {
				o.AuthParams = map[string]string{}
			}
			o.AuthParams["audience"] = c.Audience
		}
	}
	return nil
}

// parseFlytectlConfig reads the admin section of a flytectl configuration
// (YAML). It takes the subset such files are written in: block mappings;
// plain, single- and double-quoted scalars; comments; block and flow
// sequences of scalars. Other sections, and keys of admin it does not use,
// are skipped unread; a value of a used key that is anything else (an
// anchor, an alias, a block scalar) is an error.
func parseFlytectlConfig(doc string) (*flytectlConfig, error) {
	c := &flytectlConfig{}
	lines := strings.Split(strings.ReplaceAll(doc, "\r\n", "\n"), "\n")
	inAdmin, adminIndent := false, -1
	for i := 0; i < len(lines); i++ {
		line := stripYAMLComment(lines[i])
		if strings.TrimSpace(line) == "" || line == "---" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		text := strings.TrimSpace(line)
		if indent == 0 {
			inAdmin = text == "admin:"
			adminIndent = -1
			continue
		}
		if !inAdmin {
			continue
		}
		if adminIndent < 0 {
			adminIndent = indent
		}
		if indent != adminIndent {
			continue // deeper: a nested section of admin
		}
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want key: value", i+1)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		var dst *string
		switch key {
		case "endpoint":
			dst = &c.Endpoint
		case "authType":
			dst = &c.AuthType
		case "clientId":
			dst = &c.ClientID
		case "clientSecretLocation":
			dst = &c.ClientSecretLocation
		case "clientSecretEnvVar":
			dst = &c.ClientSecretEnvVar
		case "audience":
			dst = &c.Audience
		case "insecure":
			v, err := yamlScalar(value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			switch strings.ToLower(v) {
			case "true", "yes", "on", "y":
				c.Insecure = true
			case "false", "no", "off", "n", "":
				c.Insecure = false
			default:
				return nil, fmt.Errorf("line %d: insecure: want true or false, got %q", i+1, v)
			}
			continue
		case "scopes":
			list, next, err := yamlList(value, lines, i, indent)
			if err != nil {
				return nil, err
			}
			c.Scopes, i = list, next
			continue
		default:
			continue
		}
		v, err := yamlScalar(value)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", i+1, key, err)
		}
		*dst = v
	}
	return c, nil
}

// yamlList reads a sequence of scalars: a flow sequence on the key's line
// ([a, b]) or the block sequence below it. It returns the items and the
// index of the last line read.
func yamlList(value string, lines []string, i, keyIndent int) ([]string, int, error) {
	if value != "" {
		if !strings.HasPrefix(value, "[") || !strings.HasSuffix(value, "]") {
			return nil, i, fmt.Errorf("line %d: want a list of scalars", i+1)
		}
		var out []string
		for _, item := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(value, "["), "]"), ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			v, err := yamlScalar(item)
			if err != nil {
				return nil, i, fmt.Errorf("line %d: %w", i+1, err)
			}
			out = append(out, v)
		}
		return out, i, nil
	}
	var out []string
	for j := i + 1; j < len(lines); j++ {
		line := stripYAMLComment(lines[j])
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		text := strings.TrimSpace(line)
		if indent < keyIndent || !strings.HasPrefix(text, "-") {
			return out, j - 1, nil
		}
		v, err := yamlScalar(strings.TrimSpace(strings.TrimPrefix(text, "-")))
		if err != nil {
			return nil, j, fmt.Errorf("line %d: %w", j+1, err)
		}
		out = append(out, v)
	}
	return out, len(lines) - 1, nil
}

// yamlScalar returns the value of a plain, single- or double-quoted scalar.
func yamlScalar(s string) (string, error) {
	switch {
	case s == "" || s == "~" || s == "null":
		return "", nil
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("malformed double-quoted value %s", s)
		}
		return v, nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return "", fmt.Errorf("malformed single-quoted value %s", s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.ContainsAny(s[:1], "&*|>!{[@`%"):
		return "", fmt.Errorf("unsupported YAML value %q: write it as a plain or quoted scalar, or give it as a flag", s)
	}
	return s, nil
}

// stripYAMLComment removes a comment (# at the start or after a space,
// outside quotes) and trailing spaces from line. A quote opens a quoted
// scalar only where one can start (after a space, ':', '[', ',' or '-'):
// an apostrophe inside a plain value is just a character.
func stripYAMLComment(line string) string {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case (ch == '"' || ch == '\'') && (i == 0 || strings.IndexByte(" \t:[,-", line[i-1]) >= 0):
			quote = ch
		case ch == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return strings.TrimRight(line, " \t")
}
