package testenv

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitChannel gives a test its own way into the RabbitMQ at url (an
// Env's RabbitMQURL), beside the client under test: it dials a connection
// and opens a channel on it, for publishing, getting and inspecting queues.
// The connection, and with it the channel, is closed when the test ends.
// The connection is returned too, for tests that close it early to see
// what a client that dies leaves behind.
func RabbitChannel(t testing.TB, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open a RabbitMQ channel: %v", err)
	}
	return conn, ch
}

// RabbitQueue is RabbitChannel with queue declared (neither exclusive nor
// auto-deleted), the test playing the producer: producers declare the queue,
// while the SDK consumer and the scaler only use one that exists. durable
// says whether the queue outlives a broker restart. Declaring an existing
// queue again with the same settings is a no-op, so tests may share one.
func RabbitQueue(t testing.TB, url, queue string, durable bool) *amqp.Channel {
	t.Helper()
	_, ch := RabbitChannel(t, url)
	if _, err := ch.QueueDeclare(queue, durable, false, false, false, nil); err != nil {
		t.Fatalf("declare RabbitMQ queue %s: %v", queue, err)
	}
	return ch
}
