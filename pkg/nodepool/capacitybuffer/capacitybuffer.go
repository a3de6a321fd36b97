// Package capacitybuffer publishes a node pool's slot buffer as a SIG
// Autoscaling CapacityBuffer (autoscaling.x-k8s.io/v1beta1, as served by
// the Cluster Autoscaler from 1.36 and read by Karpenter), so clusters
// whose nodes belong to Karpenter or the Cluster Autoscaler keep the same
// headroom a Swell node pool would: one buffer chunk per free server slot
// wanted, each chunk shaped like one server through a PodTemplate.
//
// Swell owns the two objects it writes (labelled
// app.kubernetes.io/managed-by=swell) and refuses to overwrite ones it did
// not create. It writes only when the desired buffer changes.
package capacitybuffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// The CapacityBuffer API Swell targets.
const (
	Group   = "autoscaling.x-k8s.io"
	Version = "v1beta1"
	Kind    = "CapacityBuffer"
	// ActiveCapacity is the provisioning strategy under which node
	// autoscalers keep room for the buffer's chunks.
	ActiveCapacity = "buffer.x-k8s.io/active-capacity"
)

// ManagedBy marks the objects Swell writes.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "swell"
)

// PlaceholderImage is the image of the slot PodTemplate's one container.
// Node autoscalers read its requests to size capacity; nothing runs it.
const PlaceholderImage = "registry.k8s.io/pause:3.10"

// Spec is the buffer to publish.
type Spec struct {
	// Namespace and Name of the CapacityBuffer; the PodTemplate gets the
	// same name with a "-slot" suffix.
	Namespace, Name string
	// Slot is one server's footprint (cpu in millicores, memory in bytes,
	// other resources in units), as in the node-pool config.
	Slot policy.Resources
	// NodeSelector keeps the chunks on the pool's nodes (nil: anywhere).
	NodeSelector map[string]string
	// Replicas is the number of free slots wanted.
	Replicas int32
}

// TemplateName is the PodTemplate a Spec publishes.
func (s Spec) TemplateName() string { return s.Name + "-slot" }

// Validate names the field that makes a Spec unpublishable.
func (s Spec) Validate() error {
	var errs []error
	if s.Namespace == "" || s.Name == "" {
		errs = append(errs, errors.New("capacity buffer: namespace and name are required"))
	}
	if len(s.Slot) == 0 {
		errs = append(errs, errors.New("capacity buffer: the slot shape is empty, so a chunk would reserve nothing"))
	}
	if s.Replicas < 0 {
		errs = append(errs, fmt.Errorf("capacity buffer: replicas %d must be >= 0", s.Replicas))
	}
	return errors.Join(errs...)
}

// PodTemplate is the slot-shaped PodTemplate of s: one container that
// requests (and is limited to) one slot.
func PodTemplate(s Spec) *corev1.PodTemplate {
	req := Requests(s.Slot)
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: s.TemplateName(), Namespace: s.Namespace, Labels: managed()},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: managed()},
			Spec: corev1.PodSpec{
				NodeSelector: maps.Clone(s.NodeSelector),
				Containers: []corev1.Container{{
					Name: "slot", Image: PlaceholderImage,
					Resources: corev1.ResourceRequirements{Requests: req, Limits: req.DeepCopy()},
				}},
			},
		},
	}
}

// Requests turns a slot into a resource list: cpu from millicores, memory
// and the rest from units.
func Requests(slot policy.Resources) corev1.ResourceList {
	out := corev1.ResourceList{}
	names := make([]string, 0, len(slot))
	for k := range slot {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := slot[k]
		if v <= 0 {
			continue
		}
		switch k {
		case "cpu":
			out[corev1.ResourceCPU] = *resource.NewMilliQuantity(v, resource.DecimalSI)
		case "memory":
			out[corev1.ResourceMemory] = *resource.NewQuantity(v, resource.BinarySI)
		default:
			out[corev1.ResourceName(k)] = *resource.NewQuantity(v, resource.DecimalSI)
		}
	}
	return out
}

// bufferSpec is the CapacityBuffer spec Swell sets: the slot PodTemplate
// times Replicas, under the active-capacity strategy.
type bufferSpec struct {
	ProvisioningStrategy string `json:"provisioningStrategy"`
	PodTemplateRef       struct {
		Name string `json:"name"`
	} `json:"podTemplateRef"`
	Replicas int32 `json:"replicas"`
}

// Buffer is the CapacityBuffer object of s, ready to create.
func Buffer(s Spec) map[string]any {
	return map[string]any{
		"apiVersion": Group + "/" + Version,
		"kind":       Kind,
		"metadata":   map[string]any{"name": s.Name, "namespace": s.Namespace, "labels": map[string]any{ManagedByLabel: ManagedByValue}},
		"spec":       specOf(s),
	}
}

func specOf(s Spec) bufferSpec {
	var b bufferSpec
	b.ProvisioningStrategy = ActiveCapacity
	b.PodTemplateRef.Name = s.TemplateName()
	b.Replicas = s.Replicas
	return b
}

func managed() map[string]string { return map[string]string{ManagedByLabel: ManagedByValue} }

// Publisher writes a Spec as a PodTemplate and a CapacityBuffer. It
// remembers what it last published and makes no request while the Spec
// stays the same; Forget makes the next Publish re-read both objects.
type Publisher struct {
	client kubernetes.Interface
	rest   rest.Interface
	last   *Spec
}

// NewPublisher uses client for the PodTemplate and the clientset's own
// REST client (same host, credentials and rate limits) for the
// CapacityBuffer, so Swell links no CapacityBuffer client library.
func NewPublisher(client kubernetes.Interface) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("capacity buffer: a Kubernetes client is required")
	}
	rc := client.Discovery().RESTClient()
	if rc == nil {
		return nil, errors.New("capacity buffer: the Kubernetes client has no REST client")
	}
	return &Publisher{client: client, rest: rc}, nil
}

// Forget drops the memory of the last publish, so the next one checks the
// live objects again (a periodic resync repairs outside edits this way).
func (p *Publisher) Forget() { p.last = nil }

// Publish makes the cluster hold s. It reports whether it wrote anything.
func (p *Publisher) Publish(ctx context.Context, s Spec) (bool, error) {
	if err := s.Validate(); err != nil {
		return false, err
	}
	if p.last != nil && equal(*p.last, s) {
		return false, nil
	}
	wroteT, err := p.ensureTemplate(ctx, s)
	if err != nil {
		return wroteT, err
	}
	wroteB, err := p.ensureBuffer(ctx, s)
	if err != nil {
		return wroteT || wroteB, err
	}
	c := s
	c.Slot, c.NodeSelector = maps.Clone(s.Slot), maps.Clone(s.NodeSelector)
	p.last = &c
	return wroteT || wroteB, nil
}

func equal(a, b Spec) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Replicas == b.Replicas &&
		maps.Equal(a.Slot, b.Slot) && maps.Equal(a.NodeSelector, b.NodeSelector)
}

func (p *Publisher) ensureTemplate(ctx context.Context, s Spec) (bool, error) {
	want := PodTemplate(s)
	api := p.client.CoreV1().PodTemplates(s.Namespace)
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("capacity buffer: create PodTemplate %s/%s: %w", s.Namespace, want.Name, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("capacity buffer: read PodTemplate %s/%s: %w", s.Namespace, want.Name, err)
	}
	if cur.Labels[ManagedByLabel] != ManagedByValue {
		return false, fmt.Errorf("capacity buffer: PodTemplate %s/%s exists and is not managed by Swell (no %s=%s label); not overwriting it", s.Namespace, want.Name, ManagedByLabel, ManagedByValue)
	}
	if equality.Semantic.DeepEqual(cur.Template.Spec.NodeSelector, want.Template.Spec.NodeSelector) &&
		len(cur.Template.Spec.Containers) == 1 &&
		equality.Semantic.DeepEqual(cur.Template.Spec.Containers[0].Resources, want.Template.Spec.Containers[0].Resources) {
		return false, nil
	}
	cur.Template = want.Template
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("capacity buffer: update PodTemplate %s/%s: %w", s.Namespace, want.Name, err)
	}
	return true, nil
}

// liveBuffer is the part of a CapacityBuffer Swell reads back.
type liveBuffer struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		ProvisioningStrategy string `json:"provisioningStrategy"`
		PodTemplateRef       *struct {
			Name string `json:"name"`
		} `json:"podTemplateRef"`
		ScalableRef json.RawMessage `json:"scalableRef"`
		Replicas    *int32          `json:"replicas"`
		Percentage  *int32          `json:"percentage"`
		Limits      json.RawMessage `json:"limits"`
	} `json:"spec"`
}

func (l liveBuffer) matches(want bufferSpec) bool {
	return l.Spec.ProvisioningStrategy == want.ProvisioningStrategy && l.Spec.PodTemplateRef != nil &&
		l.Spec.PodTemplateRef.Name == want.PodTemplateRef.Name && l.Spec.Replicas != nil && *l.Spec.Replicas == want.Replicas &&
		len(l.Spec.ScalableRef) == 0 && l.Spec.Percentage == nil && len(l.Spec.Limits) == 0
}

func (p *Publisher) bufferPath(s Spec, name string) string {
	path := fmt.Sprintf("/apis/%s/%s/namespaces/%s/capacitybuffers", Group, Version, s.Namespace)
	if name != "" {
		path += "/" + name
	}
	return path
}

func (p *Publisher) ensureBuffer(ctx context.Context, s Spec) (bool, error) {
	raw, err := p.rest.Get().AbsPath(p.bufferPath(s, s.Name)).SetHeader("Accept", "application/json").Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return p.createBuffer(ctx, s)
	}
	if err != nil {
		return false, fmt.Errorf("capacity buffer: read %s %s/%s (is the %s CRD at %s installed?): %w", Kind, s.Namespace, s.Name, Group, Version, err)
	}
	var cur liveBuffer
	if err := json.Unmarshal(raw, &cur); err != nil {
		return false, fmt.Errorf("capacity buffer: decode %s %s/%s: %w", Kind, s.Namespace, s.Name, err)
	}
	if cur.Metadata.Labels[ManagedByLabel] != ManagedByValue {
		return false, fmt.Errorf("capacity buffer: %s %s/%s exists and is not managed by Swell (no %s=%s label); not overwriting it", Kind, s.Namespace, s.Name, ManagedByLabel, ManagedByValue)
	}
	want := specOf(s)
	if cur.matches(want) {
		return false, nil
	}
	// A merge patch sets Swell's fields and clears the ones that would
	// change the buffer's meaning (scalableRef, percentage, limits).
	patch := map[string]any{"spec": map[string]any{
		"provisioningStrategy": want.ProvisioningStrategy, "podTemplateRef": want.PodTemplateRef, "replicas": want.Replicas,
		"scalableRef": nil, "percentage": nil, "limits": nil,
	}}
	body, err := json.Marshal(patch)
	if err != nil {
		return false, err
	}
	err = p.rest.Patch("application/merge-patch+json").AbsPath(p.bufferPath(s, s.Name)).
		SetHeader("Accept", "application/json").Body(body).Do(ctx).Error()
	if err != nil {
		return false, fmt.Errorf("capacity buffer: update %s %s/%s to %d replicas: %w", Kind, s.Namespace, s.Name, s.Replicas, err)
	}
	return true, nil
}

func (p *Publisher) createBuffer(ctx context.Context, s Spec) (bool, error) {
	body, err := json.Marshal(Buffer(s))
	if err != nil {
		return false, err
	}
	err = p.rest.Post().AbsPath(p.bufferPath(s, "")).
		SetHeader("Accept", "application/json").SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
	if err != nil {
		return false, fmt.Errorf("capacity buffer: create %s %s/%s: %w", Kind, s.Namespace, s.Name, err)
	}
	return true, nil
}

// ParseName splits "namespace/name" (a bare name means namespace
// "default") and checks both are valid object names.
func ParseName(s string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		ns, n = "default", ns
	}
	for _, part := range []string{ns, n} {
		if msgs := validation.IsDNS1123Subdomain(part); len(msgs) > 0 || strings.Contains(part, "/") {
			return "", "", fmt.Errorf("%q: want <namespace>/<name> of lower-case DNS names", s)
		}
	}
	if len(n)+len("-slot") > validation.DNS1123SubdomainMaxLength {
		return "", "", fmt.Errorf("%q: the name is too long to add \"-slot\" for its PodTemplate", s)
	}
	return ns, n, nil
}
