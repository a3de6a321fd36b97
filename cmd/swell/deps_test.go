package main

import (
	"os/exec"
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
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	t.Logf("swell links %d packages", len(deps))
	for _, dep := range deps {
		if bad := matchForbidden(dep); bad != "" {
			t.Errorf("swell links %s (forbidden: %s); find the importer with: go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./cmd/swell | grep %s", dep, bad, dep)
		}
	}
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
