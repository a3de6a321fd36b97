package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimulateCommandWritesEveryReport runs the shipped scenarios through the
// command line and checks the table, the CSV and the HTML report.
func TestSimulateCommandWritesEveryReport(t *testing.T) {
	dir := t.TempDir()
	csvPath, htmlPath, frontierPath := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.html"), filepath.Join(dir, "f.csv")
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"simulate", "--scenario", "../../examples/sim/spike.yaml", "--csv", csvPath, "--html", htmlPath, "--frontier-csv", frontierPath})
	if err := root.Execute(); err != nil {
		t.Fatalf("swell simulate: %v", err)
	}
	for _, policy := range []string{"swell", "swell-wait", "keda", "hpa-cpu", "oracle"} {
		if !strings.Contains(out.String(), policy) {
			t.Errorf("terminal table lacks policy %q:\n%s", policy, out.String())
		}
	}
	if !strings.Contains(out.String(), "Pod-hours at equal p95 wait") || !strings.Contains(out.String(), "spike: ") {
		t.Errorf("terminal output lacks the equal-wait table or its verdict:\n%s", out.String())
	}
	frontier, err := os.ReadFile(frontierPath)
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := csv.NewReader(bytes.NewReader(frontier)).ReadAll(); err != nil || len(rows) < 100 {
		t.Fatalf("frontier CSV: %d rows, err %v; want one per swept run", len(rows), err)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	if len(rows) < 5 {
		t.Fatalf("CSV has %d rows, want a header and one per policy", len(rows))
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("each policy's frontier")) {
		t.Fatalf("HTML report lacks the frontier chart")
	}
	if !bytes.Contains(html, []byte("<svg")) || bytes.Contains(html, []byte("<script")) {
		t.Fatalf("HTML report should hold inline SVG plots and no scripts")
	}
}

func TestSimulateCommandRejectsMissingScenario(t *testing.T) {
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"simulate", "--scenario", "does-not-exist.yaml"})
	if err := root.Execute(); err == nil {
		t.Fatal("swell simulate with a missing scenario succeeded, want an error")
	}
}
