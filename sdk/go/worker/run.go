package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Handler processes one task. Returning an error hands the task back to the
// queue (at-least-once). ctx is cancelled on SIGTERM (the caller's context),
// not on retirement: a retiring worker finishes what it holds.
type Handler func(ctx context.Context, body []byte) error

// Options tune Run.
type Options struct {
	// FollowQScalerScaleDown makes the worker also leave when the QWorker's
	// desiredReplicas < currentReplicas, QScaler's rule. Swell's controller
	// chooses exactly which pods retire, so this is off by default.
	FollowQScalerScaleDown bool
	// LeaveWhenOutdated makes the worker leave as soon as the QWorker's
	// status.currentPodSpecHash differs from its POD_SPEC_HASH (a rollout),
	// as QScaler's SDK does. Off by default: Swell's controller marks the
	// pods it retires during a rollout (swell.dev/retire), a few at a time
	// within maxSurge, so the pool keeps its ready capacity; with this on,
	// every old worker leaves after its task while new pods are starting.
	// The env SWELL_LEAVE_WHEN_OUTDATED=true turns it on too.
	LeaveWhenOutdated bool
	// Logger receives the worker's structured logs; nil uses slog.Default.
	Logger *slog.Logger
	// OnTask, when set, is called after each task with its outcome (tests
	// and metrics use it).
	OnTask func(id string, err error)
	// SettleTimeout bounds each Ack or Return; 0 means the queue's own
	// bound when it implements SettleTimeouter (kafkaq on the classic
	// protocol: its rebalance timeout plus a margin), else
	// DefaultSettleTimeout. A task whose ack times out was done but stays
	// on the broker, so it may run again: a bound set here must be above
	// the longest wait the broker can impose on an ack.
	SettleTimeout time.Duration
}

// DefaultSettleTimeout is how long an Ack or Return may take when
// Options.SettleTimeout is 0.
const DefaultSettleTimeout = 10 * time.Second

// Worker runs tasks from a queue until it should leave.
type Worker struct {
	id    Identity
	kube  kubernetes.Interface
	dyn   dynamic.Interface
	queue Queue
	opts  Options
	log   *slog.Logger
	stats *statsReporter
}

// New builds a worker from its identity and a Kubernetes client config (use
// rest.InClusterConfig in a pod).
func New(id Identity, cfg *rest.Config, queue Queue, opts Options) (*Worker, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("qworker", id.QWorker, "pod", id.Pod)
	st := newStatsReporter(kube, id, time.Now)
	st.countDeadLetters(queue)
	return &Worker{id: id, kube: kube, dyn: dyn, queue: queue, opts: opts, log: log, stats: st}, nil
}

// Run takes and handles tasks until the worker should leave, then hands
// back or finishes the task in hand, leaves as QScaler's protocol says (for
// every reason but SIGTERM, where the kubelet is already deleting the pod),
// and returns why it stopped. It returns an error only when it could not
// watch its QWorker or leave cleanly, or, with ReasonQueueClosed, when the
// queue closed for good: then it does not leave, so its container restarts.
func (w *Worker) Run(ctx context.Context, handle Handler) (Reason, error) {
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	lc := newLifecycle(w.id, w.kube, w.dyn, w.opts.FollowQScalerScaleDown)
	lc.leaveOutdated = w.opts.LeaveWhenOutdated || w.id.LeaveWhenOutdated
	if err := lc.start(watchCtx, ctx); err != nil {
		return "", err
	}
	go w.stats.run(watchCtx)
	err := w.loop(ctx, lc, handle)
	w.flushStats(ctx)
	if err != nil {
		w.log.Error("worker stopping: queue closed", "err", err)
		return ReasonQueueClosed, err
	}
	reason := ReasonContextCanceled
	select {
	case <-lc.Stopped():
		reason = lc.Reason()
	default:
	}
	w.log.Info("worker stopping", "reason", reason)
	if reason == ReasonContextCanceled || reason == ReasonPodDeleted {
		return reason, nil
	}
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return reason, leave(leaveCtx, w.kube, w.id)
}

// loop takes one task at a time until ctx ends or the lifecycle stops, or
// returns the error of a queue that closed for good. Before its first Take
// it sets the pod's readiness gate (markReady).
func (w *Worker) loop(ctx context.Context, lc *lifecycle, handle Handler) error {
	w.markReady(ctx, lc)
	for {
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-lc.Stopped():
			return nil
		default:
		}
		takeCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lc.Stopped():
				cancel()
			case <-takeCtx.Done():
			}
		}()
		d, err := w.queue.Take(takeCtx)
		cancel()
		if errors.Is(err, ErrQueueClosed) {
			return err
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				w.log.Error("take task", "err", err)
				sleep(ctx, lc, time.Second)
			}
			continue
		}
		if d == nil {
			continue
		}
		w.process(ctx, d, handle)
	}
}

// markReady sets the pod condition ConditionTakingTasks when the pod's spec
// gates its readiness on it: the queue is connected (New took it built) and
// the worker is about to take its first task. A refused write is logged and
// the worker goes on: it takes tasks, its pod just does not turn Ready.
func (w *Worker) markReady(ctx context.Context, lc *lifecycle) {
	if w.kube == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wrote, err := markTakingTasks(wctx, w.kube, lc.pod.Load(), time.Now())
	switch {
	case err != nil:
		w.log.Error("readiness gate not set", "condition", ConditionTakingTasks, "err", err)
	case wrote:
		w.log.Info("readiness gate set", "condition", ConditionTakingTasks)
	}
}

// settleTimeout bounds one Ack or Return: Options.SettleTimeout, else the
// queue's own bound, else DefaultSettleTimeout.
func (w *Worker) settleTimeout() time.Duration {
	if w.opts.SettleTimeout > 0 {
		return w.opts.SettleTimeout
	}
	if st, ok := w.queue.(SettleTimeouter); ok && st.SettleTimeout() > 0 {
		return st.SettleTimeout()
	}
	return DefaultSettleTimeout
}

// process runs one task and settles it: Ack on success, Return on error or
// when SIGTERM cut the handler short.
func (w *Worker) process(ctx context.Context, d Delivery, handle Handler) {
	start := time.Now()
	err := handle(ctx, d.Body())
	if w.stats != nil {
		w.stats.task(time.Since(start), err != nil)
	}
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.settleTimeout())
	defer cancel()
	if err != nil {
		if rerr := giveBack(settleCtx, d, err); rerr != nil {
			w.log.Error("hand back task", "task", d.ID(), "err", rerr)
		}
	} else if aerr := d.Ack(settleCtx); aerr != nil {
		w.log.Error("ack task", "task", d.ID(), "err", aerr)
		err = aerr
	}
	if w.opts.OnTask != nil {
		w.opts.OnTask(d.ID(), err)
	}
}

// giveBack hands a failed task back, with its error when the delivery
// keeps it (Failer).
func giveBack(ctx context.Context, d Delivery, cause error) error {
	if f, ok := d.(Failer); ok {
		return f.Fail(ctx, cause)
	}
	return d.Return(ctx)
}

// flushStats writes the counters not yet reported, before the worker
// leaves (while its pod still counts in its pool), bounded to a few seconds.
func (w *Worker) flushStats(ctx context.Context) {
	if w.stats == nil {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.stats.write(fctx, true); err != nil {
		w.log.Warn("last task stats not written", "err", err)
	}
}

func sleep(ctx context.Context, lc *lifecycle, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-lc.Stopped():
	case <-time.After(d):
	}
}
