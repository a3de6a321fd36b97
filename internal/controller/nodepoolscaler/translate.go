package nodepoolscaler

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// ProcessOnlyKeys configure the `swell nodepool` process itself (how it
// reaches the API server, where it serves metrics). A NodePoolScaler has no
// field for them: the controller provides both, so translation drops them.
var ProcessOnlyKeys = []string{nodepool.KeyKubeMasterURL, nodepool.KeyKubeConfigPath, nodepool.KeyMetricsBindAddress}

// TokenMount ties cloud-provider-token-file to the Secret behind it: a
// `swell nodepool` Deployment mounts Secret SecretName at Dir, so the file
// Dir/<key> is the spec's cloudProviderTokenSecretRef {SecretName, key}.
type TokenMount struct {
	SecretName string
	Dir        string
	// CloudInit ties hcloud-cloud-init-file to the Secret behind it, as
	// above: Dir/<key> is spec.hcloudCloudInitSecretRef {SecretName, key}.
	CloudInit SecretMount
}

// SecretMount is one Secret mounted as a directory of files.
type SecretMount struct {
	SecretName string
	Dir        string
}

// SpecFromKeys translates a `swell nodepool` config (key → value text, as
// [nodepool.ReadKeys] returns it) into a NodePoolScaler spec, key by key.
// A literal cloud-provider-token is refused: a spec holds only a Secret
// reference. Empty values and [ProcessOnlyKeys] are left out; every other
// problem names its key.
func SpecFromKeys(keys map[string]string, mount TokenMount) (swellv1.NodePoolScalerSpec, error) {
	t := &translator{}
	var s swellv1.NodePoolScalerSpec
	for _, k := range sortedKeys(keys) {
		v := strings.TrimSpace(keys[k])
		if v == "" || isProcessOnly(k) {
			continue
		}
		t.key(&s, k, v, mount)
	}
	return s, errors.Join(t.errs...)
}

// translator collects the errors met while translating keys.
type translator struct{ errs []error }

func (t *translator) fail(key, format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// key sets the spec field of one key.
func (t *translator) key(s *swellv1.NodePoolScalerSpec, k, v string, mount TokenMount) {
	switch k {
	case nodepool.KeyCloudProvider:
		s.CloudProvider = swellv1.CloudProvider(v)
	case nodepool.KeyCloudProviderToken:
		t.fail(k, "a NodePoolScaler never holds the token itself: put it in a Secret and set cloudProviderTokenSecretRef")
	case nodepool.KeyCloudProviderTokenFile:
		s.CloudProviderTokenSecretRef = t.tokenRef(k, v, mount)
	case nodepool.KeyClusterName:
		s.ClusterName = v
	case nodepool.KeyNodePoolName:
		s.NodePoolName = v
	case nodepool.KeyNodeSelector:
		s.NodeSelector = v
	case nodepool.KeyMinNodes:
		s.MinimumNodePoolSize = t.int32(k, v)
	case nodepool.KeyMaxNodes:
		s.MaximumNodePoolSize = t.int32(k, v)
	case nodepool.KeyPodLabelName:
		s.ServerPodLabelName = v
	case nodepool.KeyPodLabelValue:
		s.ServerPodLabelValue = v
	case nodepool.KeyBufferSlotSize:
		s.BufferSlotSize = intOrString(v)
	case nodepool.KeyBufferSlotPercent:
		s.BufferSlotPercent = t.float(k, strings.TrimSuffix(v, "%"))
	case nodepool.KeyScaleLoopTick:
		s.ScaleLoopTickSec = t.float(k, v)
	case nodepool.KeyServerCPURequest:
		s.ServerCPUResourceRequest = intOrString(v)
	case nodepool.KeyServerMemoryRequest:
		s.ServerMemoryResourceRequest = t.quantity(k, v)
	case nodepool.KeyServerResourceRequests:
		s.ServerResourceRequests = t.resourceList(k, v)
	case nodepool.KeyEmptyNodeExpiration:
		s.EmptyNodeExpirationSec = t.float(k, v)
	case nodepool.KeyResizeCooldown:
		s.ResizeCooldownSec = t.float(k, v)
	case nodepool.KeyKwokNodeCPU:
		s.KwokNodeCPU = t.quantity(k, v)
	case nodepool.KeyKwokNodeMemory:
		s.KwokNodeMemory = t.quantity(k, v)
	case nodepool.KeyKwokNodePods:
		s.KwokNodePods = t.quantity(k, v)
	case nodepool.KeyCapacityBuffer:
		s.CapacityBuffer = v
	default:
		t.hcloudKey(s, k, v, mount)
	}
}

// hcloudKey sets the spec field of a hetzner key; any other key is unknown.
func (t *translator) hcloudKey(s *swellv1.NodePoolScalerSpec, k, v string, mount TokenMount) {
	switch k {
	case nodepool.KeyHcloudServerType:
		s.HcloudServerType = v
	case nodepool.KeyHcloudImage:
		s.HcloudImage = v
	case nodepool.KeyHcloudLocation:
		s.HcloudLocation = v
	case nodepool.KeyHcloudNetwork:
		s.HcloudNetwork = v
	case nodepool.KeyHcloudSSHKey:
		s.HcloudSSHKey = v
	case nodepool.KeyHcloudCloudInitFile:
		if name, key, ok := t.mounted(k, v, mount.CloudInit, "hcloudCloudInitSecretRef"); ok {
			s.HcloudCloudInitSecretRef = &swellv1.CloudInitSecretRef{Name: name, Key: key}
		}
	default:
		t.fail(k, "unknown key")
	}
}

// tokenRef maps a token file under the mount to the Secret key it shows.
func (t *translator) tokenRef(k, file string, mount TokenMount) *swellv1.SecretKeyRef {
	name, key, ok := t.mounted(k, file, SecretMount{SecretName: mount.SecretName, Dir: mount.Dir}, "cloudProviderTokenSecretRef")
	if !ok {
		return nil
	}
	return &swellv1.SecretKeyRef{Name: name, Key: key}
}

// mounted maps a file under a Secret's mount to that Secret and key; field
// is the spec field it becomes, for the error.
func (t *translator) mounted(k, file string, mount SecretMount, field string) (name, key string, ok bool) {
	if mount.SecretName == "" {
		t.fail(k, "%q: name the Secret mounted there to translate it into %s", file, field)
		return "", "", false
	}
	dir, key := path.Split(path.Clean(file))
	if mount.Dir != "" && path.Clean(dir) != path.Clean(mount.Dir) {
		t.fail(k, "%q is not under the Secret's mount %q", file, mount.Dir)
		return "", "", false
	}
	return mount.SecretName, key, true
}

func (t *translator) int32(k, v string) *int32 {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		t.fail(k, "%q is not a whole number", v)
		return nil
	}
	i := int32(n)
	return &i
}

func (t *translator) float(k, v string) *float64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.fail(k, "%q is not a number", v)
		return nil
	}
	return &f
}

func (t *translator) quantity(k, v string) *resource.Quantity {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		t.fail(k, "%q is not a quantity (e.g. 2Gi)", v)
		return nil
	}
	return &q
}

// resourceList reads "name=quantity[,name=quantity]".
func (t *translator) resourceList(k, v string) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for _, part := range strings.Split(v, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, qty, ok := strings.Cut(part, "=")
		q, err := resource.ParseQuantity(strings.TrimSpace(qty))
		if !ok || err != nil {
			t.fail(k, "%q: want name=quantity[,name=quantity]", part)
			continue
		}
		out[strings.TrimSpace(name)] = q
	}
	return out
}

// intOrString keeps a whole number as a number (4, 1000) and anything
// else ("10%", "500m") as text, as the file wrote it.
func intOrString(v string) *intstr.IntOrString {
	if n, err := strconv.ParseInt(v, 10, 32); err == nil {
		x := intstr.FromInt32(int32(n))
		return &x
	}
	x := intstr.FromString(v)
	return &x
}

// KeysFromSpec translates a spec back into `swell nodepool` keys: the
// inverse of [SpecFromKeys]. The token Secret becomes
// cloud-provider-token-file under mount.Dir; with no Dir it is left out
// (the controller passes the token it read instead).
func KeysFromSpec(s swellv1.NodePoolScalerSpec, mount TokenMount) map[string]string {
	keys := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			keys[k] = v
		}
	}
	set(nodepool.KeyCloudProvider, string(s.CloudProvider))
	if ref := s.CloudProviderTokenSecretRef; ref != nil && mount.Dir != "" {
		set(nodepool.KeyCloudProviderTokenFile, path.Join(mount.Dir, tokenKey(ref)))
	}
	set(nodepool.KeyClusterName, s.ClusterName)
	set(nodepool.KeyNodePoolName, s.NodePoolName)
	set(nodepool.KeyNodeSelector, s.NodeSelector)
	set(nodepool.KeyMinNodes, int32Text(s.MinimumNodePoolSize))
	set(nodepool.KeyMaxNodes, int32Text(s.MaximumNodePoolSize))
	set(nodepool.KeyPodLabelName, s.ServerPodLabelName)
	set(nodepool.KeyPodLabelValue, s.ServerPodLabelValue)
	set(nodepool.KeyBufferSlotSize, intOrStringText(s.BufferSlotSize))
	set(nodepool.KeyBufferSlotPercent, floatText(s.BufferSlotPercent))
	set(nodepool.KeyScaleLoopTick, floatText(s.ScaleLoopTickSec))
	set(nodepool.KeyServerCPURequest, intOrStringText(s.ServerCPUResourceRequest))
	set(nodepool.KeyServerMemoryRequest, quantityText(s.ServerMemoryResourceRequest))
	set(nodepool.KeyServerResourceRequests, resourceListText(s.ServerResourceRequests))
	set(nodepool.KeyEmptyNodeExpiration, floatText(s.EmptyNodeExpirationSec))
	set(nodepool.KeyResizeCooldown, floatText(s.ResizeCooldownSec))
	set(nodepool.KeyKwokNodeCPU, quantityText(s.KwokNodeCPU))
	set(nodepool.KeyKwokNodeMemory, quantityText(s.KwokNodeMemory))
	set(nodepool.KeyKwokNodePods, quantityText(s.KwokNodePods))
	set(nodepool.KeyHcloudServerType, s.HcloudServerType)
	set(nodepool.KeyHcloudImage, s.HcloudImage)
	set(nodepool.KeyHcloudLocation, s.HcloudLocation)
	set(nodepool.KeyHcloudNetwork, s.HcloudNetwork)
	set(nodepool.KeyHcloudSSHKey, s.HcloudSSHKey)
	if ref := s.HcloudCloudInitSecretRef; ref != nil && mount.CloudInit.Dir != "" {
		set(nodepool.KeyHcloudCloudInitFile, path.Join(mount.CloudInit.Dir, cloudInitKey(ref)))
	}
	set(nodepool.KeyCapacityBuffer, s.CapacityBuffer)
	return keys
}

// Secrets are the values the controller read from the Secrets a spec
// names; empty when the spec names none.
type Secrets struct {
	// Token is from cloudProviderTokenSecretRef.
	Token string
	// CloudInit is from hcloudCloudInitSecretRef.
	CloudInit []byte
}

// secretsDir is where ConfigFromSpec shows Secrets to the decoder as
// files; nothing is read from disk there (or anywhere).
const secretsDir = "/nodepoolscaler-secrets"

// ConfigFromSpec decodes a spec with `swell nodepool`'s own decoder, so a
// NodePoolScaler and the file it came from mean exactly the same thing.
// The Secrets read for it are handed to the decoder as the files the file
// form names (cloud-init) or as the token itself, never written to disk.
func ConfigFromSpec(s swellv1.NodePoolScalerSpec, sec Secrets) (nodepool.Config, error) {
	mount := TokenMount{CloudInit: SecretMount{Dir: secretsDir}}
	keys := KeysFromSpec(s, mount)
	if sec.Token != "" {
		keys[nodepool.KeyCloudProviderToken] = sec.Token
	}
	files := map[string][]byte{}
	if f, ok := keys[nodepool.KeyHcloudCloudInitFile]; ok {
		files[f] = sec.CloudInit
	}
	return nodepool.FromKeysReading(keys, func(name string) ([]byte, error) {
		b, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%s: a NodePoolScaler reads no files, only the Secrets its spec names", name)
		}
		return b, nil
	})
}

// cloudInitKey is the Secret key of the cloud-init, "cloud-init" when
// unset (the CRD default, repeated for objects built in Go).
func cloudInitKey(ref *swellv1.CloudInitSecretRef) string {
	if ref.Key == "" {
		return "cloud-init"
	}
	return ref.Key
}

// tokenKey is the Secret key of the token, "token" when unset (the CRD
// default, repeated for objects built in Go).
func tokenKey(ref *swellv1.SecretKeyRef) string {
	if ref.Key == "" {
		return "token"
	}
	return ref.Key
}

func int32Text(p *int32) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(int64(*p), 10)
}

func floatText(p *float64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}

func intOrStringText(p *intstr.IntOrString) string {
	if p == nil {
		return ""
	}
	return p.String()
}

func quantityText(p *resource.Quantity) string {
	if p == nil {
		return ""
	}
	return p.String()
}

func resourceListText(m map[string]resource.Quantity) string {
	parts := make([]string, 0, len(m))
	for _, name := range sortedKeys(m) {
		q := m[name]
		parts = append(parts, name+"="+q.String())
	}
	return strings.Join(parts, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isProcessOnly(key string) bool {
	for _, k := range ProcessOnlyKeys {
		if k == key {
			return true
		}
	}
	return false
}
