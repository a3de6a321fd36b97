package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pythonSDKDir is sdk/python, the PYTHONPATH of Python worker processes.
func pythonSDKDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../sdk/python")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPythonKafkaQueue runs the Python SDK's Kafka consumer checks
// (sdk/python/tests/kafkaq_checks.py) against the suite's Kafka-protocol
// broker: commit after processing, seek back on hand-back, the record of a
// SIGKILLed consumer delivered again, the worker loop on top. Debian packages
// no Kafka broker, so the Python suite cannot start one itself.
func TestPythonKafkaQueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := pythonSDKDir(t)
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-m", "unittest", "-v", "tests.kafkaq_checks")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "KAFKA_BOOTSTRAP="+strings.Join(env.KafkaAddrs, ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python kafkaq checks: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "test_") || strings.HasPrefix(line, "Ran ") {
			t.Log(line)
		}
	}
}
