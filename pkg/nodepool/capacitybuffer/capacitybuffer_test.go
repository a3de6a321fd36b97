package capacitybuffer

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

func pod(phase corev1.PodPhase, deleting bool) *corev1.Pod {
	p := &corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
	if deleting {
		p.DeletionTimestamp = &metav1.Time{}
	}
	return p
}

func TestWanted(t *testing.T) {
	ten := func(phase corev1.PodPhase) []*corev1.Pod {
		out := make([]*corev1.Pod, 10)
		for i := range out {
			out[i] = pod(phase, false)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		b    policy.Buffer
		pods []*corev1.Pod
		want int32
	}{
		{"absolute, no servers", policy.Buffer{Absolute: 4}, nil, 4},
		{"percent of nothing is nothing", policy.Buffer{Percent: 20}, nil, 0},
		{"percent rounds up", policy.Buffer{Percent: 25}, ten(corev1.PodRunning), 3},
		{"pending servers hold slots too", policy.Buffer{Percent: 50}, ten(corev1.PodPending), 5},
		{"larger of absolute and percent", policy.Buffer{Absolute: 4, Percent: 20}, ten(corev1.PodRunning), 4},
		{"finished and deleting pods hold none", policy.Buffer{Percent: 100}, []*corev1.Pod{
			pod(corev1.PodRunning, false), pod(corev1.PodSucceeded, false), pod(corev1.PodFailed, false), pod(corev1.PodRunning, true),
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Wanted(tc.b, tc.pods); got != tc.want {
				t.Errorf("Wanted = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPodTemplateIsOneSlot(t *testing.T) {
	s := Spec{Namespace: "games", Name: "pool", Slot: policy.Resources{"cpu": 1500, "memory": 2 << 30, "nvidia.com/gpu": 1, "zero": 0},
		NodeSelector: map[string]string{"role": "servers"}, Replicas: 4}
	pt := PodTemplate(s)
	if pt.Name != "pool-slot" || pt.Namespace != "games" || pt.Labels[ManagedByLabel] != ManagedByValue {
		t.Fatalf("metadata %+v", pt.ObjectMeta)
	}
	if len(pt.Template.Spec.Containers) != 1 {
		t.Fatalf("containers %d", len(pt.Template.Spec.Containers))
	}
	req := pt.Template.Spec.Containers[0].Resources.Requests
	want := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("2Gi"), "nvidia.com/gpu": resource.MustParse("1"),
	}
	if len(req) != len(want) {
		t.Fatalf("requests %v, want %v", req, want)
	}
	for k, q := range want {
		if got := req[k]; got.Cmp(q) != 0 {
			t.Errorf("request %s = %s, want %s", k, got.String(), q.String())
		}
	}
	if pt.Template.Spec.NodeSelector["role"] != "servers" {
		t.Errorf("node selector %v", pt.Template.Spec.NodeSelector)
	}
	s.NodeSelector["role"] = "changed"
	if pt.Template.Spec.NodeSelector["role"] != "servers" {
		t.Error("the template shares the caller's node selector map")
	}
}

func TestBufferObject(t *testing.T) {
	b, err := json.Marshal(Buffer(Spec{Namespace: "games", Name: "pool", Slot: policy.Resources{"cpu": 1000}, Replicas: 7}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"autoscaling.x-k8s.io/v1beta1","kind":"CapacityBuffer","metadata":{"labels":{"app.kubernetes.io/managed-by":"swell"},"name":"pool","namespace":"games"},"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"pool-slot"},"replicas":7}}`
	if string(b) != want {
		t.Errorf("buffer\n%s\nwant\n%s", b, want)
	}
}

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Spec
		want string
	}{
		{"ok", Spec{Namespace: "a", Name: "b", Slot: policy.Resources{"cpu": 1}}, ""},
		{"no name", Spec{Namespace: "a", Slot: policy.Resources{"cpu": 1}}, "namespace and name"},
		{"no slot", Spec{Namespace: "a", Name: "b"}, "slot shape is empty"},
		{"negative", Spec{Namespace: "a", Name: "b", Slot: policy.Resources{"cpu": 1}, Replicas: -1}, "replicas -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLiveBufferMatches(t *testing.T) {
	want := specOf(Spec{Name: "pool", Replicas: 3})
	decode := func(s string) liveBuffer {
		var l liveBuffer
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name, live string
		match      bool
	}{
		{"same", `{"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"pool-slot"},"replicas":3}}`, true},
		{"other replicas", `{"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"pool-slot"},"replicas":2}}`, false},
		{"no replicas", `{"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"pool-slot"}}}`, false},
		{"someone added limits", `{"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"pool-slot"},"replicas":3,"limits":{"cpu":"2"}}}`, false},
		{"other template", `{"spec":{"provisioningStrategy":"buffer.x-k8s.io/active-capacity","podTemplateRef":{"name":"x"},"replicas":3}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decode(tc.live).matches(want); got != tc.match {
				t.Errorf("matches = %v, want %v", got, tc.match)
			}
		})
	}
}

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		in, ns, name string
		ok           bool
	}{
		{"games/servers", "games", "servers", true},
		{"servers", "default", "servers", true},
		{"Games/servers", "", "", false},
		{"games/", "", "", false},
		{"a/b/c", "", "", false},
		{"games/" + strings.Repeat("x", 250), "", "", false},
	} {
		ns, name, err := ParseName(tc.in)
		if (err == nil) != tc.ok || ns != tc.ns || name != tc.name {
			t.Errorf("ParseName(%q) = %q, %q, %v", tc.in, ns, name, err)
		}
	}
}
