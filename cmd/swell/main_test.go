package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionCommandPrintsVersion(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatalf("swell version: %v", err)
	}
	if !strings.HasPrefix(out.String(), "swell dev (go") {
		t.Fatalf("swell version printed %q, want it to start with %q", out.String(), "swell dev (go")
	}
}

func TestUnknownSubcommandFails(t *testing.T) {
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"no-such-command"})
	if err := root.Execute(); err == nil {
		t.Fatal("swell no-such-command succeeded, want an error")
	}
}
