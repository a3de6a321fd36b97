package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/sdk/go/queue/redisq"
	"github.com/swell-autoscaler/swell/sdk/go/worker"
)

// demoWorkerOptions are the flags of `swell demo-worker`.
type demoWorkerOptions struct {
	redisAddr string
	queue     string
	results   string
	taskTime  time.Duration
}

// newDemoWorkerCmd is the sample worker of the demo and the e2e tests: a real
// program built on the Go SDK that takes tasks from a Redis list, "works" for
// a fixed time, and records each finished task in Redis so tests can count
// lost and duplicated tasks.
func newDemoWorkerCmd() *cobra.Command {
	o := demoWorkerOptions{}
	cmd := &cobra.Command{
		Use:   "demo-worker",
		Short: "Sample queue worker (Go SDK, Redis list) used by the demo and the tests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemoWorker(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.redisAddr, "redis", os.Getenv("REDIS_ADDR"), "Redis address (host:port); default $REDIS_ADDR")
	cmd.Flags().StringVar(&o.queue, "queue", "tasks", "Redis list to consume")
	cmd.Flags().StringVar(&o.results, "results", "", "prefix of the Redis keys recording finished tasks (<results>:swell:done, <results>:swell:times); default the queue name")
	cmd.Flags().DurationVar(&o.taskTime, "task-time", time.Second, "how long each task takes")
	return cmd
}

// doneKeys are where the demo worker records finished tasks: a set of task
// bodies and a hash counting how often each was finished.
func doneKeys(results string) (set, times string) {
	return results + ":swell:done", results + ":swell:times"
}

func runDemoWorker(ctx context.Context, o demoWorkerOptions) error {
	if o.redisAddr == "" {
		return fmt.Errorf("--redis (or REDIS_ADDR) is required")
	}
	id, err := worker.IdentityFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg, err := kubeConfig()
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr})
	defer func() { _ = rdb.Close() }()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	alive, err := podAlive(ctx, cfg, id.Namespace)
	if err != nil {
		return err
	}
	// A restarted container (same pod, new process) holds nothing: tasks in
	// its own processing list belong to the process that died.
	moved, err := redisq.Recover(ctx, rdb, o.queue, func(pod string) (bool, error) {
		if pod == id.Pod {
			return false, nil
		}
		return alive(pod)
	})
	if err != nil {
		log.Warn("recover tasks of dead pods", "err", err)
	} else if moved > 0 {
		log.Info("recovered tasks of dead pods", "tasks", moved)
	}
	w, err := worker.New(id, cfg, redisq.New(rdb, o.queue, id.Pod), worker.Options{Logger: log})
	if err != nil {
		return err
	}
	results := o.results
	if results == "" {
		results = o.queue
	}
	set, times := doneKeys(results)
	reason, err := w.Run(ctx, func(ctx context.Context, body []byte) error {
		select {
		case <-ctx.Done():
			return ctx.Err() // SIGTERM mid-task: hand the task back
		case <-time.After(o.taskTime):
		}
		_, err := rdb.TxPipelined(context.WithoutCancel(ctx), func(p redis.Pipeliner) error {
			p.SAdd(ctx, set, body)
			p.HIncrBy(ctx, times, string(body), 1)
			return nil
		})
		return err
	})
	log.Info("worker exits", "reason", reason, "err", err)
	return err
}

// kubeConfig prefers $KUBECONFIG (process nodes, local runs), else the
// in-cluster service account.
func kubeConfig() (*rest.Config, error) {
	if path := os.Getenv("KUBECONFIG"); path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (set KUBECONFIG outside a cluster): %w", err)
	}
	return cfg, nil
}
