package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// TestPythonSDKWorkersLoseNoTask runs real Python-SDK worker processes
// (sdk/python/examples/worker.py on Debian's python3) on the process node
// through runSDKScenario, for each broker the Python SDK consumes.
func TestPythonSDKWorkersLoseNoTask(t *testing.T) {
	for _, b := range []struct {
		name   string
		broker func(context.Context, *testing.T, string) sdkBroker
	}{
		{"redis", redisSDKBroker}, {"rabbitmq", rabbitSDKBroker}, {"kafka", kafkaSDKBroker},
	} {
		runSDKScenario(t, sdkCase{name: "python-" + b.name, broker: b.broker, worker: pythonWorker(b.name)})
	}
}

// pythonWorker runs the Python SDK's sample worker on the broker kind (its
// BROKER env; the broker's address comes with sdkBroker.env) with 15 ms
// tasks.
func pythonWorker(kind string) func(*testing.T, sdkBroker, string) ([]string, []corev1.EnvVar) {
	return func(t *testing.T, b sdkBroker, results string) ([]string, []corev1.EnvVar) {
		dir := pythonSDKDir(t)
		workerEnv := []corev1.EnvVar{
			{Name: "PYTHONPATH", Value: dir},
			{Name: "BROKER", Value: kind},
			{Name: "QUEUE", Value: b.queue},
			{Name: "RESULTS", Value: results},
			{Name: "TASK_TIME", Value: "0.015"},
		}
		if group := b.scalerConfig.Config.ConsumerGroup; group != "" {
			workerEnv = append(workerEnv, corev1.EnvVar{Name: "KAFKA_GROUP", Value: group})
		}
		return []string{"/usr/bin/python3", filepath.Join(dir, "examples", "worker.py")}, workerEnv
	}
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
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-W", "ignore::ImportWarning", "-m", "unittest", "-v", "tests.kafkaq_checks")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "KAFKA_BROKERS="+strings.Join(env.KafkaAddrs, ","))
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
