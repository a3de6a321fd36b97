package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

var (
	qworkerGVR      = schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "qworkers"}
	scalerConfigGVR = schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "scalerconfigs"}
)

// validQWorker is a minimal valid QWorker as a map, for mutation.
func validQWorker() map[string]any {
	return map[string]any{
		"apiVersion": "quickube.com/v1alpha1", "kind": "QWorker",
		"metadata": map[string]any{"name": "v"},
		"spec": map[string]any{
			"podSpec":     map[string]any{"containers": []any{map[string]any{"name": "w", "image": "w:1"}}},
			"scaleConfig": map[string]any{"scalerConfigRef": "redis", "queue": "q", "minReplicas": int64(1), "maxReplicas": int64(5), "scalingFactor": int64(1)},
		},
	}
}

func validScalerConfig() map[string]any {
	return map[string]any{
		"apiVersion": "quickube.com/v1alpha1", "kind": "ScalerConfig",
		"metadata": map[string]any{"name": "v"},
		"spec":     map[string]any{"type": "redis", "config": map[string]any{"host": "redis", "port": "6379"}},
	}
}

func set(obj map[string]any, path string, v any) map[string]any {
	parts := strings.Split(path, ".")
	m := obj
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
	} else {
		m[parts[len(parts)-1]] = v
	}
	return obj
}

// TestCRDValidationRejectsInvalidManifests applies each invalid manifest to
// the real apiserver and checks the error names the field at fault.
func TestCRDValidationRejectsInvalidManifests(t *testing.T) {
	startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		gvr  schema.GroupVersionResource
		obj  map[string]any
		want string
	}{
		{"min above max", qworkerGVR, set(validQWorker(), "spec.scaleConfig.minReplicas", int64(9)), "minReplicas must be less than or equal to spec.scaleConfig.maxReplicas"},
		{"negative min", qworkerGVR, set(validQWorker(), "spec.scaleConfig.minReplicas", int64(-1)), "spec.scaleConfig.minReplicas"},
		{"zero max", qworkerGVR, set(validQWorker(), "spec.scaleConfig.maxReplicas", int64(0)), "spec.scaleConfig.maxReplicas"},
		{"zero scaling factor", qworkerGVR, set(validQWorker(), "spec.scaleConfig.scalingFactor", int64(0)), "spec.scaleConfig.scalingFactor"},
		{"negative scaling factor", qworkerGVR, set(validQWorker(), "spec.scaleConfig.scalingFactor", -0.5), "spec.scaleConfig.scalingFactor"},
		{"scaling factor a string", qworkerGVR, set(validQWorker(), "spec.scaleConfig.scalingFactor", "lots"), "spec.scaleConfig.scalingFactor"},
		{"empty queue", qworkerGVR, set(validQWorker(), "spec.scaleConfig.queue", ""), "spec.scaleConfig.queue"},
		{"missing queue", qworkerGVR, set(validQWorker(), "spec.scaleConfig.queue", nil), "spec.scaleConfig.queue"},
		{"missing scalerConfigRef", qworkerGVR, set(validQWorker(), "spec.scaleConfig.scalerConfigRef", nil), "spec.scaleConfig.scalerConfigRef"},
		{"missing podSpec", qworkerGVR, set(validQWorker(), "spec.podSpec", nil), "spec.podSpec"},
		{"podSpec without containers", qworkerGVR, set(validQWorker(), "spec.podSpec.containers", nil), "spec.podSpec.containers"},
		{"unknown retirement mode", qworkerGVR, set(validQWorker(), "spec.scaleConfig.retirement", map[string]any{"mode": "Vanish"}), "spec.scaleConfig.retirement.mode"},
		{"fallback threshold zero", qworkerGVR, set(validQWorker(), "spec.scaleConfig.fallback", map[string]any{"failureThreshold": int64(0)}), "spec.scaleConfig.fallback.failureThreshold"},
		{"fallback above max", qworkerGVR, set(validQWorker(), "spec.scaleConfig.fallback", map[string]any{"failureThreshold": int64(1), "replicas": int64(50)}), "fallback.replicas must not exceed"},
		{"polling interval zero", qworkerGVR, set(validQWorker(), "spec.scaleConfig.pollingIntervalSeconds", int64(0)), "spec.scaleConfig.pollingIntervalSeconds"},
		{"negative activation threshold", qworkerGVR, set(validQWorker(), "spec.scaleConfig.activationThreshold", int64(-1)), "spec.scaleConfig.activationThreshold"},
		{"unknown broker type", scalerConfigGVR, set(validScalerConfig(), "spec.type", "kinesis"), "spec.type"},
		{"redis without host", scalerConfigGVR, set(validScalerConfig(), "spec.config.host", nil), "spec.config.host is required for type redis"},
		{"port not a number", scalerConfigGVR, set(validScalerConfig(), "spec.config.port", "http"), "spec.config.port"},
		{"port out of range", scalerConfigGVR, set(validScalerConfig(), "spec.config.port", "70000"), "spec.config.port must be a number from 1 to 65535"},
		{"two password sources", scalerConfigGVR, set(validScalerConfig(), "spec.config.password", map[string]any{"value": "x", "secret": map[string]any{"name": "s", "key": "k"}}), "set exactly one of value, secret or valueFrom"},
		{"secret without key", scalerConfigGVR, set(validScalerConfig(), "spec.config.password", map[string]any{"secret": map[string]any{"name": "s"}}), "spec.config.password.secret.key"},
		{"rabbitmq with host and url", scalerConfigGVR, set(set(validScalerConfig(), "spec.type", "rabbitmq"), "spec.config.url", "amqp://r"), "set exactly one of host or url"},
		{"nats without stream", scalerConfigGVR, set(set(validScalerConfig(), "spec.type", "nats"), "spec.config.url", "nats://n:4222"), "spec.config.stream is required"},
		{"kafka without brokers", scalerConfigGVR, set(set(validScalerConfig(), "spec.type", "kafka"), "spec.config.consumerGroup", "g"), "spec.config.brokers must list at least one broker"},
		{"kafka without group", scalerConfigGVR, set(set(validScalerConfig(), "spec.type", "kafka"), "spec.config.brokers", []any{"k:9092"}), "spec.config.consumerGroup is required"},
		{"bad url scheme", scalerConfigGVR, set(set(set(validScalerConfig(), "spec.type", "nats"), "spec.config.url", "http://n"), "spec.config.stream", "S"), "spec.config.url"},
		{"unknown SASL mechanism", scalerConfigGVR, set(validScalerConfig(), "spec.config.saslMechanism", "MD5"), "spec.config.saslMechanism"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dyn.Resource(c.gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: c.obj}, metav1.CreateOptions{})
			if err == nil {
				t.Fatalf("the apiserver accepted an invalid manifest; want an error naming %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
		})
	}
	t.Run("valid manifests apply", func(t *testing.T) {
		for _, obj := range []map[string]any{validQWorker(), validScalerConfig(), set(validQWorker(), "spec.scaleConfig.scalingFactor", 0.1)} {
			gvr := qworkerGVR
			if obj["kind"] == "ScalerConfig" {
				gvr = scalerConfigGVR
			}
			set(obj, "metadata.generateName", "valid-")
			set(obj, "metadata.name", nil)
			if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("valid %s rejected: %v", obj["kind"], err)
			}
		}
	})
}

// TestSamplesApplyUnchanged applies QScaler's documented example and Swell's
// extended sample exactly as written in config/samples.
func TestSamplesApplyUnchanged(t *testing.T) {
	startController(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"../../config/samples/quickube_v1alpha1_qscaler_example.yaml", "../../config/samples/quickube_v1alpha1_swell_extended.yaml"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				break
			}
			gvr := qworkerGVR
			if obj["kind"] == "ScalerConfig" {
				gvr = scalerConfigGVR
			}
			if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: %s rejected: %v", file, obj["kind"], err)
			}
		}
		_ = f.Close()
	}
}
