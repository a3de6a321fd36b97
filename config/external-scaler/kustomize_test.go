// Package externalscaler_test checks that config/external-scaler (the
// kustomize base and its tls/mtls components) installs the same external
// scaler as the Helm chart's externalScaler values.
package externalscaler_test

import (
	"os"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// decodeFile reads a one-object manifest strictly into obj.
func decodeFile(t *testing.T, path string, obj any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// withComponent applies a component's Deployment patch to the base the way
// kustomize does with a strategic-merge patch.
func withComponent(t *testing.T, base appsv1.Deployment, component string) appsv1.Deployment {
	t.Helper()
	if component == "" {
		return base
	}
	var k struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Patches    []struct {
			Target map[string]string `json:"target"`
			Patch  string            `json:"patch"`
		} `json:"patches"`
	}
	decodeFile(t, "components/"+component+"/kustomization.yaml", &k)
	if k.Kind != "Component" || len(k.Patches) != 1 || k.Patches[0].Target["kind"] != "Deployment" || k.Patches[0].Target["name"] != base.Name {
		t.Fatalf("components/%s: want one Component patch on Deployment %s, got %+v", component, base.Name, k)
	}
	patch, err := yaml.YAMLToJSON([]byte(k.Patches[0].Patch))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := yaml.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	origJSON, err := yaml.YAMLToJSON(orig)
	if err != nil {
		t.Fatal(err)
	}
	out, err := strategicpatch.StrategicMergePatch(origJSON, patch, appsv1.Deployment{})
	if err != nil {
		t.Fatalf("components/%s: %v", component, err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(out, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// chartObjects renders charts/swell with vals into objects by kind.
func chartObjects(t *testing.T, vals map[string]any) map[string][]byte {
	t.Helper()
	ch, err := loader.Load("../../charts/swell")
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "swell", Namespace: "swell-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, v)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string][]byte{}
	for _, doc := range strings.Split(out["swell/templates/external-scaler.yaml"], "\n---") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "" {
			objs[meta.Kind] = []byte(doc)
		}
	}
	return objs
}

func TestSameAsChart(t *testing.T) {
	var base appsv1.Deployment
	decodeFile(t, "deployment.yaml", &base)
	const secret = "swell-external-scaler-tls"
	for _, tc := range []struct {
		component string
		tls       map[string]any
	}{
		{"", map[string]any{}},
		{"tls", map[string]any{"secretName": secret}},
		{"mtls", map[string]any{"secretName": secret, "clientCA": map[string]any{"enabled": true}}},
	} {
		t.Run("component="+tc.component, func(t *testing.T) {
			got := withComponent(t, base, tc.component)
			objs := chartObjects(t, map[string]any{"externalScaler": map[string]any{"enabled": true, "tls": tc.tls}})
			var want appsv1.Deployment
			if err := yaml.UnmarshalStrict(objs["Deployment"], &want); err != nil {
				t.Fatal(err)
			}
			// Helm adds its instance label; everything else must match.
			if !labels.SelectorFromSet(got.Spec.Template.Labels).Matches(labels.Set(want.Spec.Template.Labels)) {
				t.Errorf("pod labels %v are not a subset of the chart's %v", got.Spec.Template.Labels, want.Spec.Template.Labels)
			}
			if !equality.Semantic.DeepEqual(got.Spec.Template.Spec, want.Spec.Template.Spec) {
				a, _ := yaml.Marshal(got.Spec.Template.Spec)
				b, _ := yaml.Marshal(want.Spec.Template.Spec)
				t.Errorf("pod spec differs from the chart's\nkustomize:\n%s\nchart:\n%s", a, b)
			}
			if *got.Spec.Replicas != *want.Spec.Replicas || got.Name != want.Name || got.Namespace != want.Namespace {
				t.Errorf("kustomize %s/%s ×%d, chart %s/%s ×%d", got.Namespace, got.Name, *got.Spec.Replicas, want.Namespace, want.Name, *want.Spec.Replicas)
			}
		})
	}

	var svc, chartSvc corev1.Service
	decodeFile(t, "service.yaml", &svc)
	if err := yaml.UnmarshalStrict(chartObjects(t, map[string]any{"externalScaler": map[string]any{"enabled": true}})["Service"], &chartSvc); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(svc.Spec.Ports, chartSvc.Spec.Ports) || svc.Name != chartSvc.Name || svc.Spec.Type != chartSvc.Spec.Type {
		t.Errorf("Service %s %+v differs from the chart's %s %+v", svc.Name, svc.Spec.Ports, chartSvc.Name, chartSvc.Spec.Ports)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(base.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, base.Spec.Template.Labels)
	}

	var sa corev1.ServiceAccount
	decodeFile(t, "service_account.yaml", &sa)
	if sa.Name != base.Spec.Template.Spec.ServiceAccountName || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s (automount %v) for pods running as %s", sa.Name, sa.AutomountServiceAccountToken, base.Spec.Template.Spec.ServiceAccountName)
	}
}
