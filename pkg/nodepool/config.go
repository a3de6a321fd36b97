package nodepool

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/swell-autoscaler/swell/pkg/nodepool/provider/clusterapi"
	"github.com/swell-autoscaler/swell/pkg/policy"
)

// Configuration keys. The first block is kubescaler's, with the same
// meaning, so its config.yaml and environment work unchanged; the second
// block is Swell's optional additions.
const (
	KeyCloudProvider       = "cloud-provider"
	KeyCloudProviderToken  = "cloud-provider-token"
	KeyClusterName         = "cluster-name"
	KeyNodePoolName        = "node-pool-name"
	KeyNodeSelector        = "node-selector"
	KeyKubeMasterURL       = "cluster-kube-config-master-url"
	KeyKubeConfigPath      = "cluster-kube-config-path"
	KeyMinNodes            = "minimum-node-pool-size"
	KeyMaxNodes            = "maximum-node-pool-size"
	KeyPodLabelName        = "server-pod-label-name"
	KeyPodLabelValue       = "server-pod-label-value"
	KeyBufferSlotSize      = "buffer-slot-size"
	KeyScaleLoopTick       = "scale-loop-tick-sec"
	KeyServerCPURequest    = "server-cpu-resource-request"
	KeyEmptyNodeExpiration = "empty-node-expiration-sec"

	KeyCloudProviderTokenFile = "cloud-provider-token-file"
	KeyBufferSlotPercent      = "buffer-slot-percent"
	KeyServerMemoryRequest    = "server-memory-resource-request"
	KeyServerResourceRequests = "server-resource-requests"
	KeyResizeCooldown         = "resize-cooldown-sec"
	KeyMetricsBindAddress     = "metrics-bind-address"
	KeyKwokNodeCPU            = "kwok-node-cpu"
	KeyKwokNodeMemory         = "kwok-node-memory"
	KeyKwokNodePods           = "kwok-node-pods"
	// KeyCapacityBuffer ("namespace/name") publishes the buffer as a SIG
	// Autoscaling CapacityBuffer; empty is off.
	KeyCapacityBuffer = "capacity-buffer"
	// KeyOccupancySource picks what counts a slot as in use: "pods"
	// (server pods by label, the default) or "agones" (Agones GameServer
	// states).
	KeyOccupancySource = "occupancy-source"

	// Hetzner Cloud has no managed node pools: these describe the servers
	// the hetzner provider creates. The cloud-init joins a server to the
	// cluster and holds a join credential, so it is only ever a file.
	KeyHcloudServerType    = "hcloud-server-type"
	KeyHcloudImage         = "hcloud-image"
	KeyHcloudLocation      = "hcloud-location"
	KeyHcloudCloudInitFile = "hcloud-cloud-init-file"
	KeyHcloudNetwork       = "hcloud-network"
	KeyHcloudSSHKey        = "hcloud-ssh-key"
)

// Providers Swell knows by name in cloud-provider.
const (
	ProviderDigitalOcean = "digitalocean"
	ProviderKwok         = "kwok"
	// ProviderClusterAPI scales a Cluster API MachineDeployment named by
	// node-pool-name ("namespace/name").
	ProviderClusterAPI = "clusterapi"
	// ProviderHetzner, ProviderLinode and ProviderVultr are the HTTP
	// clouds next to digitalocean (pkg/nodepool/provider/<name>).
	ProviderHetzner = "hetzner"
	ProviderLinode  = "linode"
	ProviderVultr   = "vultr"
	// ProviderNone acts on no node: Swell only publishes capacity-buffer,
	// for clusters whose nodes Karpenter or the Cluster Autoscaler own.
	ProviderNone = "none"
)

// defaults are kubescaler's flag defaults where it had sane ones, so a
// config that relied on them keeps its meaning.
var defaults = map[string]string{
	KeyCloudProvider:       ProviderDigitalOcean,
	KeyMinNodes:            "2",
	KeyMaxNodes:            "3",
	KeyBufferSlotSize:      "4",
	KeyScaleLoopTick:       "10",
	KeyEmptyNodeExpiration: "120",
	// kubescaler has no cooldown, and booting and ordered nodes already
	// count toward capacity, so a resize is never repeated without one: a
	// migrated config must not answer a second burst later than
	// kubescaler would.
	KeyResizeCooldown:     "0",
	KeyMetricsBindAddress: "127.0.0.1:8080",
	KeyKwokNodeCPU:        "4",
	KeyKwokNodeMemory:     "16Gi",
	KeyKwokNodePods:       "110",
}

// knownKeys lists every key the NodePoolScaler kind carries too (see
// commandOnlyKeys for the rest).
var knownKeys = []string{
	KeyCloudProvider, KeyCloudProviderToken, KeyClusterName, KeyNodePoolName, KeyNodeSelector,
	KeyKubeMasterURL, KeyKubeConfigPath, KeyMinNodes, KeyMaxNodes, KeyPodLabelName, KeyPodLabelValue,
	KeyBufferSlotSize, KeyScaleLoopTick, KeyServerCPURequest, KeyEmptyNodeExpiration,
	KeyCloudProviderTokenFile, KeyBufferSlotPercent, KeyServerMemoryRequest, KeyServerResourceRequests,
	KeyResizeCooldown, KeyMetricsBindAddress, KeyKwokNodeCPU, KeyKwokNodeMemory, KeyKwokNodePods,
	KeyHcloudServerType, KeyHcloudImage, KeyHcloudLocation, KeyHcloudCloudInitFile, KeyHcloudNetwork, KeyHcloudSSHKey,
	KeyCapacityBuffer,
}

// Secret holds a credential. It prints as [redacted] through fmt, %v, %+v,
// %#v and JSON, so a logged Config never leaks it.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the secret for %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON redacts the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// Reveal returns the credential itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// Config is the decoded, typed node-pool configuration. Load fills and
// validates it once; nothing downstream parses strings again.
type Config struct {
	CloudProvider      string
	CloudProviderToken Secret
	ClusterName        string
	NodePoolName       string
	// NodeSelector selects the pool's nodes (e.g. role=scalable).
	NodeSelector   labels.Selector
	KubeMasterURL  string
	KubeConfigPath string
	MinNodes       int
	MaxNodes       int
	// ServerPods selects the dedicated-server pods.
	ServerPodLabelName  string
	ServerPodLabelValue string
	// Buffer is the free slots to keep: absolute and/or percent of slots in use.
	Buffer policy.Buffer
	// Tick is the period of the safety-net pass; events trigger passes too.
	Tick time.Duration
	// Slot is one server's footprint (cpu in millicores, memory in bytes,
	// extended resources in units).
	Slot                policy.Resources
	EmptyNodeExpiration time.Duration
	ResizeCooldown      time.Duration
	// MetricsBindAddress serves /metrics; "0" turns it off.
	MetricsBindAddress string
	// KwokNode is the allocatable of nodes the kwok provider creates.
	KwokNode policy.Resources
	// KwokNodeRaw keeps the quantities as written, for Node objects.
	KwokNodeRaw map[string]string
	// Hcloud describes the servers the hetzner provider creates.
	Hcloud HcloudServers
	// CapacityBuffer is the CapacityBuffer to publish ("namespace/name").
	CapacityBuffer string
	// OccupancySource is OccupancyPods or OccupancyAgones.
	OccupancySource string
}

// HcloudServers is what a new server of a hetzner pool is made of.
type HcloudServers struct {
	ServerType, Image, Location, Network, SSHKey string
	// CloudInit is the content of hcloud-cloud-init-file.
	CloudInit Secret
}

// Load reads a kubescaler-style YAML file (path may be empty), lets
// upper-snake-case environment variables override it (BUFFER_SLOT_SIZE for
// buffer-slot-size), applies defaults and validates. Every problem is
// reported at once, each naming its key.
func Load(path string, getenv func(string) string) (Config, error) {
	return LoadSources(Sources{File: path, Getenv: getenv})
}

// Sources are the places a node-pool configuration comes from. Their
// precedence is kubescaler's (viper's): a --<key> flag given on the
// command line wins over the environment variable, which wins over the
// file, which wins over the defaults.
type Sources struct {
	// File is a YAML file of keys; "" reads none.
	File string
	// Flags holds the --<key> flags given on the command line, key →
	// value; keys are matched without regard to case.
	Flags map[string]string
	// Getenv reads an environment variable (os.Getenv); nil reads none.
	Getenv func(string) string
}

// LoadSources reads and merges the sources in kubescaler's precedence,
// applies defaults and validates. A key that matches nothing is refused,
// naming it and where it came from.
func LoadSources(src Sources) (Config, error) {
	raw, err := ReadKeys(src.File)
	if err != nil {
		return Config{}, err
	}
	if src.Getenv != nil {
		for _, k := range allKeys() {
			if v := src.Getenv(EnvName(k)); v != "" {
				raw[k] = v
			}
		}
	}
	var errs []error
	for k, v := range src.Flags {
		key, ok := CanonicalKey(k)
		if !ok {
			errs = append(errs, fmt.Errorf("flag --%s: unknown key %q (known keys: %s)", k, k, strings.Join(allKeys(), ", ")))
			continue
		}
		raw[key] = v
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return FromKeys(raw)
}

// commandOnlyKeys are read by `swell nodepool` only, for now: the
// NodePoolScaler kind has no field for them yet, so Keys, which the kind's
// translation must cover key by key, leaves them out.
var commandOnlyKeys = []string{KeyOccupancySource}

// Keys lists every configuration key the NodePoolScaler kind carries too,
// kubescaler's first, so a command can offer each as a --<key> flag.
func Keys() []string { return slices.Clone(knownKeys) }

// CommandOnlyKeys lists the keys only `swell nodepool` reads so far (its
// config file, env and flags accept them; the NodePoolScaler kind gets
// them later).
func CommandOnlyKeys() []string { return slices.Clone(commandOnlyKeys) }

// allKeys is every key a config file, env or flag may set.
func allKeys() []string { return slices.Concat(knownKeys, commandOnlyKeys) }

// CanonicalKey is the key a name means, matched without regard to case
// (kubescaler's viper reads "Buffer-Slot-Size" as buffer-slot-size); ok is
// false when it means none.
func CanonicalKey(name string) (key string, ok bool) {
	key = strings.ToLower(strings.TrimSpace(name))
	return key, slices.Contains(allKeys(), key)
}

// FromKeys applies defaults to key → value text and decodes and validates
// it as Load does. It lets callers that hold the keys elsewhere (the
// NodePoolScaler kind, translated to keys) share the one decoder, so a
// file and a cluster object can never mean different things.
func FromKeys(keys map[string]string) (Config, error) {
	return FromKeysReading(keys, os.ReadFile)
}

// FromKeysReading is [FromKeys] with the files the keys name
// (cloud-provider-token-file, hcloud-cloud-init-file) read through
// readFile: the NodePoolScaler controller serves them from the Secrets it
// read, so a credential never touches its disk.
func FromKeysReading(keys map[string]string, readFile func(name string) ([]byte, error)) (Config, error) {
	raw := make(map[string]string, len(keys)+len(defaults))
	for k, v := range keys {
		raw[k] = v
	}
	for k, v := range defaults {
		if raw[k] == "" {
			raw[k] = v
		}
	}
	cfg, err := decode(raw, readFile)
	if err = errors.Join(err, cfg.Validate()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// EnvName is the environment variable for a key: upper case, '-' → '_'.
func EnvName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// ReadKeys decodes a config file into key → scalar text, refusing unknown
// keys (a typo would otherwise silently fall back to a default). Keys are
// matched without regard to case, as kubescaler does, and returned in
// their canonical lower-case spelling; two spellings of one key are
// refused. It is exported so the file can be translated into a
// NodePoolScaler spec.
func ReadKeys(path string) (map[string]string, error) {
	raw := map[string]string{}
	if path == "" {
		return raw, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node-pool config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("node-pool config %s: not a YAML map of keys: %w", path, err)
	}
	var errs []error
	spelled := map[string]string{}
	for _, name := range sortedNames(doc) {
		key, ok := CanonicalKey(name)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key %q (known keys: %s)", path, name, strings.Join(allKeys(), ", ")))
			continue
		}
		if first, dup := spelled[key]; dup {
			errs = append(errs, fmt.Errorf("%s: keys %q and %q both set %s", path, first, name, key))
			continue
		}
		spelled[key] = name
		s, err := scalar(doc[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", path, name, err))
			continue
		}
		raw[key] = s
	}
	return raw, errors.Join(errs...)
}

// sortedNames lists a document's keys in order, so errors come out the
// same way every time.
func sortedNames(doc map[string]any) []string {
	names := make([]string, 0, len(doc))
	for name := range doc {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// scalar turns a YAML value into text; maps and lists are refused.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	default:
		return "", fmt.Errorf("want a single value (string or number), got %T", v)
	}
}

// decoder collects typed values and the errors met on the way.
type decoder struct {
	raw      map[string]string
	readFile func(name string) ([]byte, error)
	errs     []error
}

func (d *decoder) fail(key, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s (env %s): %s", key, EnvName(key), fmt.Sprintf(format, args...)))
}

func (d *decoder) integer(key string) int {
	v := strings.TrimSpace(d.raw[key])
	n, err := strconv.Atoi(v)
	if err != nil {
		d.fail(key, "%q is not a whole number", v)
	}
	return n
}

// seconds reads a duration in seconds; fractions are allowed ("0.5").
func (d *decoder) seconds(key string) time.Duration {
	v := strings.TrimSpace(d.raw[key])
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		d.fail(key, "%q is not a number of seconds >= 0", v)
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func decode(raw map[string]string, readFile func(name string) ([]byte, error)) (Config, error) {
	d := &decoder{raw: raw, readFile: readFile}
	c := Config{
		CloudProvider:       strings.TrimSpace(raw[KeyCloudProvider]),
		ClusterName:         raw[KeyClusterName],
		NodePoolName:        raw[KeyNodePoolName],
		KubeMasterURL:       raw[KeyKubeMasterURL],
		KubeConfigPath:      raw[KeyKubeConfigPath],
		MinNodes:            d.integer(KeyMinNodes),
		MaxNodes:            d.integer(KeyMaxNodes),
		ServerPodLabelName:  raw[KeyPodLabelName],
		ServerPodLabelValue: raw[KeyPodLabelValue],
		Tick:                d.seconds(KeyScaleLoopTick),
		EmptyNodeExpiration: d.seconds(KeyEmptyNodeExpiration),
		ResizeCooldown:      d.seconds(KeyResizeCooldown),
		MetricsBindAddress:  raw[KeyMetricsBindAddress],
		CapacityBuffer:      strings.TrimSpace(raw[KeyCapacityBuffer]),
		OccupancySource:     strings.TrimSpace(raw[KeyOccupancySource]),
	}
	c.CloudProviderToken = d.token()
	c.NodeSelector = d.selector()
	c.Buffer = d.buffer()
	c.Slot = d.slot()
	c.KwokNode, c.KwokNodeRaw = d.kwokNode()
	c.Hcloud = d.hcloud()
	return c, errors.Join(d.errs...)
}

// token takes cloud-provider-token, or reads cloud-provider-token-file
// (a mounted Secret). The value is never put in an error.
func (d *decoder) token() Secret {
	tok, file := strings.TrimSpace(d.raw[KeyCloudProviderToken]), d.raw[KeyCloudProviderTokenFile]
	if tok != "" && file != "" {
		d.fail(KeyCloudProviderTokenFile, "set either %s or %s, not both", KeyCloudProviderToken, KeyCloudProviderTokenFile)
		return ""
	}
	if file == "" {
		return Secret(tok)
	}
	b, err := d.readFile(file)
	if err != nil {
		d.fail(KeyCloudProviderTokenFile, "cannot read the token file: %v", err)
		return ""
	}
	return Secret(strings.TrimSpace(string(b)))
}

// hcloud reads the hetzner keys; the cloud-init file is read here, once,
// like the token file, and never put in an error.
func (d *decoder) hcloud() HcloudServers {
	h := HcloudServers{
		ServerType: strings.TrimSpace(d.raw[KeyHcloudServerType]),
		Image:      strings.TrimSpace(d.raw[KeyHcloudImage]),
		Location:   strings.TrimSpace(d.raw[KeyHcloudLocation]),
		Network:    strings.TrimSpace(d.raw[KeyHcloudNetwork]),
		SSHKey:     strings.TrimSpace(d.raw[KeyHcloudSSHKey]),
	}
	if file := strings.TrimSpace(d.raw[KeyHcloudCloudInitFile]); file != "" {
		b, err := d.readFile(file)
		if err != nil {
			d.fail(KeyHcloudCloudInitFile, "cannot read the cloud-init file: %v", err)
		}
		h.CloudInit = Secret(b)
	}
	return h
}

func (d *decoder) selector() labels.Selector {
	v := strings.TrimSpace(d.raw[KeyNodeSelector])
	if v == "" {
		d.fail(KeyNodeSelector, "is required (e.g. role=scalable): an empty selector would put every node of the cluster in the pool")
		return nil
	}
	sel, err := labels.Parse(v)
	if err != nil {
		d.fail(KeyNodeSelector, "%q is not a label selector: %v", v, err)
		return nil
	}
	return sel
}

// buffer reads buffer-slot-size as a count ("4") or a percentage ("10%",
// as Agones' buffer policy), plus an optional buffer-slot-percent.
func (d *decoder) buffer() policy.Buffer {
	var b policy.Buffer
	v := strings.TrimSpace(d.raw[KeyBufferSlotSize])
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || f < 0 {
			d.fail(KeyBufferSlotSize, "%q: want a whole number of slots or a percentage like 10%%", v)
		}
		b.Percent = f
	} else {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			d.fail(KeyBufferSlotSize, "%q: want a whole number of slots >= 0 or a percentage like 10%%", v)
		}
		b.Absolute = n
	}
	if p := strings.TrimSpace(d.raw[KeyBufferSlotPercent]); p != "" {
		f, err := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
		if err != nil || f < 0 {
			d.fail(KeyBufferSlotPercent, "%q: want a percentage >= 0", p)
		}
		b.Percent = max(b.Percent, f)
	}
	return b
}

// slot builds the server footprint. server-cpu-resource-request is
// kubescaler's millicores when it is a plain integer ("1000"), or a
// Kubernetes quantity ("500m", "1.5").
func (d *decoder) slot() policy.Resources {
	slot := policy.Resources{}
	if v := strings.TrimSpace(d.raw[KeyServerCPURequest]); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			slot["cpu"] = n
		} else if q, err := resource.ParseQuantity(v); err == nil {
			slot["cpu"] = q.MilliValue()
		} else {
			d.fail(KeyServerCPURequest, "%q: want millicores (1000) or a quantity (500m)", v)
		}
	}
	if v := strings.TrimSpace(d.raw[KeyServerMemoryRequest]); v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			d.fail(KeyServerMemoryRequest, "%q is not a quantity (e.g. 2Gi)", v)
		}
		slot["memory"] = q.Value()
	}
	for _, part := range strings.Split(d.raw[KeyServerResourceRequests], ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, qty, ok := strings.Cut(part, "=")
		q, err := resource.ParseQuantity(strings.TrimSpace(qty))
		if !ok || err != nil {
			d.fail(KeyServerResourceRequests, "%q: want name=quantity[,name=quantity] (e.g. nvidia.com/gpu=1)", part)
			continue
		}
		slot[strings.TrimSpace(name)] = quantityValue(strings.TrimSpace(name), q)
	}
	return slot
}

// quantityValue is how policy.Resources stores a quantity: cpu in
// millicores, everything else in whole units.
func quantityValue(name string, q resource.Quantity) int64 {
	if name == "cpu" {
		return q.MilliValue()
	}
	return q.Value()
}

func (d *decoder) kwokNode() (policy.Resources, map[string]string) {
	res, raw := policy.Resources{}, map[string]string{}
	for key, name := range map[string]string{KeyKwokNodeCPU: "cpu", KeyKwokNodeMemory: "memory", KeyKwokNodePods: "pods"} {
		v := strings.TrimSpace(d.raw[key])
		q, err := resource.ParseQuantity(v)
		if err != nil {
			d.fail(key, "%q is not a quantity", v)
			continue
		}
		res[name], raw[name] = quantityValue(name, q), v
	}
	return res, raw
}

// Validate checks the relations between keys. Each error names the key
// and what would be valid.
func (c Config) Validate() error {
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (env %s): %s", key, EnvName(key), fmt.Sprintf(format, args...)))
	}
	switch c.CloudProvider {
	case ProviderKwok:
		if c.NodeSelector != nil {
			if _, err := labels.ConvertSelectorToLabelsMap(c.NodeSelector.String()); err != nil {
				fail(KeyNodeSelector, "the kwok provider labels new nodes with the selector, so it must be key=value[,key=value]")
			}
		}
	case ProviderDigitalOcean:
		if c.CloudProviderToken == "" {
			fail(KeyCloudProviderToken, "is required for digitalocean (or set %s to a mounted Secret file)", KeyCloudProviderTokenFile)
		}
		if c.ClusterName == "" {
			fail(KeyClusterName, "is required for digitalocean")
		}
		if c.NodePoolName == "" {
			fail(KeyNodePoolName, "is required for digitalocean")
		}
	case ProviderClusterAPI:
		if _, _, err := clusterapi.ParsePoolName(c.NodePoolName); err != nil {
			fail(KeyNodePoolName, "clusterapi needs the MachineDeployment: %v", err)
		}
	case ProviderNone:
	case ProviderLinode, ProviderVultr:
		requireCloud(c, fail, KeyCloudProviderToken, KeyClusterName, KeyNodePoolName)
	case ProviderHetzner:
		requireCloud(c, fail, KeyCloudProviderToken, KeyNodePoolName, KeyHcloudServerType, KeyHcloudImage, KeyHcloudCloudInitFile)
	default:
		fail(KeyCloudProvider, "%q is not a provider; want %s, %s, %s, %s, %s, %s or %s", c.CloudProvider,
			ProviderHetzner, ProviderLinode, ProviderVultr, ProviderClusterAPI, ProviderNone, ProviderDigitalOcean, ProviderKwok)
	}
	errs = append(errs, c.capacityBufferErrors()...)
	errs = append(errs, c.occupancyErrors()...)
	if c.MinNodes < 0 {
		fail(KeyMinNodes, "%d must be >= 0", c.MinNodes)
	}
	if c.MaxNodes < 1 || c.MaxNodes < c.MinNodes {
		fail(KeyMaxNodes, "%d must be >= 1 and >= %s (%d)", c.MaxNodes, KeyMinNodes, c.MinNodes)
	}
	if c.ServerPodLabelName == "" {
		fail(KeyPodLabelName, "is required: it selects the dedicated-server pods")
	} else if msgs := validation.IsQualifiedName(c.ServerPodLabelName); len(msgs) > 0 {
		fail(KeyPodLabelName, "%q is not a label key: %s", c.ServerPodLabelName, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsValidLabelValue(c.ServerPodLabelValue); len(msgs) > 0 {
		fail(KeyPodLabelValue, "%q is not a label value: %s", c.ServerPodLabelValue, strings.Join(msgs, "; "))
	}
	if !slotAsksSomething(c.Slot) {
		fail(KeyServerCPURequest, "is required and must be > 0 (millicores one server requests), or set %s / %s", KeyServerMemoryRequest, KeyServerResourceRequests)
	}
	if err := c.Buffer.Validate(); err != nil {
		fail(KeyBufferSlotSize, "%v", err)
	}
	if c.Tick <= 0 {
		fail(KeyScaleLoopTick, "must be > 0 seconds")
	}
	return errors.Join(errs...)
}

// requireCloud reports each of keys the cloud provider needs and c lacks.
func requireCloud(c Config, fail func(key, format string, args ...any), keys ...string) {
	set := map[string]bool{
		KeyCloudProviderToken:  c.CloudProviderToken != "",
		KeyClusterName:         c.ClusterName != "",
		KeyNodePoolName:        c.NodePoolName != "",
		KeyHcloudServerType:    c.Hcloud.ServerType != "",
		KeyHcloudImage:         c.Hcloud.Image != "",
		KeyHcloudCloudInitFile: strings.TrimSpace(string(c.Hcloud.CloudInit)) != "",
	}
	for _, k := range keys {
		switch {
		case set[k]:
		case k == KeyCloudProviderToken:
			fail(k, "is required for %s (or set %s to a mounted Secret file)", c.CloudProvider, KeyCloudProviderTokenFile)
		case k == KeyHcloudCloudInitFile:
			fail(k, "is required for %s: a file (a mounted Secret) with the cloud-init that joins a new server to the cluster; it must not be empty", c.CloudProvider)
		default:
			fail(k, "is required for %s", c.CloudProvider)
		}
	}
}

func slotAsksSomething(slot policy.Resources) bool {
	for _, v := range slot {
		if v > 0 {
			return true
		}
	}
	return false
}

// ServerPodSelector selects the dedicated-server pods.
func (c Config) ServerPodSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{c.ServerPodLabelName: c.ServerPodLabelValue})
}
