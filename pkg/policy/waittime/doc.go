// Package waittime sizes a worker pool from a wait-time target: "a task
// waits at most W (at percentile p) from enqueue to start".
//
// Ratio policies (pods per queued message, tasks per pod) answer a different
// question from the one users ask, so they either hold idle pods or let the
// wait grow with the load. This package turns the user's target into a
// replica count with queueing theory, from quantities the controller can
// measure: the arrival rate, the mean service time, the concurrency per
// worker, the current backlog, the age of the oldest waiting task and the
// pool's pod start-up time.
//
// The pieces:
//   - [ErlangC], [WaitQuantile] and [ServersFor]: the M/M/c queue. With c
//     servers, arrival rate λ and mean service time S (offered load a = λS),
//     a task waits longer than t with probability C(c, a)·exp(−(c/S − λ)·t),
//     where C is the Erlang C formula.
//   - [Replicas]: the decision. When the target is tighter than a worker's
//     start-up, a standing reserve from Erlang C; when a worker can start
//     within the target ([OnDemand]), no reserve. Plus the servers it takes
//     to start the current backlog within the target (less start-up time
//     and the poll), tightened when the oldest task is already late, with a
//     scale-down band so a pool does not flap and a floor at the workers
//     the sustained arrival rate keeps busy on average, so tasks arriving
//     in lumps find the workers the previous lump used.
//   - [Estimator]: smoothed arrival rate (backlog change plus completions, or
//     an arrivals counter where the broker has one) and service time (busy
//     time per completed task) from cumulative counters; one interval can
//     raise the rate only so far, so a one-off batch stays in the backlog;
//     a sustained rate (the lowest of the last three one-minute windows)
//     sees tasks that arrive in periodic lumps, which that bound misses.
//
// Everything is pure: no clock is read (callers pass `now`), no Kubernetes
// types are imported, and missing or nonsensical inputs yield a Result with
// Known false, which callers treat like a failed measurement — they hold the
// current count. A decision never contains NaN and never scales to zero on
// missing data.
package waittime
