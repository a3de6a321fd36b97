package e2e

import (
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/swell-autoscaler/swell/internal/controller/qworker"
)

// TestQWorkerLabelsAfterUpgrade: new worker pods carry Swell's labels
// under swell.dev/ and, for one release, the legacy quickube.com/ keys. A
// pod made by an earlier Swell (legacy keys only) and one made by QScaler
// (no labels) get the missing labels in exactly one change each, without
// being replaced, so status.selector selects the whole pool; the
// controller's later passes leave them alone.
func TestQWorkerLabelsAfterUpgrade(t *testing.T) {
	ctx, c, ns, _, queue := redisFixture(t, 2*time.Minute)
	const name = "relabel"
	if err := c.Create(ctx, kwokQWorker(ns, name, queue, 2, 2, 1)); err != nil {
		t.Fatalf("create QWorker: %v", err)
	}
	pods := waitForRunningPods(ctx, t, ns, name, 2)
	hash := getQWorker(ctx, t, c, ns, name).Status.CurrentPodSpecHash
	want := map[string]string{
		qworker.LabelQWorker: name, qworker.LegacyLabelQWorker: name,
		qworker.LabelPodSpecHash: hash[:63], qworker.LegacyLabelPodSpecHash: hash[:63],
	}
	for _, p := range pods {
		for k, v := range want {
			if p.Labels[k] != v {
				t.Fatalf("new pod %s labels %v: want %s=%s", p.Name, p.Labels, k, v)
			}
		}
	}

	// Make one pod look as an earlier Swell left it and the other as
	// QScaler did.
	strip := map[string]string{
		pods[0].Name: `{"metadata":{"labels":{"` + qworker.LabelQWorker + `":null,"` + qworker.LabelPodSpecHash + `":null}}}`,
		pods[1].Name: `{"metadata":{"labels":{"` + qworker.LabelQWorker + `":null,"` + qworker.LabelPodSpecHash + `":null,"` +
			qworker.LegacyLabelQWorker + `":null,"` + qworker.LegacyLabelPodSpecHash + `":null}}}`,
	}
	// The watch starts at the first strip, so the controller's fix of that
	// pod is seen even when it lands before the second strip; each pod's
	// events count only from its own strip on.
	last := map[string]map[string]string{}
	stripRV := map[string]string{}
	var watchFrom string
	for _, pod := range []string{pods[0].Name, pods[1].Name} {
		p, err := env.Clientset.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(strip[pod]), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("strip labels of %s: %v", pod, err)
		}
		last[pod], stripRV[pod] = p.Labels, p.ResourceVersion
		if watchFrom == "" {
			watchFrom = p.ResourceVersion
		}
	}
	w, err := env.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: watchFrom})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	stripped := map[string]bool{pods[0].Name: true}
	changes := map[string]int{}
	fixed := func() bool {
		for pod := range strip {
			for k, v := range want {
				if last[pod][k] != v {
					return false
				}
			}
		}
		return true
	}
	measured := func() float64 {
		return counterValue(t, "swell_qworker_measurements_total", map[string]string{"namespace": ns, "qworker": name})
	}
	var settled float64 = -1
	deadline := time.After(90 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("pod watch closed")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type != watch.Modified {
				continue
			}
			if _, tracked := last[p.Name]; tracked && !stripped[p.Name] {
				stripped[p.Name] = p.ResourceVersion == stripRV[p.Name]
				continue
			}
			if prev, tracked := last[p.Name]; tracked && !maps.Equal(prev, p.Labels) {
				changes[p.Name]++
				last[p.Name] = p.Labels
			}
			continue
		case <-deadline:
			t.Fatalf("labels %v after 90 s (changes %v), want %v on both pods", last, changes, want)
		case <-tick.C:
		}
		if !fixed() {
			continue
		}
		if settled < 0 {
			settled = measured()
			continue
		}
		// Three more passes of the controller after the fix: none may
		// touch the labels again.
		if measured() >= settled+3 {
			break
		}
	}
	t.Logf("label changes per pod after the strip: %v (want 1 each); labels now %v", changes, last)
	for pod := range strip {
		if changes[pod] != 1 {
			t.Errorf("pod %s: %d label changes, want exactly 1", pod, changes[pod])
		}
	}
	got := getQWorker(ctx, t, c, ns, name).Status.Selector
	list, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: got})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range list.Items {
		names[p.Name] = true
	}
	if got != qworker.LabelQWorker+"="+name || len(names) != 2 || !names[pods[0].Name] || !names[pods[1].Name] {
		t.Fatalf("status.selector %q selects %v, want %s=%s selecting the two original pods %s and %s", got, names, qworker.LabelQWorker, name, pods[0].Name, pods[1].Name)
	}
}
