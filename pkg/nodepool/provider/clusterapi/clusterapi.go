// Package clusterapi is a node-pool provider for Cluster API: the pool is
// one MachineDeployment. It grows the pool through the MachineDeployment's
// scale subresource and deletes exactly the nodes the scaler chose by
// marking their Machines with cluster.x-k8s.io/delete-machine before
// lowering the replica count, so the MachineSet controller removes those
// Machines first and never one that still runs a server.
//
// It talks to the API server with plain JSON requests on a client-go REST
// client (the clientset's own), reading only the handful of fields it
// needs, so Swell does not link the Cluster API module. The fields it reads
// exist unchanged in cluster.x-k8s.io v1beta1 and v1beta2; the version is
// the one the API server prefers unless the config names one.
package clusterapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Group is the Cluster API group.
const Group = "cluster.x-k8s.io"

// Cluster API labels and annotations this provider reads or writes.
const (
	// DeleteMachineAnnotation marks a Machine the MachineSet controller
	// must remove first when its replica count goes down.
	DeleteMachineAnnotation = "cluster.x-k8s.io/delete-machine"
	// MachineAnnotation is set on a Node by Cluster API: the name of its
	// Machine (in the MachineDeployment's namespace).
	MachineAnnotation = "cluster.x-k8s.io/machine"
	// DeploymentNameLabel is set on every Machine of a MachineDeployment.
	DeploymentNameLabel = "cluster.x-k8s.io/deployment-name"
)

// Capacity annotations on a MachineDeployment, as the Cluster Autoscaler
// reads them to scale from zero; Swell reads the same ones to size growth
// before the pool's first node exists.
const (
	CapacityCPU      = "capacity.cluster-autoscaler.kubernetes.io/cpu"
	CapacityMemory   = "capacity.cluster-autoscaler.kubernetes.io/memory"
	CapacityMaxPods  = "capacity.cluster-autoscaler.kubernetes.io/maxPods"
	CapacityGPUType  = "capacity.cluster-autoscaler.kubernetes.io/gpu-type"
	CapacityGPUCount = "capacity.cluster-autoscaler.kubernetes.io/gpu-count"
)

// defaultMaxPods is the pod capacity assumed when capacity annotations
// give cpu or memory but no maxPods (the Kubernetes default kubelet limit).
const defaultMaxPods = 110

// Config names the MachineDeployment that is the pool.
type Config struct {
	// REST is a client-go REST client for the cluster that holds the
	// Cluster API objects (the clientset's Discovery().RESTClient() works:
	// every request here sets its own path and JSON headers).
	REST rest.Interface
	// Namespace and Name are the MachineDeployment's.
	Namespace, Name string
	// ClusterName, when set, must equal the MachineDeployment's
	// spec.clusterName, so a pool name reused across clusters cannot
	// make Swell scale the wrong one.
	ClusterName string
	// Version is the cluster.x-k8s.io version to use (v1beta2, v1beta1);
	// empty asks the API server for its preferred version.
	Version string
	// Now stamps the delete-machine annotation; nil is time.Now.
	Now func() time.Time
}

// ParsePoolName splits node-pool-name "namespace/name" (a bare name means
// namespace "default").
func ParsePoolName(s string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		ns, n = "default", ns
	}
	if ns == "" || n == "" || strings.Contains(n, "/") {
		return "", "", fmt.Errorf("%q: want <namespace>/<MachineDeployment name> or <MachineDeployment name>", s)
	}
	return ns, n, nil
}

// Provider scales one MachineDeployment.
type Provider struct {
	rest        rest.Interface
	ns, name    string
	clusterName string
	version     string
	now         func() time.Time
	template    policy.Resources
}

// New checks that the MachineDeployment exists (and belongs to
// ClusterName when set) and reads its capacity annotations.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.REST == nil {
		return nil, errors.New("clusterapi provider: a Kubernetes REST client is required")
	}
	if cfg.Namespace == "" || cfg.Name == "" {
		return nil, errors.New("clusterapi provider: the MachineDeployment's namespace and name are required")
	}
	p := &Provider{rest: cfg.REST, ns: cfg.Namespace, name: cfg.Name, clusterName: cfg.ClusterName, version: cfg.Version, now: cfg.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.version == "" {
		v, err := p.preferredVersion(ctx)
		if err != nil {
			return nil, err
		}
		p.version = v
	}
	md, err := p.machineDeployment(ctx)
	if err != nil {
		return nil, err
	}
	if p.clusterName != "" && md.Spec.ClusterName != p.clusterName {
		return nil, fmt.Errorf("clusterapi provider: MachineDeployment %s/%s belongs to cluster %q, not %q (cluster-name)", p.ns, p.name, md.Spec.ClusterName, p.clusterName)
	}
	tmpl, err := TemplateFromAnnotations(md.Metadata.Annotations)
	if err != nil {
		return nil, fmt.Errorf("clusterapi provider: MachineDeployment %s/%s: %w", p.ns, p.name, err)
	}
	p.template = tmpl
	return p, nil
}

// String names the pool in events and logs.
func (p *Provider) String() string {
	return fmt.Sprintf("MachineDeployment %s/%s (%s/%s)", p.ns, p.name, Group, p.version)
}

// Version is the cluster.x-k8s.io version in use.
func (p *Provider) Version() string { return p.version }

// Template is a new node's allocatable from the MachineDeployment's
// capacity annotations; nil when it has none.
func (p *Provider) Template() policy.Resources {
	if p.template == nil {
		return nil
	}
	out := make(policy.Resources, len(p.template))
	for k, v := range p.template {
		out[k] = v
	}
	return out
}

// TemplateFromAnnotations reads the Cluster Autoscaler's capacity
// annotations: nil when neither cpu nor memory is given.
func TemplateFromAnnotations(ann map[string]string) (policy.Resources, error) {
	cpu, mem := ann[CapacityCPU], ann[CapacityMemory]
	if cpu == "" && mem == "" {
		return nil, nil
	}
	out := policy.Resources{"pods": defaultMaxPods}
	var errs []error
	parse := func(key, name string) {
		v := strings.TrimSpace(ann[key])
		if v == "" {
			return
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %q is not a quantity", key, v))
			return
		}
		if name == "cpu" {
			out[name] = q.MilliValue()
		} else {
			out[name] = q.Value()
		}
	}
	parse(CapacityCPU, "cpu")
	parse(CapacityMemory, "memory")
	parse(CapacityMaxPods, "pods")
	if gpu := strings.TrimSpace(ann[CapacityGPUType]); gpu != "" {
		parse(CapacityGPUCount, gpu)
	}
	return out, errors.Join(errs...)
}

// Size is the MachineDeployment's spec.replicas: the machines it wants,
// including those still being created.
func (p *Provider) Size(ctx context.Context) (int, error) {
	s, err := p.getScale(ctx)
	if err != nil {
		return 0, err
	}
	return int(s.Spec.Replicas), nil
}

// Resize raises spec.replicas to n through the scale subresource. It never
// lowers it: shrinking is Delete on chosen nodes.
func (p *Provider) Resize(ctx context.Context, n int) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := p.getScale(ctx)
		if err != nil {
			return err
		}
		if int(s.Spec.Replicas) >= n {
			return nil
		}
		s.Spec.Replicas = int32(n)
		return p.putScale(ctx, s)
	})
	if err != nil {
		return fmt.Errorf("clusterapi provider: scale %s to %d: %w", p, n, err)
	}
	return nil
}

// Delete marks each node's Machine with the delete-machine annotation,
// then lowers spec.replicas by the number marked, in one scale write.
// A node whose Machine is not found in this MachineDeployment is an error
// and lowers nothing. A Machine already being deleted is skipped (its
// replica is already on its way out), and so is one already marked while
// a scale-down is still outstanding (more Machines than spec.replicas), so
// asking twice for the same node never removes two Machines. If the scale
// write fails the marks are removed again, so a later, unrelated
// scale-down cannot pick them.
func (p *Provider) Delete(ctx context.Context, nodes []*corev1.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	machines, err := p.listMachines(ctx)
	if err != nil {
		return err
	}
	pending, err := p.pendingRemovals(ctx, machines)
	if err != nil {
		return err
	}
	var marked []string
	var errs []error
	for _, n := range nodes {
		m, err := machineFor(n, machines)
		if err != nil {
			errs = append(errs, fmt.Errorf("clusterapi provider: %s: %w", p, err))
			continue
		}
		if m.Metadata.DeletionTimestamp != "" {
			continue
		}
		if _, ok := m.Metadata.Annotations[DeleteMachineAnnotation]; ok && pending > 0 {
			// Marked by an earlier call whose scale-down the MachineSet
			// controller has not carried out yet: lowering the count
			// again would remove a second Machine.
			pending--
			continue
		}
		if err := p.annotate(ctx, m.Metadata.Name, p.now().UTC().Format(time.RFC3339)); err != nil {
			errs = append(errs, fmt.Errorf("clusterapi provider: mark Machine %s/%s of node %s for deletion: %w", p.ns, m.Metadata.Name, n.Name, err))
			continue
		}
		marked = append(marked, m.Metadata.Name)
	}
	if len(marked) == 0 {
		return errors.Join(errs...)
	}
	if err := p.scaleDown(ctx, len(marked)); err != nil {
		errs = append(errs, fmt.Errorf("clusterapi provider: scale %s down by %d: %w", p, len(marked), err))
		for _, name := range marked {
			if uerr := p.annotate(ctx, name, ""); uerr != nil {
				errs = append(errs, fmt.Errorf("clusterapi provider: unmark Machine %s/%s: %w", p.ns, name, uerr))
			}
		}
	}
	return errors.Join(errs...)
}

// pendingRemovals is how many Machines a scale-down already asked for
// and the MachineSet controller has not started deleting: the Machines
// not being deleted minus spec.replicas, or 0.
func (p *Provider) pendingRemovals(ctx context.Context, machines []machine) (int, error) {
	s, err := p.getScale(ctx)
	if err != nil {
		return 0, err
	}
	live := 0
	for _, m := range machines {
		if m.Metadata.DeletionTimestamp == "" {
			live++
		}
	}
	return max(0, live-int(s.Spec.Replicas)), nil
}

// machineFor finds a node's Machine: by the node's machine annotation,
// else by the Machine's status.nodeRef.
func machineFor(n *corev1.Node, machines []machine) (machine, error) {
	if name := n.Annotations[MachineAnnotation]; name != "" {
		for _, m := range machines {
			if m.Metadata.Name == name {
				return m, nil
			}
		}
	}
	for _, m := range machines {
		if m.Status.NodeRef != nil && m.Status.NodeRef.Name == n.Name {
			return m, nil
		}
	}
	return machine{}, fmt.Errorf("node %s has no Machine in this MachineDeployment (no %s annotation naming one, no Machine whose status.nodeRef is the node)", n.Name, MachineAnnotation)
}

// scaleDown lowers spec.replicas by k, guarded by the scale's
// resourceVersion and retried on conflict.
func (p *Provider) scaleDown(ctx context.Context, k int) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := p.getScale(ctx)
		if err != nil {
			return err
		}
		if int(s.Spec.Replicas) < k {
			return fmt.Errorf("spec.replicas is %d, cannot remove %d", s.Spec.Replicas, k)
		}
		s.Spec.Replicas -= int32(k)
		return p.putScale(ctx, s)
	})
}

// The few fields read from Cluster API objects.
type (
	objectMeta struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace,omitempty"`
		ResourceVersion   string            `json:"resourceVersion,omitempty"`
		DeletionTimestamp string            `json:"deletionTimestamp,omitempty"`
		Labels            map[string]string `json:"labels,omitempty"`
		Annotations       map[string]string `json:"annotations,omitempty"`
	}
	machineDeployment struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			ClusterName string `json:"clusterName"`
			Replicas    *int32 `json:"replicas"`
		} `json:"spec"`
	}
	machine struct {
		Metadata objectMeta `json:"metadata"`
		Status   struct {
			NodeRef *struct {
				Name string `json:"name"`
			} `json:"nodeRef"`
		} `json:"status"`
	}
	machineList struct {
		Metadata struct {
			Continue string `json:"continue"`
		} `json:"metadata"`
		Items []machine `json:"items"`
	}
	// scale is autoscaling/v1 Scale, the scale subresource's body.
	scale struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       struct {
			Replicas int32 `json:"replicas"`
		} `json:"spec"`
		Status struct {
			Replicas int32  `json:"replicas"`
			Selector string `json:"selector,omitempty"`
		} `json:"status"`
	}
	apiGroup struct {
		PreferredVersion struct {
			Version string `json:"version"`
		} `json:"preferredVersion"`
	}
)

func (p *Provider) mdPath() string {
	return fmt.Sprintf("/apis/%s/%s/namespaces/%s/machinedeployments/%s", Group, p.version, p.ns, p.name)
}

func (p *Provider) preferredVersion(ctx context.Context) (string, error) {
	var g apiGroup
	if err := p.get(ctx, "/apis/"+Group, &g); err != nil {
		return "", fmt.Errorf("clusterapi provider: find the served %s version (are the Cluster API CRDs installed?): %w", Group, err)
	}
	if g.PreferredVersion.Version == "" {
		return "", fmt.Errorf("clusterapi provider: the API server names no preferred version of %s", Group)
	}
	return g.PreferredVersion.Version, nil
}

func (p *Provider) machineDeployment(ctx context.Context) (machineDeployment, error) {
	var md machineDeployment
	if err := p.get(ctx, p.mdPath(), &md); err != nil {
		return md, fmt.Errorf("clusterapi provider: read %s: %w", p, err)
	}
	return md, nil
}

func (p *Provider) getScale(ctx context.Context) (scale, error) {
	var s scale
	if err := p.get(ctx, p.mdPath()+"/scale", &s); err != nil {
		return s, fmt.Errorf("clusterapi provider: read the scale of %s: %w", p, err)
	}
	return s, nil
}

// putScale writes the scale back with the resourceVersion it was read at.
func (p *Provider) putScale(ctx context.Context, s scale) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return p.rest.Put().AbsPath(p.mdPath()+"/scale").
		SetHeader("Accept", "application/json").SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
}

// listMachines lists the MachineDeployment's Machines by its label,
// following continue tokens.
func (p *Provider) listMachines(ctx context.Context) ([]machine, error) {
	var out []machine
	cont := ""
	for {
		q := url.Values{"labelSelector": {DeploymentNameLabel + "=" + p.name}, "limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var list machineList
		path := fmt.Sprintf("/apis/%s/%s/namespaces/%s/machines", Group, p.version, p.ns)
		if err := p.getQuery(ctx, path, q, &list); err != nil {
			return nil, fmt.Errorf("clusterapi provider: list Machines of %s: %w", p, err)
		}
		out = append(out, list.Items...)
		if cont = list.Metadata.Continue; cont == "" {
			return out, nil
		}
	}
}

// annotate sets the delete-machine annotation to value, or removes it when
// value is empty, with a JSON merge patch that touches nothing else.
func (p *Provider) annotate(ctx context.Context, machineName, value string) error {
	var v any
	if value != "" {
		v = value
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{DeleteMachineAnnotation: v}}})
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/apis/%s/%s/namespaces/%s/machines/%s", Group, p.version, p.ns, machineName)
	err = p.rest.Patch("application/merge-patch+json").AbsPath(path).
		SetHeader("Accept", "application/json").Body(body).Do(ctx).Error()
	if value == "" && apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (p *Provider) get(ctx context.Context, path string, into any) error {
	return p.getQuery(ctx, path, nil, into)
}

func (p *Provider) getQuery(ctx context.Context, path string, q url.Values, into any) error {
	req := p.rest.Get().AbsPath(path).SetHeader("Accept", "application/json")
	for k, vs := range q {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
