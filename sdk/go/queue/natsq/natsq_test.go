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
	"github.com/swell-autoscaler/swell/sdk/go/worker"
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

// TestReturnRedeliversAtOnce: a nak'd task comes back well before AckWait
// (without backoff).
func TestReturnRedeliversAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := newStream(t, "t0")
	_, q := consumer(t, stream, Options{AckWait: time.Minute, Backoff: -1})
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

// TestDefaultHeartbeatHoldsALongTask: with no option set, a task worked
// on for three times AckWait is not redelivered (the default in-progress
// period is a third of the consumer's AckWait).
func TestDefaultHeartbeatHoldsALongTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := newStream(t, "t0")
	_, a := consumer(t, stream, Options{AckWait: 2 * time.Second})
	if a.opts.InProgressEvery <= 0 || a.opts.InProgressEvery >= 2*time.Second {
		t.Fatalf("default InProgressEvery = %v, want a fraction of AckWait", a.opts.InProgressEvery)
	}
	d := queuetest.Take(ctx, t, a)
	_, b := consumer(t, stream, Options{})
	if got := queuetest.AckFor(t, b, 6*time.Second); len(got) != 0 {
		t.Fatalf("another worker took %v while the first worked on t0 for 3 × AckWait", got)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPoisonTaskIsTerminated: a task failing on every delivery is
// terminated at MaxDeliver, after backoffs; the others are done once.
func TestPoisonTaskIsTerminated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bodies := []string{"poison"}
	for i := range 10 {
		bodies = append(bodies, fmt.Sprintf("ok-%d", i))
	}
	stream := newStream(t, bodies...)
	_, q := consumer(t, stream, Options{MaxDeliver: 3, Backoff: 100 * time.Millisecond})
	done, poisonTakes := map[string]int{}, 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		tctx, tcancel := context.WithTimeout(ctx, time.Second)
		d, err := q.Take(tctx)
		tcancel()
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			if len(done) == 10 && q.Counters().Terminated == 1 {
				break
			}
			continue
		}
		if string(d.Body()) == "poison" {
			poisonTakes++
			if err := d.Return(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		done[string(d.Body())]++
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if poisonTakes != 3 {
		t.Fatalf("poison delivered %d times, want MaxDeliver = 3", poisonTakes)
	}
	if n := worker.DeadLetterCounter(q).DeadLettered(); n != 1 {
		t.Errorf("DeadLettered %d, want the 1 terminated task (it feeds the pod's worker-stats report)", n)
	}
	if c := q.Counters(); c.Terminated != 1 || c.Retried != 2 {
		t.Fatalf("Counters = %+v, want 1 terminated, 2 retried", c)
	}
	for i := range 10 {
		if n := done[fmt.Sprintf("ok-%d", i)]; n != 1 {
			t.Errorf("ok-%d done %d times, want 1", i, n)
		}
	}
}

func TestBackoffDoubles(t *testing.T) {
	o := Options{Backoff: time.Second, MaxBackoff: 5 * time.Second}
	for n, want := range map[uint64]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 40: 5 * time.Second} {
		if got := backoff(o, n); got != want {
			t.Errorf("backoff after delivery %d = %v, want %v", n, got, want)
		}
	}
	if got := backoff(Options{Backoff: -1}, 3); got != 0 {
		t.Errorf("negative Backoff gives %v, want 0", got)
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
