package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/swell-autoscaler/swell/internal/controller/qworker"
)

var (
	qworkerGVR      = schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "qworkers"}
	scalerConfigGVR = schema.GroupVersionResource{Group: "quickube.com", Version: "v1alpha1", Resource: "scalerconfigs"}
)

// strictCreate rejects unknown fields instead of pruning them, as kubectl
// apply does by default, so "applies unchanged" means no field was dropped.
var strictCreate = metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}

// crdClient installs the CRDs (without the controller: validation is the
// apiserver's job) and returns a dynamic client.
func crdClient(ctx context.Context, t *testing.T) dynamic.Interface {
	t.Helper()
	if err := env.InstallCRDs(ctx, "../../config/crd/bases"); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// obj is a manifest under construction; with returns a changed deep copy.
type obj map[string]any

func validQWorker() obj {
	return obj{
		"apiVersion": "quickube.com/v1alpha1", "kind": "QWorker",
		"metadata": map[string]any{"name": "v"},
		"spec": map[string]any{
			"podSpec":     map[string]any{"containers": []any{map[string]any{"name": "w", "image": "w:1"}}},
			"scaleConfig": map[string]any{"scalerConfigRef": "redis", "queue": "q", "minReplicas": int64(1), "maxReplicas": int64(5), "scalingFactor": int64(1)},
		},
	}
}

// scalerConfig is a ScalerConfig of type typ with exactly config.
func scalerConfig(typ string, config map[string]any) obj {
	return obj{
		"apiVersion": "quickube.com/v1alpha1", "kind": "ScalerConfig",
		"metadata": map[string]any{"name": "v"},
		"spec":     map[string]any{"type": typ, "config": config},
	}
}

func validScalerConfig() obj {
	return scalerConfig("redis", map[string]any{"host": "redis", "port": "6379"})
}

// with sets the value at a dotted path (nil deletes it) in a copy of o.
func (o obj) with(path string, v any) obj {
	b, _ := json.Marshal(o)
	var c map[string]any
	_ = json.Unmarshal(b, &c)
	parts := strings.Split(path, ".")
	m := c
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
	return c
}

func (o obj) gvr() schema.GroupVersionResource {
	switch o["kind"] {
	case "ScalerConfig":
		return scalerConfigGVR
	case "QWorker":
		return qworkerGVR
	case "NodePoolScaler":
		return schema.GroupVersionResource{Group: "swell.dev", Version: "v1alpha1", Resource: "nodepoolscalers"}
	case "PodAutoscaler":
		return schema.GroupVersionResource{Group: "swell.dev", Version: "v1alpha1", Resource: "podautoscalers"}
	case "Secret":
		return schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	}
	return schema.GroupVersionResource{Resource: fmt.Sprintf("unknown-kind-%v", o["kind"])}
}

type m = map[string]any

func policies(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = m{"type": "Pods", "value": int64(1), "periodSeconds": int64(15)}
	}
	return out
}

// TestCRDValidationRejectsInvalidManifests applies each invalid manifest to
// the real apiserver and checks that the error names the field at fault.
func TestCRDValidationRejectsInvalidManifests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn := crdClient(ctx, t)
	ns := newNamespace(ctx, t)

	qw := validQWorker()
	const sc = "spec.scaleConfig."
	pw := func(p m) obj { return validScalerConfig().with("spec.config.password", p) }
	secret := m{"name": "s", "key": "k"}
	tls := func(t m) obj { return validScalerConfig().with("spec.config.tls", t) }
	kafka := func(extra m) obj {
		c := m{"brokers": []any{"k:9092"}, "consumerGroup": "g"}
		for k, v := range extra {
			c[k] = v
		}
		return scalerConfig("kafka", c)
	}
	cases := []struct {
		name string
		obj  obj
		want string
	}{
		// QWorker: QScaler's fields.
		{"min above max", qw.with(sc+"minReplicas", int64(9)), "spec.scaleConfig.minReplicas must be less than or equal to spec.scaleConfig.maxReplicas"},
		{"min above max, min omitted and max zero", qw.with(sc+"minReplicas", nil).with(sc+"maxReplicas", int64(0)), "spec.scaleConfig.maxReplicas"},
		{"negative min", qw.with(sc+"minReplicas", int64(-1)), "spec.scaleConfig.minReplicas"},
		{"fractional min", qw.with(sc+"minReplicas", 1.5), "spec.scaleConfig.minReplicas"},
		{"zero max", qw.with(sc+"maxReplicas", int64(0)), "spec.scaleConfig.maxReplicas"},
		{"missing max", qw.with(sc+"maxReplicas", nil), "spec.scaleConfig.maxReplicas"},
		{"zero scaling factor", qw.with(sc+"scalingFactor", int64(0)), "spec.scaleConfig.scalingFactor"},
		{"negative scaling factor", qw.with(sc+"scalingFactor", -0.5), "spec.scaleConfig.scalingFactor"},
		{"scaling factor a string", qw.with(sc+"scalingFactor", "lots"), "spec.scaleConfig.scalingFactor"},
		{"missing scaling factor", qw.with(sc+"scalingFactor", nil), "spec.scaleConfig.scalingFactor"},
		{"empty queue", qw.with(sc+"queue", ""), "spec.scaleConfig.queue"},
		{"missing queue", qw.with(sc+"queue", nil), "spec.scaleConfig.queue"},
		{"queue too long", qw.with(sc+"queue", strings.Repeat("q", 1025)), "spec.scaleConfig.queue"},
		{"missing scalerConfigRef", qw.with(sc+"scalerConfigRef", nil), "spec.scaleConfig.scalerConfigRef"},
		{"empty scalerConfigRef", qw.with(sc+"scalerConfigRef", ""), "spec.scaleConfig.scalerConfigRef"},
		{"scalerConfigRef not a name", qw.with(sc+"scalerConfigRef", "Redis_Config"), "spec.scaleConfig.scalerConfigRef"},
		{"activateVPA not a bool", qw.with(sc+"activateVPA", "yes"), "spec.scaleConfig.activateVPA"},
		{"missing scaleConfig", qw.with("spec.scaleConfig", nil), "spec.scaleConfig"},
		{"missing podSpec", qw.with("spec.podSpec", nil), "spec.podSpec"},
		{"podSpec without containers", qw.with("spec.podSpec.containers", nil), "spec.podSpec.containers"},
		// QWorker: Swell's additions.
		{"unknown retirement mode", qw.with(sc+"retirement", m{"mode": "Vanish"}), "spec.scaleConfig.retirement.mode"},
		{"retirement maxSurge zero", qw.with(sc+"retirement", m{"maxSurge": int64(0)}), "spec.scaleConfig.retirement.maxSurge"},
		{"retirement timeout zero", qw.with(sc+"retirement", m{"timeoutSeconds": int64(0)}), "spec.scaleConfig.retirement.timeoutSeconds"},
		{"retirement timeout with Delete", qw.with(sc+"retirement", m{"mode": "Delete", "timeoutSeconds": int64(60)}), "spec.scaleConfig.retirement.timeoutSeconds applies only to mode Cooperative"},
		{"fallback threshold zero", qw.with(sc+"fallback", m{"failureThreshold": int64(0)}), "spec.scaleConfig.fallback.failureThreshold"},
		{"fallback without threshold", qw.with(sc+"fallback", m{"replicas": int64(1)}), "spec.scaleConfig.fallback.failureThreshold"},
		{"fallback above max", qw.with(sc+"fallback", m{"failureThreshold": int64(1), "replicas": int64(50)}), "spec.scaleConfig.fallback.replicas must not exceed spec.scaleConfig.maxReplicas"},
		{"fallback negative", qw.with(sc+"fallback", m{"failureThreshold": int64(1), "replicas": int64(-1)}), "spec.scaleConfig.fallback.replicas"},
		{"polling interval zero", qw.with(sc+"pollingIntervalSeconds", int64(0)), "spec.scaleConfig.pollingIntervalSeconds"},
		{"polling interval over an hour", qw.with(sc+"pollingIntervalSeconds", int64(3601)), "spec.scaleConfig.pollingIntervalSeconds"},
		{"negative activation threshold", qw.with(sc+"activationThreshold", int64(-1)), "spec.scaleConfig.activationThreshold"},
		{"scale-up window over an hour", qw.with(sc+"behavior", m{"scaleUp": m{"stabilizationWindowSeconds": int64(3601)}}), "spec.scaleConfig.behavior.scaleUp.stabilizationWindowSeconds must be from 0 to 3600"},
		{"negative scale-down window", qw.with(sc+"behavior", m{"scaleDown": m{"stabilizationWindowSeconds": int64(-1)}}), "spec.scaleConfig.behavior.scaleDown.stabilizationWindowSeconds must be from 0 to 3600"},
		{"unknown select policy", qw.with(sc+"behavior", m{"scaleDown": m{"selectPolicy": "Median"}}), "spec.scaleConfig.behavior.scaleDown.selectPolicy must be Max, Min or Disabled"},
		{"unknown policy type", qw.with(sc+"behavior", m{"scaleUp": m{"policies": []any{m{"type": "Nodes", "value": int64(1), "periodSeconds": int64(15)}}}}), "spec.scaleConfig.behavior.scaleUp.policies[].type must be Pods or Percent"},
		{"policy value zero", qw.with(sc+"behavior", m{"scaleDown": m{"policies": []any{m{"type": "Percent", "value": int64(0), "periodSeconds": int64(15)}}}}), "spec.scaleConfig.behavior.scaleDown.policies[].value must be greater than 0"},
		{"policy period over 30 min", qw.with(sc+"behavior", m{"scaleUp": m{"policies": []any{m{"type": "Pods", "value": int64(1), "periodSeconds": int64(1801)}}}}), "spec.scaleConfig.behavior.scaleUp.policies[].periodSeconds must be from 1 to 1800"},
		{"too many policies", qw.with(sc+"behavior", m{"scaleUp": m{"policies": policies(11)}}), "spec.scaleConfig.behavior.scaleUp.policies"},
		{"unknown field", qw.with(sc+"scalingFactr", int64(1)), "scalingFactr"},

		// ScalerConfig: type and QScaler's fields.
		{"unknown broker type", validScalerConfig().with("spec.type", "kinesis"), "spec.type"},
		{"missing type", validScalerConfig().with("spec.type", nil), "spec.type"},
		{"missing config", validScalerConfig().with("spec.config", nil), "spec.config"},
		{"redis without host", validScalerConfig().with("spec.config.host", nil), "spec.config.host is required for type redis"},
		{"host is a URL", validScalerConfig().with("spec.config.host", "redis://r"), "spec.config.host"},
		{"port not a number", validScalerConfig().with("spec.config.port", "http"), "spec.config.port"},
		{"port a YAML number", validScalerConfig().with("spec.config.port", int64(6379)), "spec.config.port"},
		{"port zero", validScalerConfig().with("spec.config.port", "0"), "spec.config.port must be a number from 1 to 65535"},
		{"port out of range", validScalerConfig().with("spec.config.port", "70000"), "spec.config.port must be a number from 1 to 65535"},
		{"negative redis db", validScalerConfig().with("spec.config.db", int64(-1)), "spec.config.db"},
		{"value and secret", pw(m{"value": "x", "secret": secret}), "spec.config.password: set at most one of value, secret or valueFrom"},
		{"secret and valueFrom", pw(m{"secret": secret, "valueFrom": m{"secretKeyRef": secret}}), "spec.config.password: set at most one of value, secret or valueFrom"},
		{"secret without key", pw(m{"secret": m{"name": "s"}}), "spec.config.password.secret.key"},
		{"secret without name", pw(m{"secret": m{"key": "k"}}), "spec.config.password.secret.name"},
		{"secret name not a name", pw(m{"secret": m{"name": "My_Secret", "key": "k"}}), "spec.config.password.secret.name"},
		{"secret key with a slash", pw(m{"secret": m{"name": "s", "key": "a/b"}}), "spec.config.password.secret.key"},
		{"valueFrom without secretKeyRef", pw(m{"valueFrom": m{}}), "spec.config.password.valueFrom.secretKeyRef"},
		{"valueFrom without key", pw(m{"valueFrom": m{"secretKeyRef": m{"name": "s"}}}), "spec.config.password.valueFrom.secretKeyRef.key"},
		{"redis with kafka fields", validScalerConfig().with("spec.config.brokers", []any{"k:9092"}), "spec.config: only host, port, username, password, db, keyspaceNotifications and tls apply to type redis"},
		{"redis with a url", validScalerConfig().with("spec.config.url", "nats://n:4222"), "apply to type redis"},
		{"polling interval zero (ScalerConfig)", validScalerConfig().with("spec.pollingIntervalSeconds", int64(0)), "spec.pollingIntervalSeconds"},
		// TLS.
		{"tls options while disabled", tls(m{"enabled": false, "caSecret": "ca"}), "spec.config.tls: caSecret, certSecret, serverName and insecureSkipVerify need spec.config.tls.enabled: true"},
		{"tls without enabled", tls(m{"serverName": "r"}), "spec.config.tls.enabled"},
		{"tls CA and skip verify", tls(m{"enabled": true, "caSecret": "ca", "insecureSkipVerify": true}), "spec.config.tls: set caSecret or insecureSkipVerify, not both"},
		{"tls CA secret not a name", tls(m{"enabled": true, "caSecret": "CA Bundle"}), "spec.config.tls.caSecret"},
		// RabbitMQ.
		{"rabbitmq with host and url", scalerConfig("rabbitmq", m{"host": "r", "url": "amqp://r"}), "spec.config: set exactly one of host or url for type rabbitmq"},
		{"rabbitmq with neither", scalerConfig("rabbitmq", m{"vhost": "/"}), "spec.config: set exactly one of host or url for type rabbitmq"},
		{"rabbitmq url and port", scalerConfig("rabbitmq", m{"url": "amqp://r", "port": "5672"}), "spec.config.port must not be set with spec.config.url for type rabbitmq"},
		{"rabbitmq url not amqp", scalerConfig("rabbitmq", m{"url": "nats://r:4222"}), "spec.config.url must be one amqp:// or amqps:// URL for type rabbitmq"},
		{"rabbitmq url with credentials", scalerConfig("rabbitmq", m{"url": "amqp://guest:guest@r:5672"}), "spec.config.url must not contain credentials"},
		{"management url with credentials", scalerConfig("rabbitmq", m{"host": "r", "managementURL": "http://guest:guest@r:15672"}), "spec.config.managementURL must not contain credentials"},
		{"management url not http", scalerConfig("rabbitmq", m{"host": "r", "managementURL": "ftp://r"}), "spec.config.managementURL"},
		{"rabbitmq with a stream", scalerConfig("rabbitmq", m{"host": "r", "stream": "S"}), "apply to type rabbitmq"},
		// NATS.
		{"nats without url or host", scalerConfig("nats", m{"stream": "S"}), "spec.config: set exactly one of url or host for type nats"},
		{"nats with url and host", scalerConfig("nats", m{"url": "nats://n:4222", "host": "n"}), "spec.config: set exactly one of url or host for type nats"},
		{"nats url scheme", scalerConfig("nats", m{"url": "nats://a:4222,http://b:4222"}), "spec.config.url must be a comma-separated list of nats:// or tls:// URLs for type nats"},
		{"nats username without password", scalerConfig("nats", m{"url": "nats://n:4222", "username": "u"}), "spec.config.username and spec.config.password must be set together for type nats"},
		{"nats stream with a dot", scalerConfig("nats", m{"url": "nats://n:4222", "stream": "a.b"}), "spec.config.stream"},
		{"nats with a vhost", scalerConfig("nats", m{"url": "nats://n:4222", "vhost": "/"}), "apply to type nats"},
		// Kafka.
		{"kafka without brokers", scalerConfig("kafka", m{"consumerGroup": "g"}), "spec.config.brokers must list at least one broker for type kafka"},
		{"kafka with an empty broker list", kafka(m{"brokers": []any{}}), "spec.config.brokers must list at least one broker for type kafka"},
		{"kafka broker without port", kafka(m{"brokers": []any{"k"}}), "spec.config.brokers[0]"},
		{"kafka duplicate brokers", kafka(m{"brokers": []any{"k:9092", "k:9092"}}), "spec.config.brokers[1]"},
		{"kafka without group", scalerConfig("kafka", m{"brokers": []any{"k:9092"}}), "spec.config.consumerGroup is required for type kafka"},
		{"kafka SASL without credentials", kafka(m{"saslMechanism": "PLAIN"}), "spec.config.saslMechanism, spec.config.username and spec.config.password must be set together for type kafka"},
		{"kafka credentials without SASL", kafka(m{"username": "u", "password": m{"secret": secret}}), "spec.config.saslMechanism, spec.config.username and spec.config.password must be set together for type kafka"},
		{"unknown SASL mechanism", kafka(m{"saslMechanism": "MD5", "username": "u", "password": m{"secret": secret}}), "spec.config.saslMechanism"},
		{"kafka with a host", kafka(m{"host": "k"}), "spec.config: only brokers, consumerGroup, saslMechanism, username, password and tls apply to type kafka"},
		{"PodAutoscaler metric with http and source", validPodAutoscaler().with("spec.metric.http", m{"url": "http://m"}), "spec.metric: set exactly one of spec.metric.http or spec.metric.source"},
		{"PodAutoscaler metric with neither", validPodAutoscaler().with("spec.metric", m{}), "spec.metric: set exactly one of spec.metric.http or spec.metric.source"},
		{"PodAutoscaler source without queue", validPodAutoscaler().with("spec.metric.source.queue", nil), "spec.metric.source.queue"},
		{"PodAutoscaler source with empty scalerConfigRef", validPodAutoscaler().with("spec.metric.source.scalerConfigRef", ""), "spec.metric.source.scalerConfigRef"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dyn.Resource(c.obj.gvr()).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: c.obj}, strictCreate)
			if err == nil {
				t.Fatalf("the apiserver accepted an invalid manifest; want an error naming %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not name %q:\n%v", c.want, err)
			}
		})
	}

	valid := []struct {
		name string
		obj  obj
	}{
		{"minimal QWorker", qw},
		{"fractional scaling factor", qw.with(sc+"scalingFactor", 0.1)},
		{"min omitted (QScaler made it optional in practice)", qw.with(sc+"minReplicas", nil)},
		{"min 0 for scale to zero", qw.with(sc+"minReplicas", int64(0))},
		{"every Swell addition", qw.with(sc+"activationThreshold", int64(0)).with(sc+"countInFlight", true).
			with(sc+"pollingIntervalSeconds", int64(1)).with(sc+"fallback", m{"failureThreshold": int64(3), "replicas": int64(5)}).
			with(sc+"retirement", m{"mode": "Cooperative", "timeoutSeconds": int64(60), "maxSurge": int64(2)}).
			with(sc+"behavior", m{"scaleUp": m{"stabilizationWindowSeconds": int64(0), "selectPolicy": "Max", "policies": policies(10)},
				"scaleDown": m{"stabilizationWindowSeconds": int64(300), "selectPolicy": "Disabled"}})},
		{"QScaler's early spec.ObjectMeta and scaleConfig.brokers", qw.with("spec.ObjectMeta", m{"labels": m{"a": "b"}}).with(sc+"brokers", "redis")},
		{"minimal redis", validScalerConfig()},
		{"redis without port", validScalerConfig().with("spec.config.port", nil)},
		{"QScaler's password: {}", pw(m{})},
		{"inline password", pw(m{"value": "x"})},
		{"secret with optional", pw(m{"secret": m{"name": "s", "key": "k", "optional": true}})},
		{"valueFrom.secretKeyRef", pw(m{"valueFrom": m{"secretKeyRef": secret}})},
		{"redis with TLS and ACL user", validScalerConfig().with("spec.config.username", "u").with("spec.config.db", int64(3)).
			with("spec.config.keyspaceNotifications", true).with("spec.config.tls", m{"enabled": true, "caSecret": "ca", "certSecret": "client", "serverName": "redis"})},
		{"rabbitmq host", scalerConfig("rabbitmq", m{"host": "r", "port": "5672", "vhost": "/", "username": "u", "password": m{"secret": secret}, "managementURL": "http://r:15672"})},
		{"rabbitmq url", scalerConfig("rabbitmq", m{"url": "amqps://r:5671/vhost", "tls": m{"enabled": true, "insecureSkipVerify": true}})},
		{"nats url list without stream", scalerConfig("nats", m{"url": "nats://a:4222, tls://b:4222"})},
		{"nats host", scalerConfig("nats", m{"host": "n", "port": "4222", "stream": "ORDERS", "username": "u", "password": m{"secret": secret}})},
		{"kafka SASL", kafka(m{"brokers": []any{"[::1]:9092", "k-0.kafka:9092"}, "saslMechanism": "SCRAM-SHA-512", "username": "u", "password": m{"secret": secret}})},
		{"PodAutoscaler on a queue source", validPodAutoscaler()},
		{"PodAutoscaler on an http metric", validPodAutoscaler().with("spec.metric", m{"http": m{"url": "https://m/metric"}})},
	}
	for _, v := range valid {
		t.Run("valid: "+v.name, func(t *testing.T) {
			o := v.obj.with("metadata.name", nil).with("metadata.generateName", "valid-")
			if _, err := dyn.Resource(o.gvr()).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: o}, strictCreate); err != nil {
				t.Fatalf("valid %s rejected: %v", o["kind"], err)
			}
		})
	}
}

// TestCRDSamplesApplyUnchanged applies every manifest in config/samples as
// written (QScaler's documented example, its older forms, Swell's samples),
// rejecting unknown fields as kubectl apply does.
func TestCRDSamplesApplyUnchanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn := crdClient(ctx, t)
	ns := newNamespace(ctx, t)
	files, err := filepath.Glob("../../config/samples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found (%v)", err)
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
		for n := 0; ; n++ {
			var o obj
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: %v", file, err)
				}
				if n == 0 {
					t.Errorf("%s holds no manifest", file)
				}
				break
			}
			target := ns
			if own, _, _ := unstructured.NestedString(o, "metadata", "namespace"); own != "" {
				// A sample that names its namespace is applied there, as kubectl would.
				target = own
				_, _ = env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: own}}, metav1.CreateOptions{})
			}
			if _, err := dyn.Resource(o.gvr()).Namespace(target).Create(ctx, &unstructured.Unstructured{Object: o}, strictCreate); err != nil {
				t.Errorf("%s: %s rejected: %v", filepath.Base(file), o["kind"], err)
			}
		}
		_ = f.Close()
	}
}

// TestCRDScaleSubresourceAndColumns shows what scale clients and kubectl
// see: the scale subresource sets spec.scaleConfig.minReplicas (the floor
// the queue scales above), reads status.currentReplicas and status.selector,
// and is validated like the object; the printer columns show the status.
func TestCRDScaleSubresourceAndColumns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn := crdClient(ctx, t)
	ns := newNamespace(ctx, t)
	qws := dyn.Resource(qworkerGVR).Namespace(ns)
	// Paused: the running controller must not overwrite the status this
	// test writes by hand.
	created, err := qws.Create(ctx, &unstructured.Unstructured{Object: validQWorker().with("metadata.name", "pool").
		with("metadata.annotations", m{qworker.AnnotationPaused: "true"})}, strictCreate)
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = m{"currentReplicas": int64(2), "desiredReplicas": int64(4), "readyReplicas": int64(1),
		"backlog": int64(40), "selector": "swell.dev/qworker=pool"}
	if _, err := qws.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	scale, err := qws.Get(ctx, "pool", metav1.GetOptions{}, "scale")
	if err != nil {
		t.Fatal(err)
	}
	specReplicas, _, _ := unstructured.NestedInt64(scale.Object, "spec", "replicas")
	statusReplicas, _, _ := unstructured.NestedInt64(scale.Object, "status", "replicas")
	selector, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	if specReplicas != 1 || statusReplicas != 2 || selector != "swell.dev/qworker=pool" {
		t.Fatalf("scale = spec %d, status %d, selector %q; want minReplicas 1, currentReplicas 2, the status selector", specReplicas, statusReplicas, selector)
	}
	_ = unstructured.SetNestedField(scale.Object, int64(3), "spec", "replicas")
	if _, err := qws.Update(ctx, scale, metav1.UpdateOptions{}, "scale"); err != nil {
		t.Fatalf("scale to 3: %v", err)
	}
	got, err := qws.Get(ctx, "pool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if minReplicas, _, _ := unstructured.NestedInt64(got.Object, "spec", "scaleConfig", "minReplicas"); minReplicas != 3 {
		t.Fatalf("after scaling to 3, minReplicas = %d", minReplicas)
	}
	scale, err = qws.Get(ctx, "pool", metav1.GetOptions{}, "scale")
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(scale.Object, int64(9), "spec", "replicas")
	if _, err := qws.Update(ctx, scale, metav1.UpdateOptions{}, "scale"); err == nil || !strings.Contains(err.Error(), "minReplicas must be less than or equal to spec.scaleConfig.maxReplicas") {
		t.Fatalf("scaling above maxReplicas: err = %v, want the min <= max message", err)
	}

	table := func(resource string) metav1.Table {
		t.Helper()
		raw, err := env.Clientset.Discovery().RESTClient().Get().
			AbsPath("/apis/quickube.com/v1alpha1/namespaces", ns, resource).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tb metav1.Table
		if err := json.Unmarshal(raw, &tb); err != nil {
			t.Fatal(err)
		}
		return tb
	}
	tb := table("qworkers")
	cols := map[string]any{}
	for i, c := range tb.ColumnDefinitions {
		if c.Priority == 0 && len(tb.Rows) == 1 {
			cols[c.Name] = tb.Rows[0].Cells[i]
		}
	}
	for name, want := range map[string]float64{"Desired": 4, "Current": 2, "Ready": 1, "Backlog": 40} {
		if cols[name] != want {
			t.Errorf("column %s = %v, want %v (columns %v)", name, cols[name], want, cols)
		}
	}
	if _, ok := cols["Age"]; !ok {
		t.Errorf("no Age column in %v", cols)
	}
	if _, err := dyn.Resource(scalerConfigGVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: validScalerConfig()}, strictCreate); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table("scalerconfigs").ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if got := strings.Join(names, ","); got != "Name,Type,Healthy,Age" {
		t.Errorf("ScalerConfig columns = %s, want Name,Type,Healthy,Age", got)
	}
}
