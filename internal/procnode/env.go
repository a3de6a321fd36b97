package procnode

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerEnv builds a container's environment the way kubelet does: HOSTNAME
// and the image's env first, then envFrom, then env in order with $(VAR)
// references to earlier variables expanded, then the node's extra env. A
// non-empty kubeconfig (the pod's ServiceAccount credentials) is set as
// KUBECONFIG before the container's env and is not replaced by the extra env.
// It returns the environment as a map (for expanding command and args) and
// as KEY=VALUE pairs in order.
func (n *Node) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, image [][2]string, kubeconfig string) (map[string]string, []string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", os.Getenv("PATH"))
	set("HOME", n.cfg.WorkDir)
	set("HOSTNAME", pod.Name)
	for _, kv := range image {
		set(kv[0], kv[1])
	}
	if kubeconfig != "" {
		set("KUBECONFIG", kubeconfig)
	}
	for _, from := range c.EnvFrom {
		kv, err := n.envFromSource(ctx, pod.Namespace, from)
		if err != nil {
			return nil, nil, fmt.Errorf("container %s envFrom: %w", c.Name, err)
		}
		for k, v := range kv {
			set(from.Prefix+k, v)
		}
	}
	for _, ev := range c.Env {
		v, err := n.envValue(ctx, pod, c, ev, vars)
		if err != nil {
			return nil, nil, fmt.Errorf("container %s env %s: %w", c.Name, ev.Name, err)
		}
		set(ev.Name, v)
	}
	for k, v := range n.cfg.ExtraEnv {
		if k == "KUBECONFIG" && kubeconfig != "" {
			continue
		}
		set(k, v)
	}
	pairs := make([]string, 0, len(order))
	for _, k := range order {
		pairs = append(pairs, k+"="+vars[k])
	}
	return vars, pairs, nil
}

func (n *Node) envValue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, ev corev1.EnvVar, vars map[string]string) (string, error) {
	if ev.ValueFrom == nil {
		return expand(ev.Value, vars), nil
	}
	src := ev.ValueFrom
	switch {
	case src.FieldRef != nil:
		return fieldValue(pod, src.FieldRef.FieldPath)
	case src.ResourceFieldRef != nil:
		return resourceValue(c, src.ResourceFieldRef)
	case src.SecretKeyRef != nil:
		return n.secretKey(ctx, pod.Namespace, src.SecretKeyRef)
	case src.ConfigMapKeyRef != nil:
		return n.configMapKey(ctx, pod.Namespace, src.ConfigMapKeyRef)
	}
	return "", fmt.Errorf("valueFrom has no source this node supports")
}

// fieldValue resolves the downward-API field paths a pod env may name.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.podIP", "status.hostIPs", "status.podIPs":
		return "127.0.0.1", nil
	}
	if key, ok := bracketKey(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := bracketKey(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	return "", fmt.Errorf("fieldRef %q is not a supported field path", path)
}

// bracketKey parses prefix['key'].
func bracketKey(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// resourceValue resolves limits.* and requests.* with the divisor, rounding
// up as kubelet does.
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("resourceFieldRef %q: want limits.<name> or requests.<name>", ref.Resource)
	}
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "0", nil
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	v := math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
	return fmt.Sprint(int64(v)), nil
}

func (n *Node) secretKey(ctx context.Context, ns string, ref *corev1.SecretKeySelector) (string, error) {
	s, err := n.cfg.Client.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		if isOptional(ref.Optional) {
			return "", nil
		}
		return "", fmt.Errorf("secret %s/%s: %w", ns, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok && !isOptional(ref.Optional) {
		return "", fmt.Errorf("secret %s/%s has no key %q", ns, ref.Name, ref.Key)
	}
	return string(v), nil
}

func (n *Node) configMapKey(ctx context.Context, ns string, ref *corev1.ConfigMapKeySelector) (string, error) {
	cm, err := n.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		if isOptional(ref.Optional) {
			return "", nil
		}
		return "", fmt.Errorf("configmap %s/%s: %w", ns, ref.Name, err)
	}
	v, ok := cm.Data[ref.Key]
	if !ok && !isOptional(ref.Optional) {
		return "", fmt.Errorf("configmap %s/%s has no key %q", ns, ref.Name, ref.Key)
	}
	return v, nil
}

func (n *Node) envFromSource(ctx context.Context, ns string, from corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case from.ConfigMapRef != nil:
		cm, err := n.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			if isOptional(from.ConfigMapRef.Optional) {
				return out, nil
			}
			return nil, fmt.Errorf("configmap %s/%s: %w", ns, from.ConfigMapRef.Name, err)
		}
		for k, v := range cm.Data {
			out[k] = v
		}
	case from.SecretRef != nil:
		s, err := n.cfg.Client.CoreV1().Secrets(ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if err != nil {
			if isOptional(from.SecretRef.Optional) {
				return out, nil
			}
			return nil, fmt.Errorf("secret %s/%s: %w", ns, from.SecretRef.Name, err)
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	}
	return out, nil
}

// expand replaces $(NAME) with the value of a defined variable, turns $$
// into $, and leaves references to undefined names as they are — the rules
// Kubernetes applies to env values, command and args.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte(s[i])
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// isOptional reads a Kubernetes optional flag (nil means required).
func isOptional(b *bool) bool { return b != nil && *b }
