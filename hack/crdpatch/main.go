// Command crdpatch bounds arrays in a generated CRD that come from types
// Swell does not own (e.g. autoscaling/v2 HPA behavior policies), so CEL
// rules iterating them fit the apiserver's cost budget. controller-gen can
// only put maxItems on fields declared in this module; `go generate` runs
// this right after it, so the committed YAML is always generator output.
//
// Usage: crdpatch FILE PATH=MAXITEMS... where PATH is a dotted field path
// below the schema root, e.g. spec.scaleConfig.behavior.scaleUp.policies=10.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "crdpatch:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: crdpatch FILE [PATH=MAXITEMS...]")
	}
	file := args[0]
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	versions, _ := dig(crd, "spec", "versions").([]any)
	if len(versions) == 0 {
		return fmt.Errorf("%s: no spec.versions", file)
	}
	for _, a := range args[1:] {
		path, n, ok := strings.Cut(a, "=")
		limit, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil || limit < 1 {
			return fmt.Errorf("%q: want PATH=MAXITEMS with MAXITEMS >= 1", a)
		}
		for _, v := range versions {
			schema, _ := dig(v, "schema", "openAPIV3Schema").(map[string]any)
			if err := setMaxItems(schema, path, limit); err != nil {
				return fmt.Errorf("%s: version %v: %w", file, dig(v, "name"), err)
			}
		}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	// controller-gen starts its files with a document marker; keep it.
	return os.WriteFile(file, append([]byte("---\n"), out...), 0o644)
}

// setMaxItems finds the array schema at the dotted field path and bounds it.
func setMaxItems(schema map[string]any, path string, limit int64) error {
	s := schema
	for _, f := range strings.Split(path, ".") {
		next, ok := dig(s, "properties", f).(map[string]any)
		if !ok {
			return fmt.Errorf("%s: no field %q", path, f)
		}
		s = next
	}
	if s["type"] != "array" {
		return fmt.Errorf("%s is a %v, not an array", path, s["type"])
	}
	s["maxItems"] = limit
	return nil
}

// dig walks nested maps; nil when a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
