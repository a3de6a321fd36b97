package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// The PodAutoscaler suite runs CPAs inside Swell's controller against
// Deployments on kwok nodes: httptest servers play the user's metric and
// evaluator, whose answers the tests change. Intervals are 1 s and every
// assertion polls for behaviour.

// TestPodAutoscalerExpressionScalesUpAndDown: an http metric answering a
// number and the built-in expression scale a Deployment up and down, with
// the decision, events and condition visible on the PodAutoscaler.
func TestPodAutoscalerExpressionScalesUpAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	var value atomic.Value
	value.Store("35")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in cpa.MetricInfo
		if err := json.Unmarshal([]byte(r.URL.Query().Get("value")), &in); err != nil || in.RunType != cpa.RunTypeScaler {
			http.Error(w, "want CPA's metric JSON in ?value=", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, value.Load())
	}))
	defer srv.Close()
	createCPADeployment(ctx, t, ns, "web", 1, "")
	pa := newPodAutoscaler(ns, "web", cpa.PerResource, swellv1.EvaluateMethod{Expression: "ceil(value / 10)"}, srv.URL)
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}

	waitReplicas(ctx, t, ns, "web", 4)
	got := waitPodAutoscaler(ctx, t, kube, ns, "web", "lastDecision desired 4, Ready", func(pa *swellv1.PodAutoscaler) bool {
		d := pa.Status.LastDecision
		return d != nil && d.Desired == 4 && d.Evaluation == 4 && meta.IsStatusConditionTrue(pa.Status.Conditions, "Ready")
	})
	if in := got.Status.LastDecision.Inputs; len(in) != 1 || in[0] != "web=35" {
		t.Errorf("lastDecision.inputs = %q, want [web=35]", in)
	}
	waitPodAutoscalerEvent(ctx, t, ns, "web", cpa.ReasonSuccessfulRescale)

	value.Store("12")
	waitReplicas(ctx, t, ns, "web", 2)
	value.Store("500")
	waitReplicas(ctx, t, ns, "web", 6) // maxReplicas
}

// TestPodAutoscalerBrokenEvaluatorHoldsAndRecovers: per-pod metrics and an
// http evaluator; while the evaluator answers garbage no pass scales, the
// PodAutoscaler gets a Warning event and Ready=False, and the next good
// answer scales as usual.
func TestPodAutoscalerBrokenEvaluatorHoldsAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	var answer atomic.Value
	answer.Store(`{"targetReplicas": 3}`)
	var garbageCalls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metric" {
			fmt.Fprint(w, "1")
			return
		}
		var in cpa.EvaluateInfo
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Method != http.MethodPost {
			http.Error(w, "want CPA's evaluate JSON in a POST body", http.StatusBadRequest)
			return
		}
		a := answer.Load().(string)
		if a == "garbage" {
			garbageCalls.Add(1)
		}
		fmt.Fprint(w, a)
	}))
	defer srv.Close()
	createCPADeployment(ctx, t, ns, "api", 1, "")
	evaluate := swellv1.EvaluateMethod{HTTP: &swellv1.HTTPMethod{Method: http.MethodPost, URL: srv.URL + "/evaluate", ParameterMode: "body", SuccessCodes: []int32{200}}}
	pa := newPodAutoscaler(ns, "api", cpa.PerPod, evaluate, srv.URL+"/metric")
	if err := kube.Create(ctx, pa); err != nil {
		t.Fatalf("create PodAutoscaler: %v", err)
	}
	waitReplicas(ctx, t, ns, "api", 3)

	answer.Store("garbage")
	waitPodAutoscaler(ctx, t, kube, ns, "api", "Ready=False FailedEvaluate", func(pa *swellv1.PodAutoscaler) bool {
		c := meta.FindStatusCondition(pa.Status.Conditions, "Ready")
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == cpa.ReasonFailedEvaluate
	})
	waitPodAutoscalerEvent(ctx, t, ns, "api", cpa.ReasonFailedEvaluate)
	waitFor(ctx, t, "two more failed passes", func() (bool, error) { return garbageCalls.Load() >= 3, nil })
	if n := replicasOf(ctx, t, ns, "api"); n != 3 {
		t.Fatalf("replicas = %d after failed passes, want 3 held", n)
	}

	answer.Store(`{"targetReplicas": 2}`)
	waitReplicas(ctx, t, ns, "api", 2)
	waitPodAutoscaler(ctx, t, kube, ns, "api", "Ready=True again", func(pa *swellv1.PodAutoscaler) bool {
		return meta.IsStatusConditionTrue(pa.Status.Conditions, "Ready")
	})
}

// TestPodAutoscalerValidation: the API server rejects what CEL can name.
func TestPodAutoscalerValidation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kube := startController(t)
	ns := newNamespace(ctx, t)
	both := newPodAutoscaler(ns, "both", cpa.PerPod, swellv1.EvaluateMethod{Expression: "value", HTTP: &swellv1.HTTPMethod{URL: "http://x"}}, "http://x")
	minMax := newPodAutoscaler(ns, "minmax", cpa.PerPod, swellv1.EvaluateMethod{Expression: "value"}, "http://x")
	minMax.Spec.MinReplicas = 7
	for want, pa := range map[string]*swellv1.PodAutoscaler{"spec.evaluate": both, "spec.minReplicas": minMax} {
		err := kube.Create(ctx, pa)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("create %s: %v, want a rejection naming %s", pa.Name, err, want)
		}
	}
}

func newPodAutoscaler(ns, target, runMode string, evaluate swellv1.EvaluateMethod, metricURL string) *swellv1.PodAutoscaler {
	return &swellv1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: ns},
		Spec: swellv1.PodAutoscalerSpec{
			ScaleTargetRef:  swellv1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:     1,
			MaxReplicas:     6,
			IntervalSeconds: 1,
			RunMode:         runMode,
			Metric:          swellv1.MetricMethod{HTTP: &swellv1.HTTPMethod{URL: metricURL, TimeoutMilliseconds: 2000}},
			Evaluate:        evaluate,
		},
	}
}

func waitPodAutoscaler(ctx context.Context, t *testing.T, kube client.Client, ns, name, what string, ok func(*swellv1.PodAutoscaler) bool) *swellv1.PodAutoscaler {
	t.Helper()
	var pa swellv1.PodAutoscaler
	waitFor(ctx, t, fmt.Sprintf("PodAutoscaler %s: %s", name, what), func() (bool, error) {
		if err := kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pa); err != nil {
			return false, err
		}
		return ok(&pa), nil
	})
	return &pa
}

func waitPodAutoscalerEvent(ctx context.Context, t *testing.T, ns, name, reason string) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("event %s on PodAutoscaler %s", reason, name), func() (bool, error) {
		l, err := env.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.Reason == reason && e.InvolvedObject.Kind == "PodAutoscaler" {
				return true, nil
			}
		}
		return false, nil
	})
}
