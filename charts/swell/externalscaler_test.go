package chart_test

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// renderErr renders the chart and returns the engine's error (a template's
// fail message) instead of failing the test.
func renderErr(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "swell", Namespace: "swell-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Render(ch, v)
}

// objects parses every rendered manifest into unstructured objects.
func objects(t *testing.T, out map[string]string) []*unstructured.Unstructured {
	t.Helper()
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(out[n], "\n---") {
			m := map[string]any{}
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v\n%s", n, err, doc)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// typed finds the object of kind and name and converts it into into.
func typed(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) bool {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return true
		}
	}
	return false
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var r []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			r = append(r, o)
		}
	}
	return r
}

const scalerName = "swell-external-scaler"

func enabledScaler(extra map[string]any) map[string]any {
	es := map[string]any{"enabled": true}
	for k, v := range extra {
		es[k] = v
	}
	return map[string]any{"externalScaler": es}
}

// scalerObjects renders with the external scaler enabled and returns its
// Deployment, Service and every object.
func scalerObjects(t *testing.T, vals map[string]any) (appsv1.Deployment, corev1.Service, []*unstructured.Unstructured) {
	t.Helper()
	objs := objects(t, render(t, vals))
	var dep appsv1.Deployment
	var svc corev1.Service
	if !typed(t, objs, "Deployment", scalerName, &dep) || !typed(t, objs, "Service", scalerName, &svc) {
		t.Fatalf("external scaler enabled but no Deployment/Service %s rendered", scalerName)
	}
	return dep, svc, objs
}

func TestRenderExternalScalerOffByDefault(t *testing.T) {
	out := render(t, nil)
	if s := strings.TrimSpace(out["swell/templates/external-scaler.yaml"]); s != "" {
		t.Errorf("default values render the external scaler:\n%s", s)
	}
	if s := strings.TrimSpace(out["swell/templates/monitors.yaml"]); s != "" {
		t.Errorf("default values render Prometheus monitors:\n%s", s)
	}
	for _, o := range objects(t, out) {
		if strings.Contains(o.GetName(), "external-scaler") {
			t.Errorf("default values render %s %s", o.GetKind(), o.GetName())
		}
	}
}

// TestRenderExternalScaler: plaintext by default; the Service reaches the
// pod's named ports; the pod is the scaler's, not the controller's, and runs
// without any Kubernetes credentials.
func TestRenderExternalScaler(t *testing.T) {
	dep, svc, objs := scalerObjects(t, enabledScaler(map[string]any{"extraArgs": []any{"--log-json"}}))
	pod := dep.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	wantArgs := []string{"external-scaler", "--listen=:8090", "--metrics-addr=:9090", "--poll-interval=5s", "--log-json"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args = %q, want %q", c.Args, wantArgs)
	}
	if c.Image != "ghcr.io/swell-autoscaler/swell:0.1.0" {
		t.Errorf("image = %q", c.Image)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != 8090 || ports["metrics"] != 9090 {
		t.Errorf("container ports = %v", ports)
	}
	if p := c.ReadinessProbe; p == nil || p.GRPC == nil || p.GRPC.Port != 8090 {
		t.Errorf("plaintext readiness probe = %+v, want gRPC health on 8090", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" {
		t.Errorf("liveness probe = %+v, want /healthz on the metrics port", p)
	}
	if len(c.VolumeMounts) != 0 || len(pod.Spec.Volumes) != 0 {
		t.Errorf("plaintext scaler mounts %v / %v", c.VolumeMounts, pod.Spec.Volumes)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext = %+v", sc)
	}

	// The Service selects exactly the scaler's pods and maps to real ports.
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not match the pod labels %v", svc.Spec.Selector, pod.Labels)
	}
	var ctrl appsv1.Deployment
	if !typed(t, objs, "Deployment", "swell", &ctrl) {
		t.Fatal("no controller Deployment")
	}
	if sel.Matches(labels.Set(ctrl.Spec.Template.Labels)) {
		t.Error("the scaler Service also selects the controller's pods")
	}
	ctrlSel := labels.SelectorFromSet(ctrl.Spec.Selector.MatchLabels)
	if ctrlSel.Matches(labels.Set(pod.Labels)) {
		t.Error("the controller Deployment's selector matches the scaler's pods")
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	if svcPorts["grpc"].Port != 8090 || svcPorts["metrics"].Port != 9090 {
		t.Errorf("Service ports = %+v", svc.Spec.Ports)
	}

	// No Kubernetes credentials: its own ServiceAccount, no token, no RBAC.
	if pod.Spec.ServiceAccountName != scalerName {
		t.Errorf("serviceAccountName = %q, want %q", pod.Spec.ServiceAccountName, scalerName)
	}
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the scaler pod mounts a ServiceAccount token")
	}
	var sa corev1.ServiceAccount
	if !typed(t, objs, "ServiceAccount", scalerName, &sa) {
		t.Fatal("no ServiceAccount for the scaler")
	}
	if a := sa.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the scaler's ServiceAccount automounts its token")
	}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, o := range ofKind(objs, kind) {
			var b rbacv1.ClusterRoleBinding // same shape as a RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatal(err)
			}
			for _, s := range b.Subjects {
				if s.Name == scalerName {
					t.Errorf("%s %s grants the scaler's ServiceAccount %s", kind, b.Name, b.RoleRef.Name)
				}
			}
		}
	}

	// Not creating the ServiceAccount needs a name, and uses it.
	_, err := renderErr(t, enabledScaler(map[string]any{"serviceAccount": map[string]any{"create": false}}))
	if err == nil || !strings.Contains(err.Error(), "externalScaler.serviceAccount.name") {
		t.Errorf("serviceAccount.create=false without a name: err = %v", err)
	}
	dep2, _, objs2 := scalerObjects(t, enabledScaler(map[string]any{"serviceAccount": map[string]any{"create": false, "name": "mine"}}))
	if dep2.Spec.Template.Spec.ServiceAccountName != "mine" || len(ofKind(objs2, "ServiceAccount")) != 1 {
		t.Errorf("existing ServiceAccount: pod uses %q, %d ServiceAccounts rendered", dep2.Spec.Template.Spec.ServiceAccountName, len(ofKind(objs2, "ServiceAccount")))
	}
}

// projectedFiles is what the pod's volumes put at each mounted path:
// path → "secret/key" (or "configmap/key").
func projectedFiles(t *testing.T, pod corev1.PodSpec) map[string]string {
	t.Helper()
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	files := map[string]string{}
	for _, v := range pod.Volumes {
		dir, ok := mounts[v.Name]
		if !ok {
			t.Errorf("volume %s is not mounted", v.Name)
			continue
		}
		switch {
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					t.Fatalf("volume %s projects a non-Secret source", v.Name)
				}
				if src.Secret.Optional != nil && *src.Secret.Optional {
					t.Errorf("volume %s: Secret %s is optional; the scaler cannot serve TLS without it", v.Name, src.Secret.Name)
				}
				for _, it := range src.Secret.Items {
					files[dir+"/"+it.Path] = src.Secret.Name + "/" + it.Key
				}
			}
		case v.Secret != nil:
			files[dir+"/*"] = v.Secret.SecretName + "/*"
		case v.ConfigMap != nil:
			files[dir+"/*"] = "configmap:" + v.ConfigMap.Name
		}
	}
	return files
}

func TestRenderExternalScalerTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tls      map[string]any
		wantArgs []string
		want     map[string]string // file → secret/key
	}{{
		name:     "server TLS",
		tls:      map[string]any{"secretName": "scaler-tls"},
		wantArgs: []string{"--tls-cert=/etc/swell/tls/tls.crt", "--tls-key=/etc/swell/tls/tls.key"},
		want:     map[string]string{"/etc/swell/tls/tls.crt": "scaler-tls/tls.crt", "/etc/swell/tls/tls.key": "scaler-tls/tls.key"},
	}, {
		name:     "mutual TLS, CA in the same Secret",
		tls:      map[string]any{"secretName": "scaler-tls", "clientCA": map[string]any{"enabled": true}},
		wantArgs: []string{"--tls-cert=/etc/swell/tls/tls.crt", "--tls-key=/etc/swell/tls/tls.key", "--tls-client-ca=/etc/swell/tls/client-ca.crt"},
		want: map[string]string{
			"/etc/swell/tls/tls.crt": "scaler-tls/tls.crt", "/etc/swell/tls/tls.key": "scaler-tls/tls.key",
			"/etc/swell/tls/client-ca.crt": "scaler-tls/ca.crt",
		},
	}, {
		name: "mutual TLS, CA and keys elsewhere",
		tls: map[string]any{
			"secretName": "scaler-tls", "certKey": "cert.pem", "keyKey": "key.pem", "mountPath": "/tls",
			"clientCA": map[string]any{"enabled": true, "secretName": "keda-ca", "key": "bundle.pem"},
		},
		wantArgs: []string{"--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key", "--tls-client-ca=/tls/client-ca.crt"},
		want:     map[string]string{"/tls/tls.crt": "scaler-tls/cert.pem", "/tls/tls.key": "scaler-tls/key.pem", "/tls/client-ca.crt": "keda-ca/bundle.pem"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dep, _, _ := scalerObjects(t, enabledScaler(map[string]any{"tls": tc.tls}))
			c := dep.Spec.Template.Spec.Containers[0]
			var tlsArgs []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--tls-") {
					tlsArgs = append(tlsArgs, a)
				}
			}
			if !slices.Equal(tlsArgs, tc.wantArgs) {
				t.Errorf("TLS args = %q, want %q", tlsArgs, tc.wantArgs)
			}
			files := projectedFiles(t, dep.Spec.Template.Spec)
			if len(files) != len(tc.want) {
				t.Errorf("mounted files = %v, want %v", files, tc.want)
			}
			for f, src := range tc.want {
				if files[f] != src {
					t.Errorf("%s comes from %q, want %q", f, files[f], src)
				}
			}
			// Every file an argument names is mounted.
			for _, a := range tlsArgs {
				if f := a[strings.Index(a, "=")+1:]; files[f] == "" {
					t.Errorf("%s names a file no volume provides", a)
				}
			}
			if p := c.ReadinessProbe; p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "grpc" || p.GRPC != nil {
				t.Errorf("TLS readiness probe = %+v, want tcpSocket on grpc (kubelet's gRPC probe is plaintext only)", p)
			}
		})
	}

	_, err := renderErr(t, enabledScaler(map[string]any{"tls": map[string]any{"clientCA": map[string]any{"enabled": true, "secretName": "ca"}}}))
	if err == nil || !strings.Contains(err.Error(), "externalScaler.tls.secretName") {
		t.Errorf("client CA without a server certificate: err = %v, want one naming externalScaler.tls.secretName", err)
	}
}

func TestRenderExternalScalerSecretsAndPlugins(t *testing.T) {
	plugins := map[string]any{
		"kafka":   map[string]any{"brokers": []any{"kafka:9092"}},
		"plugins": map[string]any{"plugin-tika": map[string]any{"groups": []any{"azul.prod.tika.live"}}},
	}
	dep, _, objs := scalerObjects(t, enabledScaler(map[string]any{
		"secrets": map[string]any{"secretName": "broker-creds"},
		"plugins": plugins,
	}))
	c := dep.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--secrets-dir=/etc/swell/secrets", "--plugins=/etc/swell/plugins/plugins.yaml"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	files := projectedFiles(t, dep.Spec.Template.Spec)
	if files["/etc/swell/secrets/*"] != "broker-creds/*" || files["/etc/swell/plugins/*"] != "configmap:swell-external-scaler-plugins" {
		t.Errorf("mounted files = %v", files)
	}
	var cm corev1.ConfigMap
	if !typed(t, objs, "ConfigMap", "swell-external-scaler-plugins", &cm) {
		t.Fatal("no plugins ConfigMap")
	}
	var got map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["plugins.yaml"]), &got); err != nil {
		t.Fatal(err)
	}
	want, _ := yaml.Marshal(plugins)
	gotY, _ := yaml.Marshal(got)
	if string(want) != string(gotY) {
		t.Errorf("plugins.yaml = %s, want %s", gotY, want)
	}
	if dep.Spec.Template.Annotations["checksum/plugins"] == "" {
		t.Error("a plugins change would not roll the pods (no checksum annotation)")
	}
}

// TestRenderMonitors: off by default; each monitor selects the metrics
// Service (or pod) of the controller and of the external scaler, and
// scrapes a port both name.
func TestRenderMonitors(t *testing.T) {
	mon := func(kind string, extra map[string]any) map[string]any {
		m := map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}, "interval": "15s"}
		for k, v := range extra {
			m[k] = v
		}
		vals := enabledScaler(nil)
		vals["metrics"] = map[string]any{kind: m}
		return vals
	}

	t.Run("ServiceMonitor", func(t *testing.T) {
		objs := objects(t, render(t, mon("serviceMonitor", nil)))
		sms := ofKind(objs, "ServiceMonitor")
		if len(sms) != 1 || len(ofKind(objs, "PodMonitor")) != 0 {
			t.Fatalf("%d ServiceMonitors, %d PodMonitors", len(sms), len(ofKind(objs, "PodMonitor")))
		}
		sm := sms[0]
		if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetLabels()["release"] != "prom" || sm.GetNamespace() != "swell-system" {
			t.Errorf("ServiceMonitor meta = %s %v %s", sm.GetAPIVersion(), sm.GetLabels(), sm.GetNamespace())
		}
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 {
			t.Fatalf("endpoints = %v", eps)
		}
		ep := eps[0].(map[string]any)
		if ep["port"] != "metrics" || ep["interval"] != "15s" || ep["honorLabels"] != true {
			t.Errorf("endpoint = %v", ep)
		}
		var selected []string
		for _, o := range ofKind(objs, "Service") {
			var svc corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &svc); err != nil {
				t.Fatal(err)
			}
			if !labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) {
				continue
			}
			selected = append(selected, svc.Name)
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
				t.Errorf("selected Service %s has no port named metrics", svc.Name)
			}
		}
		sort.Strings(selected)
		if !slices.Equal(selected, []string{"swell-external-scaler", "swell-metrics"}) {
			t.Errorf("ServiceMonitor selects Services %v", selected)
		}

		_, err := renderErr(t, map[string]any{"metrics": map[string]any{"service": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}}})
		if err == nil || !strings.Contains(err.Error(), "metrics.service.enabled") {
			t.Errorf("ServiceMonitor without the metrics Service: err = %v", err)
		}
	})

	t.Run("PodMonitor", func(t *testing.T) {
		objs := objects(t, render(t, mon("podMonitor", map[string]any{"honorLabels": false})))
		pms := ofKind(objs, "PodMonitor")
		if len(pms) != 1 || len(ofKind(objs, "ServiceMonitor")) != 0 {
			t.Fatalf("%d PodMonitors, %d ServiceMonitors", len(pms), len(ofKind(objs, "ServiceMonitor")))
		}
		pm := pms[0]
		sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" || eps[0].(map[string]any)["honorLabels"] != false {
			t.Fatalf("podMetricsEndpoints = %v", eps)
		}
		var selected []string
		for _, o := range ofKind(objs, "Deployment") {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
				t.Fatal(err)
			}
			if !labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			selected = append(selected, d.Name)
			if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
				t.Errorf("selected pods of %s have no container port named metrics", d.Name)
			}
		}
		sort.Strings(selected)
		if !slices.Equal(selected, []string{"swell", "swell-external-scaler"}) {
			t.Errorf("PodMonitor selects the pods of %v", selected)
		}
	})

	t.Run("both", func(t *testing.T) {
		_, err := renderErr(t, map[string]any{"metrics": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true}, "podMonitor": map[string]any{"enabled": true},
		}})
		if err == nil || !strings.Contains(err.Error(), "only one of metrics.serviceMonitor.enabled and metrics.podMonitor.enabled") {
			t.Errorf("both monitors: err = %v", err)
		}
	})
}

// TestRenderExternalScalerEgressAllow: each externalScaler.egressAllow
// entry becomes one --egress-allow flag, before extraArgs; none by default,
// so the scaler keeps refusing loopback and private broker addresses.
func TestRenderExternalScalerEgressAllow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow []any
		want  []string
	}{
		{name: "default", want: nil},
		{name: "one CIDR", allow: []any{"127.0.0.1/32"}, want: []string{"--egress-allow=127.0.0.1/32"}},
		{
			name:  "CIDR and host:port",
			allow: []any{"10.96.0.0/12", "redis.queues.svc:6379"},
			want:  []string{"--egress-allow=10.96.0.0/12", "--egress-allow=redis.queues.svc:6379"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]any{"extraArgs": []any{"--log-json"}}
			if tc.allow != nil {
				extra["egressAllow"] = tc.allow
			}
			dep, _, _ := scalerObjects(t, enabledScaler(extra))
			args := dep.Spec.Template.Spec.Containers[0].Args
			var got []string
			for _, a := range args {
				if strings.HasPrefix(a, "--egress-allow") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("egress args = %q, want %q (all args %q)", got, tc.want, args)
			}
			if args[len(args)-1] != "--log-json" {
				t.Errorf("extraArgs no longer last: %q", args)
			}
		})
	}
}
