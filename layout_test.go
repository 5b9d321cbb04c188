package vigil_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/vigilhq/vigil/"

// allowed reports whether package pkg may import our package dep, by the
// rules of docs/architecture.md.
func allowed(pkg, dep string) bool {
	under := func(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	anyOf := func(p string, prefixes ...string) bool {
		for _, x := range prefixes {
			if under(p, x) {
				return true
			}
		}
		return false
	}
	if under(dep, "cmd") {
		return false // only the toolchain builds commands
	}
	switch {
	case under(pkg, "domain"):
		return under(dep, "domain")
	case under(pkg, "migrations"):
		return under(dep, "migrations")
	case under(pkg, "ledger"):
		return anyOf(dep, "domain", "ledger")
	case under(pkg, "projections"):
		return anyOf(dep, "domain", "ledger", "projections")
	case under(pkg, "compliance"):
		return anyOf(dep, "domain", "ledger", "projections", "compliance")
	case under(pkg, "webhooks"):
		// webhooks is core: a subscriber of the ledger like projections,
		// whose runner it reuses; the HTTP client is adapters/webhook.
		return anyOf(dep, "domain", "ledger", "projections", "webhooks")
	case under(pkg, "sso"):
		// sso is the SAML protocol core: it knows the domain's refusal
		// reasons, not the services that decide logins nor any adapter.
		return anyOf(dep, "domain", "sso") && !under(dep, "domain/service")
	case under(pkg, "api"), under(pkg, "relay"):
		return !under(dep, "adapters")
	case under(pkg, "adapters"):
		if !under(dep, "adapters") {
			return true
		}
		// adapters never import each other: only their own package tree.
		return strings.Split(pkg, "/")[1] == strings.Split(dep, "/")[1]
	}
	return true // cmd/vigil and bench wire everything
}

// TestImportRules checks the non-test imports of every package. Tests may
// wire real adapters (a projection test needs a real database).
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		for _, dep := range f[1:] {
			if !strings.HasPrefix(dep, module) {
				continue
			}
			dep = strings.TrimPrefix(dep, module)
			checked++
			if !allowed(pkg, dep) {
				t.Errorf("%s imports %s, which the layout forbids", pkg, dep)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no imports checked: go list returned nothing of the module")
	}
}

func TestRuleTable(t *testing.T) {
	for _, c := range []struct {
		pkg, dep string
		ok       bool
	}{
		{"domain", "ledger", false},
		{"ledger", "domain", true},
		{"ledger", "adapters/postgres", false},
		{"projections", "compliance", false},
		{"api/http", "adapters/postgres", false},
		{"api/http", "ledger", true},
		{"relay", "adapters/watermill", false},
		{"adapters/postgres", "adapters/s3", false},
		{"adapters/postgres/pgtest", "adapters/postgres", true},
		{"adapters/postgres", "ledger", true},
		{"cmd/vigil", "adapters/postgres", true},
		{"ledger", "cmd/vigil", false},
		{"webhooks", "adapters/webhook", false},
		{"webhooks", "projections", true},
	} {
		if got := allowed(c.pkg, c.dep); got != c.ok {
			t.Errorf("allowed(%s, %s) = %v, want %v", c.pkg, c.dep, got, c.ok)
		}
	}
}
