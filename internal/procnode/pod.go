package procnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/swell-autoscaler/swell/internal/proc"
)

// Restart back-off: doubles from the first to the cap, like kubelet's (which
// starts at 10 s; tests want quicker restarts).
const (
	restartBackoffFirst = 500 * time.Millisecond
	restartBackoffMax   = 10 * time.Second
)

// podRunner runs one pod's containers and reports their state.
type podRunner struct {
	n   *Node
	pod *corev1.Pod

	mu          sync.Mutex
	containers  []*containerState
	terminating bool
	startedAt   metav1.Time

	// credsMu guards kubeconfig, the pod's ServiceAccount kubeconfig once
	// written (serviceaccount.go).
	credsMu    sync.Mutex
	kubeconfig string

	statusMu      sync.Mutex // orders status writes
	terminateOnce sync.Once
	done          chan struct{}
}

// containerState is what the runner knows of one container.
type containerState struct {
	name     string
	image    string
	proc     *proc.Process
	restarts int32
	state    corev1.ContainerState
	// lastCPUNs keeps the reported CPU counter monotonic (see metrics.go).
	lastCPUNs uint64
	// probed: the container has a readiness probe this node runs; ready is
	// its last result for the current process (probe.go).
	probed, ready bool
}

func newPodRunner(n *Node, pod *corev1.Pod) *podRunner {
	r := &podRunner{n: n, pod: pod.DeepCopy(), done: make(chan struct{}), startedAt: metav1.Now()}
	for _, c := range pod.Spec.Containers {
		r.containers = append(r.containers, &containerState{
			name: c.Name, image: c.Image, probed: probeCheck(c.ReadinessProbe, &c) != nil,
			state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		})
	}
	return r
}

// run starts every container, supervises restarts, and writes the final
// status.
func (r *podRunner) run(ctx context.Context) {
	defer close(r.done)
	var wg sync.WaitGroup
	for i := range r.pod.Spec.Containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.superviseContainer(ctx, i)
		}()
	}
	wg.Wait()
	r.writeStatus(ctx)
}

// superviseContainer runs container i until it ends for good: it exited and
// the restart policy says no, or the pod is terminating.
func (r *podRunner) superviseContainer(ctx context.Context, i int) {
	spec := &r.pod.Spec.Containers[i]
	backoff := restartBackoffFirst
	for {
		p, err := r.startContainer(ctx, spec)
		if err != nil {
			r.setState(i, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 128, Reason: "StartError", Message: err.Error(), FinishedAt: metav1.Now(),
			}}, nil)
			r.writeStatus(ctx)
			return
		}
		r.setState(i, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}, p)
		if r.isTerminating() {
			// stopAll may have missed this process while it was starting.
			p.Stop(0)
		}
		r.writeStatus(ctx)
		if r.containers[i].probed {
			go r.probeReadiness(ctx, i, spec, p)
		}
		started := time.Now()
		<-p.Done()
		p.Release()
		code := p.ExitCode()
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		r.setState(i, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Reason: reason, FinishedAt: metav1.Now(),
		}}, nil)
		if !r.shouldRestart(code) || ctx.Err() != nil {
			return
		}
		if time.Since(started) > restartBackoffMax {
			backoff = restartBackoffFirst
		}
		r.writeStatus(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, restartBackoffMax)
		r.mu.Lock()
		r.containers[i].restarts++
		stop := r.terminating
		r.mu.Unlock()
		if stop {
			return
		}
	}
}

func (r *podRunner) shouldRestart(code int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.terminating {
		return false
	}
	switch r.pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

// startContainer resolves the command (from the image when the node holds
// it), env and credentials, and starts the process with output in the
// container's log file.
func (r *podRunner) startContainer(ctx context.Context, c *corev1.Container) (*proc.Process, error) {
	img, fromImage, err := r.n.images.get(c.Image)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, c.Command...), c.Args...)
	var imgEnv [][2]string
	if fromImage {
		argv = imageArgv(c, img.config)
		imgEnv = imageEnv(img.config)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %s has no command and this process node holds no image %q", c.Name, c.Image)
	}
	kubeconfig, err := r.credentials(ctx, c)
	if err != nil {
		return nil, err
	}
	vars, env, err := r.n.containerEnv(ctx, r.pod, c, imgEnv, kubeconfig)
	if err != nil {
		return nil, err
	}
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	dir, err := r.workingDir(c, img)
	if err != nil {
		return nil, err
	}
	path, err := executable(argv[0], vars["PATH"], img)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(r.n.LogPath(r.pod.Namespace, r.pod.Name, c.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	// The child holds its own copy of the descriptor.
	defer func() { _ = logFile.Close() }()
	return proc.Start(proc.Spec{Path: path, Args: argv[1:], Env: env, Dir: dir, Output: logFile})
}

// credentials is the pod's ServiceAccount kubeconfig for a container that
// mounts the token on a node configured to hand tokens out, else "".
func (r *podRunner) credentials(ctx context.Context, c *corev1.Container) (string, error) {
	if r.n.cfg.ServiceAccounts == nil || !mountsServiceAccount(c) {
		return "", nil
	}
	return r.serviceAccountKubeconfig(ctx)
}

// workingDir is the container's workingDir (inside the image root when the
// container runs from an image), else the pod's directory on the node.
func (r *podRunner) workingDir(c *corev1.Container, img *unpackedImage) (string, error) {
	if c.WorkingDir != "" && img != nil {
		return resolveInImage(img, c.WorkingDir)
	}
	if c.WorkingDir != "" {
		return c.WorkingDir, nil
	}
	dir := filepath.Join(r.n.cfg.WorkDir, "pods", string(r.pod.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("pod dir: %w", err)
	}
	return dir, nil
}

// executable resolves argv[0]: inside the image root for an image's
// container, else on the container's PATH when it is a bare name.
func executable(name, pathEnv string, img *unpackedImage) (string, error) {
	if img != nil {
		return resolveInImage(img, name)
	}
	if filepath.Base(name) == name {
		if lp, err := lookPath(name, pathEnv); err == nil {
			return lp, nil
		}
	}
	return name, nil
}

func (r *podRunner) setState(i int, s corev1.ContainerState, p *proc.Process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.containers[i].state = s
	r.containers[i].proc = p
	r.containers[i].ready = false
}

// terminate stops the containers for a graceful deletion (SIGTERM, then
// SIGKILL after grace) and removes the pod object once all have ended.
func (r *podRunner) terminate(ctx context.Context, grace time.Duration) {
	r.terminateOnce.Do(func() {
		r.stopAll(grace)
		<-r.done
		if ctx.Err() == nil {
			r.n.finalDelete(ctx, r.pod)
		}
	})
}

func (r *podRunner) isTerminating() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminating
}

// kill stops the containers without touching the API (node shutdown, or
// the pod object is already gone), and waits for the runner to finish.
func (r *podRunner) kill(grace time.Duration) {
	r.terminateOnce.Do(func() { r.stopAll(grace) })
	<-r.done
}

func (r *podRunner) stopAll(grace time.Duration) {
	r.mu.Lock()
	r.terminating = true
	procs := make([]*proc.Process, 0, len(r.containers))
	for _, c := range r.containers {
		if c.proc != nil {
			procs = append(procs, c.proc)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(grace)
		}()
	}
	wg.Wait()
}

// writeStatus publishes the runner's view as the pod status.
func (r *podRunner) writeStatus(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	status := r.status()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pods := r.n.cfg.Client.CoreV1().Pods(r.pod.Namespace)
		cur, err := pods.Get(ctx, r.pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != r.pod.UID {
			return nil
		}
		status.Conditions = podConditions(cur, status.Conditions)
		cur.Status = status
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "procnode: status of pod %s/%s: %v\n", r.pod.Namespace, r.pod.Name, err)
	}
}

// status derives the pod status from the container states.
func (r *podRunner) status() corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	running, ready, ended, failed := 0, 0, 0, 0
	statuses := make([]corev1.ContainerStatus, 0, len(r.containers))
	for _, c := range r.containers {
		cs := corev1.ContainerStatus{Name: c.name, Image: c.image, ImageID: "process://" + c.image, RestartCount: c.restarts, State: c.state}
		switch {
		case c.state.Running != nil:
			running++
			cs.Ready = !c.probed || c.ready
			if cs.Ready {
				ready++
			}
			started := true
			cs.Started = &started
			cs.ContainerID = fmt.Sprintf("process://%d", c.proc.Pid())
		case c.state.Terminated != nil:
			ended++
			if c.state.Terminated.ExitCode != 0 {
				failed++
			}
		}
		statuses = append(statuses, cs)
	}
	n := len(r.containers)
	phase := corev1.PodPending
	switch {
	case ended == n && failed > 0 && !r.anyRestartPending():
		phase = corev1.PodFailed
	case ended == n && !r.anyRestartPending():
		phase = corev1.PodSucceeded
	case running > 0 || ended > 0:
		phase = corev1.PodRunning
	}
	podReady := corev1.ConditionFalse
	if ready == n && !r.terminating {
		podReady = corev1.ConditionTrue
	}
	now := metav1.Now()
	return corev1.PodStatus{
		Phase:             phase,
		HostIP:            "127.0.0.1",
		HostIPs:           []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP:             r.n.podIP(),
		PodIPs:            []corev1.PodIP{{IP: r.n.podIP()}},
		StartTime:         &r.startedAt,
		ContainerStatuses: statuses,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: podReady, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: podReady, LastTransitionTime: now},
		},
	}
}

// anyRestartPending reports whether an ended container will be restarted;
// callers hold r.mu.
func (r *podRunner) anyRestartPending() bool {
	if r.terminating {
		return false
	}
	for _, c := range r.containers {
		t := c.state.Terminated
		if t == nil {
			continue
		}
		switch r.pod.Spec.RestartPolicy {
		case corev1.RestartPolicyNever:
		case corev1.RestartPolicyOnFailure:
			if t.ExitCode != 0 {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// podConditions is the conditions to write over pod's: next, the node's own,
// with Ready held False while a readiness gate's condition is not True (as
// kubelet does), followed by the conditions others set on the pod (the
// readiness gates' among them), which the node keeps.
func podConditions(pod *corev1.Pod, next []corev1.PodCondition) []corev1.PodCondition {
	next = gateReady(pod, next)
	out := mergeConditions(pod.Status.Conditions, next)
	own := map[corev1.PodConditionType]bool{}
	for _, c := range next {
		own[c.Type] = true
	}
	for _, c := range pod.Status.Conditions {
		if !own[c.Type] {
			out = append(out, c)
		}
	}
	return out
}

// gateReady turns a True Ready condition in next to False, with kubelet's
// reason ReadinessGatesNotReady, while one of pod's readiness gates has no
// True condition on the pod.
func gateReady(pod *corev1.Pod, next []corev1.PodCondition) []corev1.PodCondition {
	msg := gatesNotReady(pod)
	if msg == "" {
		return next
	}
	out := slices.Clone(next)
	for i := range out {
		if out[i].Type == corev1.PodReady && out[i].Status == corev1.ConditionTrue {
			out[i].Status = corev1.ConditionFalse
			out[i].Reason = ReasonReadinessGatesNotReady
			out[i].Message = msg
		}
	}
	return out
}

// ReasonReadinessGatesNotReady is the Ready condition's reason while a
// readiness gate holds it False, kubelet's word.
const ReasonReadinessGatesNotReady = "ReadinessGatesNotReady"

// gatesNotReady says which of pod's readiness gates is not True, or "" when
// all are.
func gatesNotReady(pod *corev1.Pod) string {
	for _, g := range pod.Spec.ReadinessGates {
		c := findCondition(pod.Status.Conditions, g.ConditionType)
		if c == nil {
			return fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
		}
		if c.Status != corev1.ConditionTrue {
			return fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", g.ConditionType, c.Status)
		}
	}
	return ""
}

// readyStale reports whether pod's Ready condition disagrees with its
// readiness gates: someone set or cleared a gate's condition since the node
// last wrote the status.
func readyStale(pod *corev1.Pod) bool {
	if len(pod.Spec.ReadinessGates) == 0 {
		return false
	}
	cr := findCondition(pod.Status.Conditions, corev1.ContainersReady)
	ready := findCondition(pod.Status.Conditions, corev1.PodReady)
	if cr == nil || ready == nil {
		return false
	}
	want := cr.Status == corev1.ConditionTrue && gatesNotReady(pod) == ""
	return want != (ready.Status == corev1.ConditionTrue)
}

func findCondition(cs []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// mergeConditions keeps a condition's transition time when its status did
// not change, so watchers see real transitions only.
func mergeConditions(old, next []corev1.PodCondition) []corev1.PodCondition {
	prev := map[corev1.PodConditionType]corev1.PodCondition{}
	for _, c := range old {
		prev[c.Type] = c
	}
	out := make([]corev1.PodCondition, 0, len(next))
	for _, c := range next {
		if p, ok := prev[c.Type]; ok && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
		out = append(out, c)
	}
	return out
}

// podIP is the address reported as a pod's IP.
func (n *Node) podIP() string {
	if n.cfg.PodIP == "" {
		return "127.0.0.1"
	}
	return n.cfg.PodIP
}
