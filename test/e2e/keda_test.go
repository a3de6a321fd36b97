package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/swell-autoscaler/swell/internal/testenv"
	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	pb "github.com/swell-autoscaler/swell/pkg/externalscaler/proto"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// The KEDA suite runs KEDA's own operator and metrics adapter, built from
// KEDA's Go module by hack/build-keda.sh, against the shared control plane.
// Their only scaler is Swell's external scaler, served in process on
// loopback from a Redis list: KEDA decides 0 ↔ 1 from IsActive and
// StreamIsActive, and the HPA it creates reads Swell's GetMetrics value
// through the adapter for 1 → N.

var scaledObjectGVR = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// swellRequests is how many rpc calls the scaler answered, with OK or
// (anyCode) any status. Streams count when they end.
func swellRequests(t *testing.T, s *scalertest.Scaler, rpc string, anyCode bool) float64 {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "swell_external_scaler_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["rpc"] == rpc && (anyCode || labels["code"] == "OK") {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestKEDAScalesADeploymentThroughSwellExternalScaler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	keda, err := env.StartKEDA(ctx, testenv.KEDAOptions{Adapter: true})
	if err != nil {
		t.Fatalf("start KEDA: %v", err)
	}
	t.Cleanup(keda.Stop)
	t.Logf("KEDA %s, CRDs from %s", keda.Version, keda.CRDDir)
	scaler := scalertest.Start(t, scalertest.Options{Tracker: externalscaler.TrackerOptions{Interval: 200 * time.Millisecond}})
	ns := newNamespace(ctx, t)
	rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr})
	defer func() { _ = rdb.Close() }()
	list := "keda-jobs-" + ns
	md := map[string]string{"source": "redis", "address": env.RedisAddr, "listName": list, "targetSize": "5"}

	// "poll" uses the external trigger (IsActive and GetMetrics at every
	// pollingInterval), "push" the external-push one (StreamIsActive).
	kinds := map[string]string{"poll": "external", "push": "external-push"}
	for name, trigger := range kinds {
		createCPADeployment(ctx, t, ns, name, 0, "")
		createScaledObject(ctx, t, ns, name, trigger, scaler.Addr, md)
	}

	// KEDA's HPA carries the metric spec Swell returned.
	spec, err := scaler.Client.GetMetricSpec(ctx, &pb.ScaledObjectRef{Name: "poll", Namespace: ns, ScalerMetadata: md})
	if err != nil || len(spec.MetricSpecs) != 1 {
		t.Fatalf("GetMetricSpec = %v, %v", spec, err)
	}
	metric := "s0-" + spec.MetricSpecs[0].MetricName
	for name := range kinds {
		hpa := waitKEDAHPA(ctx, t, ns, name)
		assertHPAMetric(t, hpa, metric, spec.MetricSpecs[0].TargetSizeFloat)
		waitScaledObjectCondition(ctx, t, ns, name, "Active", "False")
		if r := replicasOf(ctx, t, ns, name); r != 0 {
			t.Fatalf("%s has %d replicas while the list is empty", name, r)
		}
	}

	// Work arrives: Swell says active, KEDA scales both from 0 to 1.
	if err := rdb.RPush(ctx, list, "j1", "j2", "j3").Err(); err != nil {
		t.Fatal(err)
	}
	for name := range kinds {
		waitReplicas(ctx, t, ns, name, 1)
		waitReadyReplicas(ctx, t, ns, name, 1)
		waitScaledObjectCondition(ctx, t, ns, name, "Active", "True")
	}

	// More work: the HPA reads 18 through KEDA's adapter from Swell's
	// GetMetrics and asks for ceil(18 / 5) = 4 replicas.
	for i := 4; i <= 18; i++ {
		if err := rdb.RPush(ctx, list, fmt.Sprintf("j%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitExternalMetric(ctx, t, ns, "poll", metric, 18)
	waitReplicas(ctx, t, ns, "poll", 4)

	// The list drains: inactive, and after the cooldown KEDA takes both
	// back to zero.
	if err := rdb.Del(ctx, list).Err(); err != nil {
		t.Fatal(err)
	}
	for name := range kinds {
		waitScaledObjectCondition(ctx, t, ns, name, "Active", "False")
		waitReplicas(ctx, t, ns, name, 0)
	}

	for _, rpc := range []string{"GetMetricSpec", "IsActive", "GetMetrics"} {
		n := swellRequests(t, scaler, rpc, false)
		if n == 0 {
			t.Errorf("KEDA never called %s on Swell", rpc)
		}
		t.Logf("Swell answered %s %v times", rpc, n)
	}
	// KEDA holds its streams open until it stops; they count once ended.
	keda.Stop()
	waitFor(ctx, t, "KEDA's StreamIsActive stream to end", func() (bool, error) {
		return swellRequests(t, scaler, "StreamIsActive", true) > 0, nil
	})
	t.Logf("Swell served %v StreamIsActive streams", swellRequests(t, scaler, "StreamIsActive", true))
}

// createScaledObject scales the Deployment name between 0 and 10 from one
// trigger of type trigger at Swell's address, polling every second with a
// 5 s cooldown.
func createScaledObject(ctx context.Context, t *testing.T, ns, name, trigger, addr string, md map[string]string) {
	t.Helper()
	meta := map[string]any{"scalerAddress": addr}
	for k, v := range md {
		meta[k] = v
	}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1",
		"kind":       "ScaledObject",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": name},
			"pollingInterval": int64(1),
			"cooldownPeriod":  int64(5),
			"minReplicaCount": int64(0),
			"maxReplicaCount": int64(10),
			"triggers":        []any{map[string]any{"type": trigger, "metadata": meta}},
		},
	}}
	if _, err := kedaClient(t).Resource(scaledObjectGVR).Namespace(ns).Create(ctx, so, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ScaledObject %s: %v", name, err)
	}
}

func kedaClient(t *testing.T) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// waitKEDAHPA waits for the HPA KEDA creates for the ScaledObject name.
func waitKEDAHPA(ctx context.Context, t *testing.T, ns, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	waitFor(ctx, t, "KEDA's HPA for "+name, func() (bool, error) {
		h, err := env.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+name, metav1.GetOptions{})
		hpa = h
		return err == nil, err
	})
	return hpa
}

func assertHPAMetric(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler, metric string, target float64) {
	t.Helper()
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].External == nil {
		t.Fatalf("HPA %s metrics = %+v, want one external metric", hpa.Name, hpa.Spec.Metrics)
	}
	ext := hpa.Spec.Metrics[0].External
	if ext.Metric.Name != metric {
		t.Errorf("HPA %s metric = %q, want %q (Swell's GetMetricSpec name)", hpa.Name, ext.Metric.Name, metric)
	}
	if ext.Target.Type != autoscalingv2.AverageValueMetricType || ext.Target.AverageValue == nil || ext.Target.AverageValue.AsApproximateFloat64() != target {
		t.Errorf("HPA %s target = %+v, want average value %v (Swell's targetSizeFloat)", hpa.Name, ext.Target, target)
	}
}

// waitScaledObjectCondition waits until the ScaledObject's condition typ
// has status.
func waitScaledObjectCondition(ctx context.Context, t *testing.T, ns, name, typ, status string) {
	t.Helper()
	sos := kedaClient(t).Resource(scaledObjectGVR).Namespace(ns)
	waitFor(ctx, t, fmt.Sprintf("ScaledObject %s %s=%s", name, typ, status), func() (bool, error) {
		return scaledObjectCondition(ctx, sos, name, typ, status)
	})
}

// scaledObjectCondition reports whether ScaledObject name's condition typ
// has status; the error says what it has instead, for the wait's message.
func scaledObjectCondition(ctx context.Context, sos dynamic.ResourceInterface, name, typ, status string) (bool, error) {
	so, err := sos.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	conds, _, _ := unstructured.NestedSlice(so.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["status"] == status, fmt.Errorf("%s=%v: %v", typ, m["status"], m["message"])
		}
	}
	return false, fmt.Errorf("no %s condition yet", typ)
}

// waitExternalMetric waits until external.metrics.k8s.io, as the HPA reads
// it, serves want for the ScaledObject's metric.
func waitExternalMetric(ctx context.Context, t *testing.T, ns, so, metric string, want float64) {
	t.Helper()
	path := fmt.Sprintf("/apis/external.metrics.k8s.io/v1beta1/namespaces/%s/%s", ns, metric)
	waitFor(ctx, t, fmt.Sprintf("external metric %s = %v", metric, want), func() (bool, error) {
		raw, err := env.Clientset.CoreV1().RESTClient().Get().AbsPath(path).
			Param("labelSelector", "scaledobject.keda.sh/name="+so).DoRaw(ctx)
		if err != nil {
			return false, err
		}
		var list struct {
			Items []struct {
				Value resource.Quantity `json:"value"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return false, err
		}
		if len(list.Items) != 1 {
			return false, fmt.Errorf("%d values: %s", len(list.Items), strings.TrimSpace(string(raw)))
		}
		got := list.Items[0].Value.AsApproximateFloat64()
		return got == want, fmt.Errorf("value %v", got)
	})
}
