package e2e

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	corev1 "k8s.io/api/core/v1"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
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
// (sdk/python/examples/worker.py, Debian's python3) on the process node
// through runSDKScenario, on a Redis list and on a RabbitMQ queue.
func TestPythonSDKWorkersLoseNoTask(t *testing.T) {
	runSDKScenario(t, sdkCase{name: "python-redis", broker: redisSDKBroker, worker: pythonWorker("redis")})
	runSDKScenario(t, sdkCase{name: "python-rabbitmq", broker: rabbitPythonSDKBroker, worker: pythonWorker("rabbitmq")})
}

// pythonWorker runs the Python SDK's sample worker on the broker kind
// (its BROKER env) with 15 ms tasks.
func pythonWorker(kind string) func(*testing.T, sdkBroker, string) ([]string, []corev1.EnvVar) {
	return func(t *testing.T, b sdkBroker, results string) ([]string, []corev1.EnvVar) {
		dir := pythonSDKDir(t)
		return []string{"/usr/bin/python3", filepath.Join(dir, "examples", "worker.py")}, []corev1.EnvVar{
			{Name: "PYTHONPATH", Value: dir},
			{Name: "BROKER", Value: kind},
			{Name: "QUEUE", Value: b.queue},
			{Name: "RESULTS", Value: results},
			{Name: "REDIS_ADDR", Value: env.RedisAddr},
			{Name: "RABBITMQ_URL", Value: env.RabbitMQURL},
			{Name: "TASK_TIME", Value: "0.015"},
		}
	}
}

// rabbitPythonSDKBroker is a durable RabbitMQ queue named for the namespace.
// left counts the messages ready in the queue: without the management
// plugin the broker does not report unacknowledged ones, so a task still
// in a worker's hands is not counted (every body is counted done anyway).
func rabbitPythonSDKBroker(_ context.Context, t *testing.T, ns string) sdkBroker {
	u, err := url.Parse(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(env.RabbitMQURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := ns + "-tasks"
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return sdkBroker{
		name: "rabbitmq",
		scalerConfig: qv1.ScalerConfigSpec{Type: qv1.BrokerRabbitMQ, Config: qv1.ScalerConnection{
			Host: u.Hostname(), Port: u.Port(), Username: "guest", Password: &qv1.Password{Value: "guest"}}},
		queue: queue,
		enqueue: func(ctx context.Context, t *testing.T, bodies []string) {
			for _, body := range bodies {
				if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
					t.Fatal(err)
				}
			}
		},
		left: func(context.Context) (int64, error) {
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return int64(q.Messages), err
		},
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
