package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
	"github.com/swell-autoscaler/swell/pkg/policy/waittime"
)

// Policy names accepted by [Run] and `swell simulate --policies`.
const (
	PolicySwell     = "swell"
	PolicySwellWait = "swell-wait"
	PolicyKeda      = "keda"
	PolicyHPACPU    = "hpa-cpu"
	PolicyOracle    = "oracle"
)

// AllPolicies lists every policy in report order.
var AllPolicies = []string{PolicySwell, PolicySwellWait, PolicyKeda, PolicyHPACPU, PolicyOracle}

// controller is a scaling policy as the engine drives it. Every method
// returns a replica count; the engine applies it.
type controller interface {
	// initial is the replica count at time zero.
	initial() int32
	// period is the interval between ticks; 0 disables ticks.
	period() float64
	tick(r *run) int32
	// onArrival lets push-driven policies react to an enqueue.
	onArrival(r *run) (int32, bool)
	// onCompletion lets the oracle react to a finished task.
	onCompletion(r *run) (int32, bool)
	// scaled reports an applied change, for rate-limit history.
	scaled(r *run, prev, next int32)
	// instantStart makes new pods ready at once (oracle only).
	instantStart() bool
}

// SwellConfig tunes the swell policy: a QWorker exactly as the controller
// runs it (pkg/policy's QWorker decision), with the QWorker's defaults for
// every field left zero.
type SwellConfig struct {
	// Interval is pollingIntervalSeconds (default
	// policy.QWorkerPollingInterval, QScaler's 5 s). The simulated queue
	// is a Redis list without keyspace notifications, the default, so the
	// QWorker decides on its poll only.
	Interval Duration `json:"interval,omitempty"`
	// ScalingFactor is pods per queued message; default 1/concurrency
	// (one worker slot per queued task).
	ScalingFactor float64 `json:"scalingFactor,omitempty"`
	// ActivationThreshold is the backlog at or below which a min-0 pool sleeps.
	ActivationThreshold int64 `json:"activationThreshold,omitempty"`
	// CountInFlight adds tasks in service to the backlog (default false).
	CountInFlight bool `json:"countInFlight,omitempty"`
	// ScaleDownWindow is behavior.scaleDown.stabilizationWindowSeconds
	// (default policy.QWorkerDownWindow of the interval; 0 turns it off).
	ScaleDownWindow *Duration `json:"scaleDownWindow,omitempty"`
}

// SwellWaitConfig tunes the swell-wait policy: a QWorker with
// targetWaitSeconds, sized by pkg/policy/waittime from what its workers
// report (completed tasks and busy time) and its pods' start-up times.
type SwellWaitConfig struct {
	// TargetWait is targetWaitSeconds (default 10s).
	TargetWait Duration `json:"targetWait,omitempty"`
	// Percentile is targetPercentile (default 0.95).
	Percentile float64 `json:"percentile,omitempty"`
	// Interval and ScalingFactor as for swell; scalingFactor only grows
	// the pool until the model's inputs are known.
	Interval      Duration `json:"interval,omitempty"`
	ScalingFactor float64  `json:"scalingFactor,omitempty"`
	// ScaleDownWindow as for swell.
	ScaleDownWindow *Duration `json:"scaleDownWindow,omitempty"`
}

// DefaultSwellWaitTarget is the swell-wait policy's target when unset.
const DefaultSwellWaitTarget = 10 * time.Second

// KedaConfig models a KEDA ScaledObject with a Redis list trigger on
// default settings: the operator polls for activity, an HPA scales on the
// list length per pod (LLEN: queued tasks only, as KEDA's list scaler does).
type KedaConfig struct {
	PollingInterval Duration `json:"pollingInterval,omitempty"` // default 30s
	CooldownPeriod  Duration `json:"cooldownPeriod,omitempty"`  // default 300s
	// SyncPeriod is the HPA's --horizontal-pod-autoscaler-sync-period (15s).
	SyncPeriod Duration `json:"syncPeriod,omitempty"`
	// ListLength is the target queued tasks per pod (KEDA's default 5).
	ListLength int64 `json:"listLength,omitempty"`
	// ActivationListLength: active above it (default 0).
	ActivationListLength int64 `json:"activationListLength,omitempty"`
	// ScaleDownWindow overrides the HPA's 300s scale-down stabilisation.
	ScaleDownWindow *Duration `json:"scaleDownWindow,omitempty"`
}

// HPACPUConfig models a plain HPA on cpu utilisation. A pod's cpu is the
// fraction of its slots busy over the scrape window, against a 1-core request.
type HPACPUConfig struct {
	TargetUtilization int32    `json:"targetUtilization,omitempty"` // default 70
	SyncPeriod        Duration `json:"syncPeriod,omitempty"`        // default 15s
}

func (c *PolicyConfig) validate() error {
	s := &c.Swell
	s.Interval = orDefault(s.Interval, policy.QWorkerPollingInterval)
	if s.ScalingFactor < 0 || math.IsNaN(s.ScalingFactor) || math.IsInf(s.ScalingFactor, 0) {
		return fmt.Errorf("policies.swell.scalingFactor %v: must be a finite number > 0", s.ScalingFactor)
	}
	if s.ActivationThreshold < 0 {
		return fmt.Errorf("policies.swell.activationThreshold %d: must be >= 0", s.ActivationThreshold)
	}
	sw := &c.SwellWait
	sw.Interval = orDefault(sw.Interval, policy.QWorkerPollingInterval)
	sw.TargetWait = orDefault(sw.TargetWait, DefaultSwellWaitTarget)
	if sw.Percentile == 0 {
		sw.Percentile = waittime.DefaultPercentile
	}
	if err := (waittime.Target{Wait: time.Duration(sw.TargetWait), Percentile: sw.Percentile}).Validate(); err != nil {
		return fmt.Errorf("policies.swell-wait: %w", err)
	}
	if sw.ScalingFactor < 0 || math.IsNaN(sw.ScalingFactor) || math.IsInf(sw.ScalingFactor, 0) {
		return fmt.Errorf("policies.swell-wait.scalingFactor %v: must be a finite number > 0", sw.ScalingFactor)
	}
	k := &c.Keda
	k.PollingInterval = orDefault(k.PollingInterval, 30*time.Second)
	k.CooldownPeriod = orDefault(k.CooldownPeriod, 300*time.Second)
	k.SyncPeriod = orDefault(k.SyncPeriod, 15*time.Second)
	if k.ListLength == 0 {
		k.ListLength = 5
	}
	if k.ListLength < 0 || k.ActivationListLength < 0 {
		return fmt.Errorf("policies.keda.listLength %d / activationListLength %d: must be >= 0", k.ListLength, k.ActivationListLength)
	}
	h := &c.HPACPU
	if h.TargetUtilization == 0 {
		h.TargetUtilization = 70
	}
	h.SyncPeriod = orDefault(h.SyncPeriod, 15*time.Second)
	if h.TargetUtilization < 1 {
		return fmt.Errorf("policies.hpa-cpu.targetUtilization %d: must be >= 1", h.TargetUtilization)
	}
	return nil
}

func orDefault(d Duration, def time.Duration) Duration {
	if d <= 0 {
		return Duration(def)
	}
	return d
}

// newController builds the named policy for a scenario.
func newController(name string, sc *Scenario) (controller, error) {
	w := sc.Workers
	switch name {
	case PolicySwell:
		return newSwell(sc.Policies.Swell, w), nil
	case PolicySwellWait:
		return newSwellWait(sc.Policies.SwellWait, w), nil
	case PolicyKeda:
		return newKeda(sc.Policies.Keda, w), nil
	case PolicyHPACPU:
		return newHPACPU(sc.Policies.HPACPU, w), nil
	}
	return nil, fmt.Errorf("policy %q: want one of %v", name, AllPolicies)
}

// ValidPolicy reports whether name is a known policy.
func ValidPolicy(name string) bool { return slices.Contains(AllPolicies, name) }

// basePolicy gives policies no-op defaults for hooks they do not use.
type basePolicy struct{}

func (basePolicy) onArrival(*run) (int32, bool)    { return 0, false }
func (basePolicy) onCompletion(*run) (int32, bool) { return 0, false }
func (basePolicy) scaled(*run, int32, int32)       {}
func (basePolicy) instantStart() bool              { return false }

// swell is a QWorker: every poll it measures the queue and runs the
// QWorker's decision from pkg/policy, the same code the controller runs.
type swell struct {
	basePolicy
	p        policy.QWorkerPolicy
	mem      policy.QWorkerMemory
	interval float64
	decided  bool
	desired  int32
}

// QWorkerPolicy is the QWorker decision policy and polling interval the
// swell policy runs for sc: the QWorker's defaults with sc's min, max and
// scalingFactor (and the few fields the scenario sets).
func QWorkerPolicy(sc *Scenario) (policy.QWorkerPolicy, time.Duration) {
	s := newSwell(sc.Policies.Swell, sc.Workers)
	return s.p, time.Duration(s.interval * float64(time.Second))
}

func newSwell(c SwellConfig, w Workers) *swell {
	factor := c.ScalingFactor
	if factor == 0 {
		factor = 1 / float64(max(w.Concurrency, 1))
	}
	p := policy.QWorkerDefaults(w.MinReplicas, w.MaxReplicas, factor)
	p.Sizing.ActivationThreshold = c.ActivationThreshold
	p.Sizing.CountInFlight = c.CountInFlight
	interval := c.Interval.Seconds()
	if interval <= 0 {
		interval = policy.QWorkerPollingInterval.Seconds()
	}
	p.DownWindow = policy.QWorkerDownWindow(time.Duration(interval * float64(time.Second)))
	if c.ScaleDownWindow != nil {
		p.DownWindow = time.Duration(*c.ScaleDownWindow)
	}
	return &swell{p: p, interval: interval}
}

func (s *swell) initial() int32  { return s.p.Initial(0) }
func (s *swell) period() float64 { return s.interval }

// reading is what the QWorker's source reports: a Redis list's LLEN, and
// the tasks in service where the broker knows them.
func reading(r *run) policy.QueueReading {
	return policy.QueueReading{Ready: int64(r.queued()), InFlight: int64(r.inFlight)}
}

func (s *swell) tick(r *run) int32 {
	return s.settle(r, s.p.Ratio(reading(r)))
}

// settle is the controller's decide after sizing: first-decision start,
// fallback guard and behavior, all pkg/policy's.
func (s *swell) settle(r *run, raw int32) int32 {
	s.start(r)
	s.desired = s.mem.Settle(r.clock(), s.p, s.desired, raw, nil).Desired
	return s.desired
}

func (s *swell) start(r *run) {
	if !s.decided {
		s.desired, s.decided = s.p.Initial(int32(r.active)), true
	}
}

// swellWait is a QWorker with targetWaitSeconds: every poll the wait
// target's sizing from pkg/policy (policy.WaitMemory, what the controller
// calls), then the same settle as swell.
type swellWait struct {
	swell
	target waittime.Target
	mem    policy.WaitMemory
}

// QWorkerWaitPolicy is the QWorker decision policy, wait target and
// polling interval the swell-wait policy runs for sc: a QWorker with
// targetWaitSeconds (and targetPercentile) on the QWorker's defaults.
func QWorkerWaitPolicy(sc *Scenario) (policy.QWorkerPolicy, waittime.Target, time.Duration) {
	s := newSwellWait(sc.Policies.SwellWait, sc.Workers)
	return s.p, s.target, s.poll()
}

func newSwellWait(c SwellWaitConfig, w Workers) *swellWait {
	// A wait target sizes from rates, not from the backlog of the moment,
	// and has its own idle rule, so it gets no default scale-down window
	// (as the QWorker controller does); an explicit one still applies.
	window := c.ScaleDownWindow
	if window == nil {
		window = new(Duration)
	}
	base := newSwell(SwellConfig{Interval: c.Interval, ScalingFactor: c.ScalingFactor, ScaleDownWindow: window}, w)
	return &swellWait{swell: *base, target: waittime.Target{Wait: time.Duration(c.TargetWait), Percentile: c.Percentile}}
}

// poll is the polling interval, the model's PollInterval.
func (s *swell) poll() time.Duration { return time.Duration(s.interval * float64(time.Second)) }

func (s *swellWait) tick(r *run) int32 {
	s.start(r)
	sized := s.mem.Size(r.clock(), s.p, s.target, s.poll(), s.desired, policy.WaitReading{
		Queue: reading(r), Completed: r.completed, BusySeconds: r.busySeconds, HasCompleted: true,
		Concurrency: int32(r.concurrency), Startups: r.newestStartups(policy.WaitStartupSamples), Active: int32(r.active),
	})
	return s.settle(r, sized.Raw)
}

// keda is a KEDA ScaledObject: operator loop plus HPA.
type keda struct {
	basePolicy
	cfg        KedaConfig
	hpa        *policy.HPA
	min        int32
	step       float64
	nextPoll   float64
	nextSync   float64
	lastActive float64
}

func newKeda(c KedaConfig, w Workers) *keda {
	spec := policy.HPASpec{MinReplicas: max(w.MinReplicas, 1), MaxReplicas: w.MaxReplicas}
	if c.ScaleDownWindow != nil {
		d := time.Duration(*c.ScaleDownWindow)
		spec.Behavior.ScaleDown.StabilizationWindow = &d
	}
	return &keda{cfg: c, hpa: policy.NewHPA(spec), min: w.MinReplicas,
		step: math.Min(c.PollingInterval.Seconds(), c.SyncPeriod.Seconds())}
}

func (k *keda) initial() int32  { return k.min }
func (k *keda) period() float64 { return k.step }

const timeEpsilon = 1e-9

func (k *keda) tick(r *run) int32 {
	n := int32(r.active)
	if r.now+timeEpsilon >= k.nextPoll {
		k.nextPoll = r.now + k.cfg.PollingInterval.Seconds()
		n = k.poll(r, n)
	}
	if r.now+timeEpsilon >= k.nextSync && n > 0 && int(n) == r.active {
		k.nextSync = r.now + k.cfg.SyncPeriod.Seconds()
		n = k.sync(r, n)
	}
	return n
}

// poll is the KEDA operator's scale loop: activation from zero and
// scale to zero after the cooldown.
func (k *keda) poll(r *run, n int32) int32 {
	if int64(r.queued()) > k.cfg.ActivationListLength {
		k.lastActive = r.now
		if n == 0 {
			return max(k.min, 1)
		}
		return n
	}
	if n > 0 && k.min == 0 && r.now-k.lastActive >= k.cfg.CooldownPeriod.Seconds() {
		return 0
	}
	return n
}

// sync is one HPA reconcile on the external list-length metric.
func (k *keda) sync(r *run, n int32) int32 {
	metric := policy.MetricInput{Source: policy.ExternalMetric,
		Target:        policy.Target{Type: policy.AverageValueTarget, Milli: k.cfg.ListLength * 1000},
		ExternalMilli: []int64{int64(r.queued()) * 1000}}
	d := k.hpa.Decide(r.clock(), n, policy.PodCounts{Total: n, Ready: int32(r.ready)}, []policy.MetricInput{metric})
	return d.Replicas
}

func (k *keda) scaled(r *run, prev, next int32) {
	if prev > 0 && next > 0 {
		k.hpa.Scaled(r.clock(), prev, next)
	}
}

// metricsWindow is the window metrics-server reports cpu samples over (its
// default 15 s resolution); a sample that does not cover a full window since
// the pod became ready is set aside by the HPA.
const metricsWindow = 15 * time.Second

// hpaCPU is a plain HPA on cpu utilisation.
type hpaCPU struct {
	basePolicy
	hpa    *policy.HPA
	target int32
	sync   float64
	min    int32
	pods   []policy.PodMetric
}

func newHPACPU(c HPACPUConfig, w Workers) *hpaCPU {
	lo := max(w.MinReplicas, 1)
	return &hpaCPU{hpa: policy.NewHPA(policy.HPASpec{MinReplicas: lo, MaxReplicas: w.MaxReplicas}),
		target: c.TargetUtilization, sync: c.SyncPeriod.Seconds(), min: lo}
}

func (h *hpaCPU) initial() int32  { return h.min }
func (h *hpaCPU) period() float64 { return h.sync }

func (h *hpaCPU) tick(r *run) int32 {
	h.pods = h.pods[:0]
	now := r.clock()
	for _, p := range r.pods {
		h.pods = append(h.pods, h.scrape(r, p, now))
	}
	n := int32(r.active)
	metric := policy.MetricInput{Source: policy.ResourceMetric, CPU: true,
		Target: policy.Target{Type: policy.UtilizationTarget, Utilization: h.target}, Pods: h.pods}
	return h.hpa.Decide(now, n, policy.PodCounts{Total: n, Ready: int32(r.ready)}, []policy.MetricInput{metric}).Replicas
}

// scrape is what metrics-server would report for p: busy fraction of its
// slots since the last scrape, as millicores of a 1-core request.
func (h *hpaCPU) scrape(r *run, p *pod, now time.Time) policy.PodMetric {
	m := policy.PodMetric{Phase: policy.PodRunning, RequestMilli: 1000}
	switch p.state {
	case podGone, podDraining:
		m.Deleting = true
		return m
	case podStarting:
		m.Phase = policy.PodPending
		return m
	}
	p.advanceArea(r.now)
	window := r.now - p.lastAreaAt
	if window <= 0 {
		return m // no full sample yet: missing
	}
	m.HasMetric = true
	m.Milli = int64(1000 * (p.busyArea - p.lastArea) / (window * float64(r.concurrency)))
	start := simEpoch.Add(time.Duration(p.created * float64(time.Second)))
	ready := simEpoch.Add(time.Duration(p.readyAt * float64(time.Second)))
	m.Unready = policy.CPUSampleUnready(policy.PodReadiness{Started: start, HasReadyCondition: true, Ready: true,
		ReadyTransition: ready, SampleTime: now, SampleWindow: metricsWindow},
		now, policy.DefaultCPUInitializationPeriod, policy.DefaultInitialReadinessDelay)
	p.lastArea, p.lastAreaAt = p.busyArea, r.now
	return m
}

func (h *hpaCPU) scaled(r *run, prev, next int32) { h.hpa.Scaled(r.clock(), prev, next) }
