package cache

import (
	"regexp"
	"testing"
)

func baseKey() Key {
	return Key{
		Issuer:         "https://issuer.example.com",
		ClientID:       "kubernetes",
		Scopes:         []string{"email", "groups", "offline_access"},
		ExtraParams:    map[string]string{"audience": "k8s", "connector_id": "ldap", "prompt": "consent"},
		UseAccessToken: false,
	}
}

func TestKeyIDGolden(t *testing.T) {
	// Computed once from the v1 encoding. If this changes, every user's cache
	// is invalidated: change keyFormat's version on purpose, not by accident.
	const want = "33d9ff79a28dfc1ae4613e21dd88e88d5664d353f4c85f7385e94ccc68402cc2"
	if got := baseKey().ID(); got != want {
		t.Errorf("ID() = %s, want %s", got, want)
	}
}

func TestKeyIDFormat(t *testing.T) {
	if id := baseKey().ID(); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) || checkID(id) != nil {
		t.Errorf("ID() = %q, want 64 lowercase hex digits usable as an id", id)
	}
}

func TestKeyIDOrderIndependent(t *testing.T) {
	want := baseKey().ID()
	for name, k := range map[string]Key{
		"scopes reordered": {
			Issuer: "https://issuer.example.com", ClientID: "kubernetes",
			Scopes:      []string{"offline_access", "email", "groups"},
			ExtraParams: map[string]string{"prompt": "consent", "audience": "k8s", "connector_id": "ldap"},
		},
		"duplicate and empty scopes": {
			Issuer: "https://issuer.example.com", ClientID: "kubernetes",
			Scopes:      []string{"groups", "", "email", "groups", "offline_access", "email", ""},
			ExtraParams: map[string]string{"connector_id": "ldap", "prompt": "consent", "audience": "k8s"},
		},
	} {
		if got := k.ID(); got != want {
			t.Errorf("%s: ID() = %s, want %s", name, got, want)
		}
	}
	// Go randomizes map iteration; building the map many times exercises
	// many orders (kubelogin #1638).
	for range 50 {
		m := map[string]string{}
		for k, v := range baseKey().ExtraParams {
			m[k] = v
		}
		k := baseKey()
		k.ExtraParams = m
		if got := k.ID(); got != want {
			t.Fatalf("ID() = %s, want %s", got, want)
		}
	}

	empty := Key{Issuer: "i", ClientID: "c"}.ID()
	for name, k := range map[string]Key{
		"empty slices and map": {Issuer: "i", ClientID: "c", Scopes: []string{}, ExtraParams: map[string]string{}},
		"only empty scopes":    {Issuer: "i", ClientID: "c", Scopes: []string{"", ""}},
	} {
		if got := k.ID(); got != empty {
			t.Errorf("%s: ID() = %s, want %s (as with nil)", name, got, empty)
		}
	}
}

func TestKeyIDDistinct(t *testing.T) {
	mod := func(f func(*Key)) Key {
		k := baseKey()
		k.Scopes = append([]string(nil), k.Scopes...)
		k.ExtraParams = map[string]string{}
		for n, v := range baseKey().ExtraParams {
			k.ExtraParams[n] = v
		}
		f(&k)
		return k
	}
	keys := map[string]Key{
		"base":              baseKey(),
		"issuer":            mod(func(k *Key) { k.Issuer += "/" }),
		"client id":         mod(func(k *Key) { k.ClientID = "kubernetes2" }),
		"scope added":       mod(func(k *Key) { k.Scopes = append(k.Scopes, "profile") }),
		"scope removed":     mod(func(k *Key) { k.Scopes = k.Scopes[1:] }),
		"param value":       mod(func(k *Key) { k.ExtraParams["prompt"] = "login" }),
		"param empty value": mod(func(k *Key) { k.ExtraParams["prompt"] = "" }),
		"param added":       mod(func(k *Key) { k.ExtraParams["acr_values"] = "mfa" }),
		"param removed":     mod(func(k *Key) { delete(k.ExtraParams, "prompt") }),
		"use access token":  mod(func(k *Key) { k.UseAccessToken = true }),
		"client's own":      mod(func(k *Key) { k.Grant = "client-credentials" }),
		"client's own, AT":  mod(func(k *Key) { k.Grant = "client-credentials"; k.UseAccessToken = true }),
		// A scope and a parameter must not be interchangeable.
		"scope as param": mod(func(k *Key) { k.Scopes = k.Scopes[:2]; k.ExtraParams["offline_access"] = "" }),
		// Field boundaries: ("a","bc") vs ("ab","c").
		"issuer/client boundary":  {Issuer: "a", ClientID: "bc"},
		"issuer/client boundary'": {Issuer: "ab", ClientID: "c"},
		"scope boundary":          {Scopes: []string{"a", "bc"}},
		"scope boundary'":         {Scopes: []string{"ab", "c"}},
		"scope joined":            {Scopes: []string{"a bc"}},
		"param boundary":          {ExtraParams: map[string]string{"a": "bc"}},
		"param boundary'":         {ExtraParams: map[string]string{"ab": "c"}},
		"param pairs":             {ExtraParams: map[string]string{"a": "b", "c": "d"}},
		"param pairs'":            {ExtraParams: map[string]string{"a": "c", "b": "d"}},
		"client vs scope":         {ClientID: "x"},
		"client vs scope'":        {Scopes: []string{"x"}},
		// JSON would map both to U+FFFD.
		"invalid utf-8 ff": {Issuer: "\xff"},
		"invalid utf-8 fe": {Issuer: "\xfe"},
		"zero":             {},
	}
	seen := map[string]string{}
	for name, k := range keys {
		id := k.ID()
		if other, ok := seen[id]; ok {
			t.Errorf("keys %q and %q have the same ID %s", name, other, id)
		}
		seen[id] = name
	}
}
