package rabbitmq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/sourcetest"
)

// TestQueuesShareManagementRequests: twelve queues of one vhost measured at
// the same moment are read with one management request listing the vhost
// (a few at most on a busy machine), each sample its own queue's ready and
// unacknowledged counts; measured each alone they cost a request per
// queue.
func TestQueuesShareManagementRequests(t *testing.T) {
	const n = 12
	srcs := map[bool][]source.Source{}
	clients := map[bool]interface{ ManagementRequests() int64 }{}
	for _, batched := range []bool{true, false} {
		cfg := configFor(t, shared, true)
		cfg.BatchWindow = 200 * time.Millisecond
		if !batched {
			cfg.BatchWindow = -1
		}
		c := newClient(t, cfg)
		clients[batched] = c
		for i := range n {
			s, err := c.Queue(fmt.Sprintf("shared-mgmt-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			srcs[batched] = append(srcs[batched], s)
		}
	}
	for i := range n {
		queue := fmt.Sprintf("shared-mgmt-%d", i)
		ch := producer(t, queue)
		publish(t, ch, queue, 3)
		get(t, ch, queue, i%3) // unacknowledged while ch stays open
	}
	matches := func(samples []source.Sample, errs []error) error {
		for i, s := range samples {
			if errs[i] != nil {
				return fmt.Errorf("queue %d: %w", i, errs[i])
			}
			if want := int64(i % 3); s.InFlight != want || s.Ready != 3-want || s.Backlog != 3 {
				return fmt.Errorf("queue %d: %+v, want ready %d, in flight %d", i, s, 3-want, want)
			}
		}
		return nil
	}
	// The unacknowledged counts follow RabbitMQ's statistics collection.
	deadline := time.Now().Add(45 * time.Second)
	for {
		before := clients[true].ManagementRequests()
		err := matches(sourcetest.MeasureAll(context.Background(), srcs[true]))
		requests := clients[true].ManagementRequests() - before
		if err == nil {
			t.Logf("%d queues measured at once: %d management request(s)", n, requests)
			if requests < 1 || requests > 3 {
				t.Fatalf("%d queues measured at once made %d management requests, want 1..3", n, requests)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batched: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := clients[false].ManagementRequests()
	if err := matches(sourcetest.MeasureAll(context.Background(), srcs[false])); err != nil {
		t.Fatalf("alone: %v", err)
	}
	if got := clients[false].ManagementRequests() - before; got != n {
		t.Fatalf("%d queues measured alone made %d management requests, want %d", n, got, n)
	}
}
