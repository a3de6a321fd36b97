package natsq

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/sdk/go/worker/queuetest"
)

// shared is the NATS server every test of the package uses.
var shared *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunPackage(m, testenv.Options{NATS: true}, 2*time.Minute, func(e *testenv.Env) { shared = e }))
}

// connect opens a JetStream client, closed when the test ends.
func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(shared.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// newStream creates a stream named for the test holding bodies and
// returns its name.
func newStream(t *testing.T, bodies ...string) string {
	t.Helper()
	ctx := context.Background()
	_, js := connect(t)
	name := strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if _, err := js.Publish(ctx, name+".task", []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func consumer(t *testing.T, stream string, o Options) (*nats.Conn, *Queue) {
	t.Helper()
	nc, js := connect(t)
	o.PollWait = 300 * time.Millisecond
	q, err := New(context.Background(), js, stream, "workers", o)
	if err != nil {
		t.Fatal(err)
	}
	return nc, q
}

// TestUnackedTaskOfADeadWorkerComesBack: one worker acks t0 and dies
// holding t1; after AckWait another worker gets t1 (and t2), never t0.
func TestUnackedTaskOfADeadWorkerComesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := newStream(t, "t0", "t1", "t2")
	ncA, a := consumer(t, stream, Options{AckWait: time.Second})
	if err := queuetest.Take(ctx, t, a).Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if got := string(queuetest.Take(ctx, t, a).Body()); got != "t1" {
		t.Fatalf("second task = %q, want t1", got)
	}
	ncA.Close() // dies without acking t1

	_, b := consumer(t, stream, Options{})
	if got := queuetest.AckFor(t, b, 4*time.Second); fmt.Sprint(got) != "[t1 t2]" {
		t.Fatalf("the other worker took %v, want [t1 t2]: t1 again, t0 never", got)
	}
}

// TestReturnRedeliversAtOnce: a nak'd task comes back well before AckWait.
func TestReturnRedeliversAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := newStream(t, "t0")
	_, q := consumer(t, stream, Options{AckWait: time.Minute})
	if err := queuetest.Take(ctx, t, q).Return(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queuetest.AckFor(t, q, 3*time.Second); fmt.Sprint(got) != "[t0]" {
		t.Fatalf("after a return took %v, want [t0]", got)
	}
}

// TestInProgressHoldsALongTask: a task worked on for longer than AckWait
// is not redelivered while its worker reports progress.
func TestInProgressHoldsALongTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := newStream(t, "t0")
	_, a := consumer(t, stream, Options{AckWait: time.Second, InProgressEvery: 250 * time.Millisecond})
	d := queuetest.Take(ctx, t, a)
	_, b := consumer(t, stream, Options{})
	if got := queuetest.AckFor(t, b, 3*time.Second); len(got) != 0 {
		t.Fatalf("another worker took %v while the first worked on t0 for 3 × AckWait", got)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queuetest.AckFor(t, b, 2*time.Second); len(got) != 0 {
		t.Fatalf("took %v after t0 was acked", got)
	}
}

// TestTakeAfterTheConnectionClosed: Take reports an error instead of
// returning nothing forever.
func TestTakeAfterTheConnectionClosed(t *testing.T) {
	nc, q := consumer(t, newStream(t), Options{})
	queuetest.ClosedTakeFails(t, q, nc.Close)
}

// TestTakeReturnsNilWhenCancelled: an empty stream and a cancelled context
// give (nil, nil), as worker.Queue asks.
func TestTakeReturnsNilWhenCancelled(t *testing.T) {
	_, q := consumer(t, newStream(t), Options{})
	queuetest.EmptyTakeGivesNil(t, q, 200*time.Millisecond)
}
