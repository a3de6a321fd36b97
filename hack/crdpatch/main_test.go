package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const crd = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  group: example.com
  names:
    kind: Thing
    plural: things
  scope: Namespaced
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          spec:
            properties:
              items:
                items:
                  type: string
                type: array
              name:
                type: string
            type: object
        type: object
    served: true
    storage: true
`

func write(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "crd.yaml")
	if err := os.WriteFile(f, []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRunBoundsArrayAndKeepsTheRest(t *testing.T) {
	f := write(t)
	if err := run([]string{f, "spec.items=7"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	want := strings.Replace(crd, "                type: array\n", "                maxItems: 7\n                type: array\n", 1)
	if string(b) != want {
		t.Fatalf("patched CRD:\n%s\nwant:\n%s", b, want)
	}
}

func TestRunWithoutPatchesRoundTrips(t *testing.T) {
	f := write(t)
	if err := run([]string{f}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != crd {
		t.Fatalf("round trip changed the file:\n%s", b)
	}
}

func TestRunRejectsBadPaths(t *testing.T) {
	for arg, want := range map[string]string{
		"spec.missing=3": `no field "missing"`,
		"spec.name=3":    "not an array",
		"spec.items=0":   "MAXITEMS >= 1",
		"spec.items":     "PATH=MAXITEMS",
	} {
		if err := run([]string{write(t), arg}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", arg, err, want)
		}
	}
}
