package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/nats"
	"github.com/swell-autoscaler/swell/pkg/source/sourcetest"
)

// batchWindow is long enough for every Measure a test starts at once to
// meet in one window on a busy machine.
const batchWindow = 200 * time.Millisecond

// manyConsumers makes stream <name> holding n messages on <name>.tasks and
// n durable consumers c00, c01, … where consumer i starts at message i+1
// and holds inFlight(i, n) of its n-i messages delivered and
// unacknowledged.
func manyConsumers(t *testing.T, name string, n int) jetstream.JetStream {
	t.Helper()
	ctx := context.Background()
	js, _ := setup(t, sharedURL, name)
	publish(t, js, name+".tasks", n)
	for i := range n {
		cons, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
			Durable:       consumerName(i),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Hour,
			FilterSubject: name + ".tasks",
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   uint64(i + 1),
		})
		if err != nil {
			t.Fatalf("create consumer %d: %v", i, err)
		}
		if inFlight(i, n) == 0 {
			continue
		}
		batch, err := cons.Fetch(int(inFlight(i, n)))
		if err != nil {
			t.Fatalf("fetch for consumer %d: %v", i, err)
		}
		for range batch.Messages() {
		}
	}
	return js
}

func consumerName(i int) string { return fmt.Sprintf("c%02d", i) }

// inFlight is how many messages manyConsumers leaves consumer i holding:
// i%3, at most its n-i messages.
func inFlight(i, n int) int64 { return int64(min(i%3, n-i)) }

// wantSample checks consumer i's sample as manyConsumers left it.
func wantSample(i, n int, got source.Sample) error {
	held := inFlight(i, n)
	ready := int64(n-i) - held
	if got.Ready != ready || got.InFlight != held || got.Backlog != ready+held {
		return fmt.Errorf("consumer %d: %+v, want ready %d, in flight %d", i, got, ready, held)
	}
	if (got.OldestAge > 0) != (ready > 0) {
		return fmt.Errorf("consumer %d: OldestAge %v with %d ready", i, got.OldestAge, ready)
	}
	return nil
}

func sources(t *testing.T, c *nats.Client, stream string, n int) []source.Source {
	t.Helper()
	srcs := make([]source.Source, n)
	for i := range srcs {
		srcs[i] = queue(t, c, nats.QueueRef{Stream: stream, Consumer: consumerName(i)})
	}
	return srcs
}

func since(c *nats.Client, before nats.Requests) nats.Requests {
	now := c.Requests()
	return nats.Requests{
		ConsumerInfo: now.ConsumerInfo - before.ConsumerInfo,
		ConsumerList: now.ConsumerList - before.ConsumerList,
		StreamInfo:   now.StreamInfo - before.StreamInfo,
		Total:        now.Total - before.Total,
	}
}

// TestConsumersShareListing: fifty consumers of one stream measured at the
// same moment are read from one listing of the stream's consumers (a few
// requests at most on a busy machine), each sample its own consumer's
// figures and oldest-waiting age; with batching off each costs a consumer
// info request.
func TestConsumersShareListing(t *testing.T) {
	const n = 50
	manyConsumers(t, "MANY", n)
	cases := []struct {
		name   string
		window time.Duration
		check  func(r nats.Requests) error
	}{
		{"batched", batchWindow, func(r nats.Requests) error {
			if r.ConsumerList < 1 || r.ConsumerList+r.ConsumerInfo > 3 || r.StreamInfo != 0 {
				return fmt.Errorf("want 1..3 requests, at least one a listing, no stream lookups")
			}
			return nil
		}},
		{"window negative", -1, func(r nats.Requests) error {
			if r.ConsumerInfo != n || r.ConsumerList != 0 || r.StreamInfo != 0 {
				return fmt.Errorf("want %d consumer info requests, no listing, no stream lookups", n)
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, nats.Config{URL: sharedURL, BatchWindow: tc.window})
			srcs := sources(t, c, "MANY", n)
			// The first round also looks up each source's stream once, to
			// date its oldest waiting message; the second shows a tick's
			// cost.
			for round := 1; round <= 2; round++ {
				before := c.Requests()
				samples, errs := sourcetest.MeasureAll(context.Background(), srcs)
				for i := range samples {
					if errs[i] != nil {
						t.Fatalf("round %d, consumer %d: %v", round, i, errs[i])
					}
					if err := wantSample(i, n, samples[i]); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				r := since(c, before)
				t.Logf("round %d: %d consumers measured at once: %d listing, %d consumer info, %d stream info requests (%d API requests in all, with the oldest-message lookups)",
					round, n, r.ConsumerList, r.ConsumerInfo, r.StreamInfo, r.Total)
				if round == 2 {
					if err := tc.check(r); err != nil {
						t.Fatalf("%+v: %v", r, err)
					}
				}
			}
		})
	}
}

// TestConsumerAloneAsksForItself: a consumer measured alone in its window
// (the default window) asks for its own info rather than listing its
// stream, each on its own schedule.
func TestConsumerAloneAsksForItself(t *testing.T) {
	const n = 3
	manyConsumers(t, "ALONE", n)
	c := newClient(t, nats.Config{URL: sharedURL})
	for i, s := range sources(t, c, "ALONE", n) {
		before := c.Requests()
		got, err := s.Measure(context.Background())
		if err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
		if err := wantSample(i, n, got); err != nil {
			t.Fatal(err)
		}
		if r := since(c, before); r.ConsumerInfo != 1 || r.ConsumerList != 0 {
			t.Fatalf("consumer %d measured alone: %+v, want one consumer info request and no listing", i, r)
		}
	}
}

// TestMissingInBatch: a consumer deleted before a batched measurement
// gives the same error as measuring it alone while the others of its
// window are measured; a missing stream fails each of its consumers.
func TestMissingInBatch(t *testing.T) {
	const n = 6
	js := manyConsumers(t, "GONE", n)
	const deleted = 2
	if err := js.DeleteConsumer(context.Background(), "GONE", consumerName(deleted)); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nats.Config{URL: sharedURL, BatchWindow: batchWindow})
	srcs := sources(t, c, "GONE", n)
	srcs = append(srcs, sources(t, c, "NOSTREAM", 2)...)
	before := c.Requests()
	samples, errs := sourcetest.MeasureAll(context.Background(), srcs)
	t.Logf("%d consumers of two streams measured at once: %+v", len(srcs), since(c, before))
	alone := newClient(t, nats.Config{URL: sharedURL, BatchWindow: -1})
	_, aloneErr := queue(t, alone, nats.QueueRef{Stream: "GONE", Consumer: consumerName(deleted)}).Measure(context.Background())
	for i := range srcs {
		switch {
		case i == deleted:
			if errs[i] == nil || !errors.Is(errs[i], jetstream.ErrConsumerNotFound) || aloneErr == nil || errs[i].Error() != aloneErr.Error() {
				t.Fatalf("deleted consumer: %+v, %v; want the error of measuring it alone: %v", samples[i], errs[i], aloneErr)
			}
		case i >= n:
			name := fmt.Sprintf("%q", consumerName(i-n))
			if errs[i] == nil || !strings.Contains(errs[i].Error(), name) || !errors.Is(errs[i], jetstream.ErrStreamNotFound) {
				t.Fatalf("consumer %s of a missing stream: %+v, %v; want a stream-not-found error naming it", name, samples[i], errs[i])
			}
		case errs[i] != nil:
			t.Fatalf("consumer %d: %v", i, errs[i])
		default:
			if err := wantSample(i, n, samples[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
}
