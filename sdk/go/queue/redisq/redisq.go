// Package redisq is an at-least-once Redis list consumer for Swell workers,
// compatible with QScaler's producers (LPUSH onto a list, consumers take from
// the right).
//
// It uses the reliable-queue pattern: BLMOVE moves a task atomically from
// the queue into a processing list that belongs to this pod, and the task
// leaves that list only when acknowledged. If the pod dies mid-task, its
// processing list survives in Redis, and Recover (run by every worker at
// start) moves the tasks of pods that no longer exist back onto the queue.
package redisq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// blockFor bounds each BLMOVE so cancellation is noticed promptly even if
// the client cannot interrupt a blocked command.
const blockFor = time.Second

// Queue consumes one Redis list for one pod.
type Queue struct {
	rdb        *redis.Client
	queue      string
	processing string
}

// New returns a consumer of list queue for pod.
func New(rdb *redis.Client, queue, pod string) *Queue {
	return &Queue{rdb: rdb, queue: queue, processing: ProcessingKey(queue, pod)}
}

// ProcessingKey is the list holding pod's unacknowledged tasks of queue.
func ProcessingKey(queue, pod string) string {
	return queue + ":swell:processing:" + pod
}

// Take moves the oldest task into this pod's processing list.
func (q *Queue) Take(ctx context.Context) (worker.Delivery, error) {
	for ctx.Err() == nil {
		body, err := q.rdb.BLMove(ctx, q.queue, q.processing, "RIGHT", "LEFT", blockFor).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			if errors.Is(err, redis.ErrClosed) {
				return nil, fmt.Errorf("redis BLMOVE %s: %w: %w", q.queue, worker.ErrQueueClosed, err)
			}
			return nil, fmt.Errorf("redis BLMOVE %s: %w", q.queue, err)
		}
		return &delivery{q: q, body: body}, nil
	}
	return nil, nil
}

type delivery struct {
	q    *Queue
	body string
}

func (d *delivery) ID() string   { return taskID(d.body) }
func (d *delivery) Body() []byte { return []byte(d.body) }

// Ack removes the task from the processing list.
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.q.rdb.LRem(ctx, d.q.processing, 1, d.body).Err(); err != nil {
		return fmt.Errorf("redis LREM %s: %w", d.q.processing, err)
	}
	return nil
}

// Return puts the task back at the consuming end of the queue, so it is the
// next one taken, and removes it from the processing list, atomically.
func (d *delivery) Return(ctx context.Context) error {
	_, err := d.q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, d.q.processing, 1, d.body)
		p.RPush(ctx, d.q.queue, d.body)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis hand back to %s: %w", d.q.queue, err)
	}
	return nil
}

// Recover moves every task held by pods that are not alive back onto the
// queue and returns how many it moved. alive reports whether a pod still
// exists; a pod that exists keeps its tasks.
func Recover(ctx context.Context, rdb *redis.Client, queue string, alive func(pod string) (bool, error)) (int, error) {
	prefix := ProcessingKey(queue, "")
	moved := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		pod := strings.TrimPrefix(key, prefix)
		ok, err := alive(pod)
		if err != nil {
			return moved, fmt.Errorf("is pod %s alive: %w", pod, err)
		}
		if ok {
			continue
		}
		n, err := drain(ctx, rdb, key, queue)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	if err := iter.Err(); err != nil {
		return moved, fmt.Errorf("redis SCAN %s*: %w", prefix, err)
	}
	return moved, nil
}

// drain moves all of from onto the consuming end of to, one atomic LMOVE at
// a time, so a crash in between loses nothing.
func drain(ctx context.Context, rdb *redis.Client, from, to string) (int, error) {
	n := 0
	for {
		_, err := rdb.LMove(ctx, from, to, "RIGHT", "RIGHT").Result()
		if errors.Is(err, redis.Nil) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("redis LMOVE %s %s: %w", from, to, err)
		}
		n++
	}
}

// taskID is a short printable prefix of the body, for logs.
func taskID(body string) string {
	if len(body) > 40 {
		return body[:40]
	}
	return body
}
