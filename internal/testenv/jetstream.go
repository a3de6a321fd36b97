package testenv

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamQueue is the work queue every NATS test here measures or
// consumes: it connects to url (closed when the test ends), creates stream
// on subjects "<subject>.>" and the durable explicit-ack consumer "workers",
// with cc's other settings (AckWait, FilterSubject...), and returns the
// JetStream handle to publish with and the consumer.
func JetStreamQueue(ctx context.Context, t testing.TB, url, stream, subject string, cc jetstream.ConsumerConfig, opts ...nats.Option) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject + ".>"}}); err != nil {
		t.Fatalf("create stream %s: %v", stream, err)
	}
	cc.Durable, cc.AckPolicy = "workers", jetstream.AckExplicitPolicy
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		t.Fatalf("create consumer workers on %s: %v", stream, err)
	}
	return js, cons
}
