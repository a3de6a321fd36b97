package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbiddenInProduct lists what the product binary must never link: the test
// environment and everything only tests and the local demo (cmd/swell-dev)
// need. A prefix ending in "/" matches a whole tree; anything else matches one
// package exactly.
var forbiddenInProduct = []string{
	"testing",
	"github.com/swell-autoscaler/swell/internal/testenv",
	"github.com/swell-autoscaler/swell/internal/procnode",
	"github.com/swell-autoscaler/swell/internal/demo",
	"github.com/twmb/franz-go/pkg/kfake",
	"k8s.io/apiserver/",
	"k8s.io/client-go/kubernetes/fake",
	"sigs.k8s.io/controller-runtime/pkg/client/fake",
	"sigs.k8s.io/controller-runtime/pkg/envtest",
}

// TestProductBinaryLinksNoTestCode lists the packages `swell` links (as `go
// build` would, without test files) and fails on any test-only package, so
// the controller image cannot quietly start carrying the test environment
// again. k8s.io/client-go/testing is allowed: client-go's own typed clients
// (k8s.io/client-go/gentype) import it, and it does not link `testing`.
func TestProductBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("swell links %d packages", len(lines))
	importers := map[string][]string{}
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Fields(imports) {
			importers[imp] = append(importers[imp], pkg)
		}
	}
	for _, line := range lines {
		dep, _, _ := strings.Cut(line, ":")
		if bad := matchForbidden(dep); bad != "" && !onlyAllowedImporters(dep, importers[dep]) {
			t.Errorf("swell links %s (forbidden: %s); find the importer with: go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./cmd/swell | grep %s", dep, bad, dep)
		}
	}
}

// allowedImporters names, per forbidden package, the only packages that may
// bring it in: hcloud-go (the Hetzner provider's official SDK) keeps a test
// helper in a non-test file of its main package in every release, so it
// links `testing`; nothing of the test framework runs unless a test calls
// it, and no other package may add to it.
var allowedImporters = map[string][]string{
	"testing": {"github.com/hetznercloud/hcloud-go/v2/hcloud"},
}

// onlyAllowedImporters reports whether every importer of pkg is allowed.
func onlyAllowedImporters(pkg string, importers []string) bool {
	if len(importers) == 0 {
		return false
	}
	for _, imp := range importers {
		if !slices.Contains(allowedImporters[pkg], imp) {
			return false
		}
	}
	return true
}

// matchForbidden returns the forbiddenInProduct entry pkg matches, or "".
func matchForbidden(pkg string) string {
	for _, f := range forbiddenInProduct {
		if strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f) || pkg == f {
			return f
		}
	}
	return ""
}

func TestOnlyAllowedImporters(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		importers []string
		want      bool
	}{
		{"testing", []string{"github.com/hetznercloud/hcloud-go/v2/hcloud"}, true},
		{"testing", []string{"github.com/hetznercloud/hcloud-go/v2/hcloud", "github.com/swell-autoscaler/swell/pkg/x"}, false},
		{"testing", nil, false},
		{"github.com/twmb/franz-go/pkg/kfake", []string{"github.com/hetznercloud/hcloud-go/v2/hcloud"}, false},
	} {
		if got := onlyAllowedImporters(tc.pkg, tc.importers); got != tc.want {
			t.Errorf("onlyAllowedImporters(%q, %v) = %t, want %t", tc.pkg, tc.importers, got, tc.want)
		}
	}
}

func TestMatchForbidden(t *testing.T) {
	for _, tc := range []struct{ pkg, want string }{
		{"testing", "testing"},
		{"testing/iotest", ""},
		{"k8s.io/client-go/testing", ""},
		{"k8s.io/apiserver/pkg/endpoints/openapi", "k8s.io/apiserver/"},
		{"k8s.io/apiserverx", ""},
		{"github.com/twmb/franz-go/pkg/kfake", "github.com/twmb/franz-go/pkg/kfake"},
		{"github.com/twmb/franz-go/pkg/kgo", ""},
		{"github.com/swell-autoscaler/swell/internal/testenv", "github.com/swell-autoscaler/swell/internal/testenv"},
	} {
		if got := matchForbidden(tc.pkg); got != tc.want {
			t.Errorf("matchForbidden(%q) = %q, want %q", tc.pkg, got, tc.want)
		}
	}
}
