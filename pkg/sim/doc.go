// Package sim is Swell's discrete-event autoscaling simulator. It replays a
// workload (generated or from a CSV trace) through a model of queue workers
// (service times, concurrency per pod, pod start latency, optional node
// provisioning) under several scaling policies, all of which decide through
// the same pkg/policy code the controllers run, and reports what each policy
// cost (pod-seconds) and what users felt (task wait percentiles).
//
// Simulated time is a float64 count of seconds from the start of a run; it
// advances from event to event, so hours of traffic take milliseconds. Every
// random draw comes from PCG sources seeded by the scenario, and every
// policy sees the very same task list, so a run is reproducible bit for bit.
package sim
