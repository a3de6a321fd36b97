package nodepoolscaler

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider"
	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/guard"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// outageCloud stands in for a cloud's node-pool API: it answers its size,
// grows and deletes (removing the Node, as the cloud's machine going
// does) until it is switched down, when every call fails as a cloud
// answering 503 does. It records every change it made.
type outageCloud struct {
	client kubernetes.Interface

	mu     sync.Mutex
	down   bool
	size   int
	writes []string
}

var errCloudDown = errors.New("GET /v2/kubernetes/clusters/c-1/node_pools/p-1: 503 service unavailable")

func (c *outageCloud) setDown(down bool) { c.mu.Lock(); c.down = down; c.mu.Unlock() }

func (c *outageCloud) changes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

func (c *outageCloud) Size(context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return 0, errCloudDown
	}
	return c.size, nil
}

func (c *outageCloud) Resize(_ context.Context, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errCloudDown
	}
	c.writes = append(c.writes, fmt.Sprintf("resize %d", n))
	c.size = n
	return nil
}

func (c *outageCloud) Delete(ctx context.Context, nodes []*corev1.Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errCloudDown
	}
	for _, n := range nodes {
		c.writes = append(c.writes, "delete "+n.Name)
		c.size--
		if err := c.client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete node %s: %w", n.Name, err)
		}
	}
	return nil
}

func (c *outageCloud) Template() policy.Resources { return policy.Resources{"cpu": 4000, "pods": 110} }

// outageHarness is the reconciler as Setup wires it (shared cache, runner
// builder, health wrapper, tee recorder) over fake API clients, with the
// outageCloud behind the guard NewProvider puts around every cloud.
type outageHarness struct {
	t      *testing.T
	ctx    context.Context
	r      *Reconciler
	cs     *k8sfake.Clientset
	cloud  *outageCloud
	clock  *clocktesting.FakeClock
	events *record.FakeRecorder
	key    types.NamespacedName
	seen   []string
}

func newOutageHarness(t *testing.T, nodes ...string) *outageHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := swellv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	nps := &swellv1.NodePoolScaler{
		ObjectMeta: metav1.ObjectMeta{Name: "games", Namespace: "ns", Generation: 1},
		Spec: swellv1.NodePoolScalerSpec{
			CloudProvider: "digitalocean", CloudProviderTokenSecretRef: &swellv1.SecretKeyRef{Name: "do", Key: "token"},
			ClusterName: "games", NodePoolName: "servers", NodeSelector: "pool=games",
			ServerPodLabelName: "app", ServerPodLabelValue: "game",
			ServerCPUResourceRequest: ptr.To(intstr.FromInt32(1000)), BufferSlotSize: ptr.To(intstr.FromInt32(2)),
			MinimumNodePoolSize: ptr.To[int32](1), MaximumNodePoolSize: ptr.To[int32](3),
			EmptyNodeExpirationSec: ptr.To(60.0), ResizeCooldownSec: ptr.To(0.0),
		},
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "do", Namespace: "ns"}, Data: map[string][]byte{"token": []byte("t")}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(nps, secret).WithStatusSubresource(&swellv1.NodePoolScaler{}).Build()

	cs := k8sfake.NewClientset()
	for _, name := range nodes {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "games"}},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	shared, err := nodepool.NewCache(cs, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	cloud := &outageCloud{client: cs, size: len(nodes)}
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	events := record.NewFakeRecorder(10000)
	wake := make(chan event.GenericEvent, 64)
	go func() { // the controller's queue: triggers are not needed here, passes are driven by the test
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	}()
	r := &Reconciler{
		Client: c, APIReader: c, Recorder: events, Clock: clock,
		builder: &runnerBuilder{
			baseCtx: ctx, clientset: cs, recorder: events, clock: clock, wake: wake, log: logr.Discard(), cache: shared,
			newProvider: func(context.Context, nodepool.Config, kubernetes.Interface) (provider.Provider, error) {
				return guard.Wrap(cloud), nil
			},
		},
		runners: newRunners(),
	}
	key := types.NamespacedName{Namespace: "ns", Name: "games"}
	t.Cleanup(func() { r.runners.remove(key) })
	return &outageHarness{t: t, ctx: ctx, r: r, cs: cs, cloud: cloud, clock: clock, events: events, key: key}
}

// reconcile runs one reconcile and returns the object's status after it.
func (h *outageHarness) reconcile() swellv1.NodePoolScalerStatus {
	h.t.Helper()
	if _, err := h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: h.key}); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	var nps swellv1.NodePoolScaler
	if err := h.r.Client.Get(h.ctx, h.key, &nps); err != nil {
		h.t.Fatal(err)
	}
	for len(h.events.Events) > 0 {
		h.seen = append(h.seen, <-h.events.Events)
	}
	return nps.Status
}

// until reconciles, stepping the clock by step before each, until ok holds.
func (h *outageHarness) until(what string, step time.Duration, ok func(swellv1.NodePoolScalerStatus) bool) swellv1.NodePoolScalerStatus {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.clock.Step(step)
		st := h.reconcile()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: last status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *outageHarness) addPendingServers(n int) {
	h.t.Helper()
	for i := range n {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gs-%d", i), Namespace: "ns", Labels: map[string]string{"app": "game"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "gs", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		if _, err := h.cs.CoreV1().Pods("ns").Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *outageHarness) nodeNames() []string {
	h.t.Helper()
	list, err := h.cs.CoreV1().Nodes().List(h.ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	return out
}

func condition(st swellv1.NodePoolScalerStatus, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(st.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func passFailed(st swellv1.NodePoolScalerStatus) bool {
	c := condition(st, swellv1.ConditionReady)
	return c.Status == metav1.ConditionFalse && c.Reason == ReasonPassFailed
}

func providerAnswered(st swellv1.NodePoolScalerStatus) bool {
	c := condition(st, swellv1.ConditionProviderHealthy)
	return c.Status == metav1.ConditionTrue && c.Reason == ReasonProviderAnswered
}

// TestProviderOutageMidRun: a NodePoolScaler runs with its cloud up, then
// the cloud goes down while the pool wants a change (an expired empty node
// to delete, pending servers to grow for). Every reconcile during the
// outage reports ProviderHealthy=False (ProviderError, with the cloud's
// error); the passes that would change the pool fail with Ready=False
// PassFailed and a PassFailed warning event naming the hold, and the cloud
// is asked to change nothing. When the cloud is back, ProviderHealthy
// returns to True and exactly the held change is made.
func TestProviderOutageMidRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []string
		// beforeOutage runs reconciles with the cloud up and returns the
		// change the pool will want; duringOutage makes the pool want it.
		beforeOutage func(h *outageHarness) string
		duringOutage func(h *outageHarness)
		// step is how far the clock moves before each reconcile in the
		// outage: past the scaler's 30 s reuse of the provider's count, so
		// every pass asks the cloud, and past the expiry and the drain
		// validation delay.
		step time.Duration
	}{
		{
			name:  "expired empty node is not deleted",
			nodes: []string{"n-a", "n-b"},
			beforeOutage: func(h *outageHarness) string {
				st := h.until("surplus node cordoned", 0, func(st swellv1.NodePoolScalerStatus) bool { return st.NodesCordoned == 1 })
				if !providerAnswered(st) {
					h.t.Fatalf("ProviderHealthy before the outage: %+v", condition(st, swellv1.ConditionProviderHealthy))
				}
				return "delete " + strings.TrimPrefix(st.LastAction, "cordoned ")
			},
			duringOutage: func(*outageHarness) {},
			step:         time.Minute,
		},
		{
			name:  "pending servers do not grow the pool",
			nodes: []string{"n-a"},
			beforeOutage: func(h *outageHarness) string {
				st := h.until("first pass", 0, func(st swellv1.NodePoolScalerStatus) bool { return st.PoolSize == 1 && providerAnswered(st) })
				if st.LastAction != "" {
					h.t.Fatalf("a pool of one node with 4 free slots against 2 wanted acted: %q", st.LastAction)
				}
				return "resize 2"
			},
			// 4 servers waiting: 2 + 4 slots wanted against 4 free.
			duringOutage: func(h *outageHarness) { h.addPendingServers(4) },
			step:         31 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOutageHarness(t, tc.nodes...)
			want := tc.beforeOutage(h)
			if w := h.cloud.changes(); len(w) != 0 {
				t.Fatalf("the cloud was changed before the outage: %q", w)
			}

			h.cloud.setDown(true)
			tc.duringOutage(h)
			failed := 0
			h.until("three passes failed on the outage", tc.step, func(st swellv1.NodePoolScalerStatus) bool {
				if c := condition(st, swellv1.ConditionProviderHealthy); c.Status != metav1.ConditionFalse || c.Reason != ReasonProviderError || !strings.Contains(c.Message, "503") {
					t.Fatalf("ProviderHealthy during the outage = %s %s %q, want False %s naming the 503", c.Status, c.Reason, c.Message, ReasonProviderError)
				}
				if passFailed(st) {
					failed++
					if msg := condition(st, swellv1.ConditionReady).Message; !strings.Contains(msg, "holding the pool") {
						t.Fatalf("Ready message during the outage %q does not say the pool is held", msg)
					}
				}
				return failed >= 3
			})
			if w := h.cloud.changes(); len(w) != 0 {
				t.Fatalf("during the outage the cloud was asked to %q", w)
			}
			if got := h.nodeNames(); !reflect.DeepEqual(got, tc.nodes) {
				t.Fatalf("nodes after the outage %v, want %v", got, tc.nodes)
			}
			warned := 0
			for _, e := range h.seen {
				if strings.HasPrefix(e, corev1.EventTypeWarning+" "+ReasonPassFailed+" ") && strings.Contains(e, "holding the pool") {
					warned++
				}
			}
			if warned < failed {
				t.Fatalf("%d %s warning events naming the hold for %d failed passes: %q", warned, ReasonPassFailed, failed, h.seen)
			}

			h.cloud.setDown(false)
			h.until("the held change made once the cloud is back", tc.step, func(swellv1.NodePoolScalerStatus) bool {
				return len(h.cloud.changes()) > 0
			})
			st := h.until("recovered", 0, func(st swellv1.NodePoolScalerStatus) bool {
				return providerAnswered(st) && !passFailed(st)
			})
			if c := condition(st, swellv1.ConditionReady); c.Status != metav1.ConditionTrue || c.Reason != ReasonPassSucceeded {
				t.Fatalf("Ready after recovery = %s %s %q", c.Status, c.Reason, c.Message)
			}
			if w := h.cloud.changes(); !reflect.DeepEqual(w, []string{want}) {
				t.Fatalf("after the outage the cloud was asked to %q, want [%s]", w, want)
			}
		})
	}
}
