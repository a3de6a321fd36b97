package cpa

import (
	"path/filepath"
	"testing"
)

// TestExampleConfigsLoad: every example under examples/cpa is a valid
// config as shipped (the e2e suite runs them against a cluster).
func TestExampleConfigsLoad(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "examples", "cpa", "*", "config.yaml"))
	if err != nil || len(paths) < 8 {
		t.Fatalf("found %d example configs (%v), want at least 8", len(paths), err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(filepath.Dir(p)), func(t *testing.T) {
			if _, err := Load(p, envOf(nil)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
