package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CloudProvider names the infrastructure that adds and removes the pool's
// machines, as kubescaler's cloud-provider key does.
// +kubebuilder:validation:Enum=digitalocean;kwok;hetzner;linode;vultr;clusterapi;none
type CloudProvider string

// Providers a NodePoolScaler can use.
const (
	// ProviderDigitalOcean resizes a DOKS node pool and deletes its nodes.
	ProviderDigitalOcean CloudProvider = "digitalocean"
	// ProviderKwok creates and deletes fake kwok Nodes (local clusters, tests).
	ProviderKwok CloudProvider = "kwok"
	// ProviderHetzner creates and deletes Hetzner Cloud servers labelled
	// with the pool's name (Hetzner has no managed node pools).
	ProviderHetzner CloudProvider = "hetzner"
	// ProviderLinode resizes an LKE node pool and deletes its nodes.
	ProviderLinode CloudProvider = "linode"
	// ProviderVultr resizes a VKE node pool and deletes its nodes.
	ProviderVultr CloudProvider = "vultr"
	// ProviderClusterAPI scales a Cluster API MachineDeployment and deletes
	// exactly the chosen node's Machine.
	ProviderClusterAPI CloudProvider = "clusterapi"
	// ProviderNone acts on no node: the object only publishes its buffer as
	// a CapacityBuffer (spec.capacityBuffer) for Karpenter or the Cluster
	// Autoscaler.
	ProviderNone CloudProvider = "none"
)

// SecretKeyRef points at one key of a Secret in the NodePoolScaler's own
// namespace. A spec never holds a credential itself, so reading the object
// never reveals it.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data; "token" when omitted.
	// +kubebuilder:default=token
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// CloudInitSecretRef points at the Secret key holding a cloud-init file,
// in the NodePoolScaler's own namespace: the cloud-init that joins a new
// server to the cluster carries a join credential, so it is never inline.
type CloudInitSecretRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data; "cloud-init" when omitted.
	// +kubebuilder:default=cloud-init
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// NodePoolScalerSpec is a `swell nodepool` config file as a Kubernetes
// object: every field is a kubescaler (or Swell) key in camelCase with the
// same meaning and default (cloud-provider → cloudProvider, ...). Keys that
// only make sense for a separate process (kubeconfig path and URL, metrics
// address) have no field: the controller provides them. The token is only
// ever a Secret reference.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minimumNodePoolSize) || !has(self.maximumNodePoolSize) || self.minimumNodePoolSize <= self.maximumNodePoolSize",message="spec.maximumNodePoolSize must be greater than or equal to spec.minimumNodePoolSize"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'digitalocean' || has(self.cloudProviderTokenSecretRef)",message="spec.cloudProviderTokenSecretRef is required for cloudProvider digitalocean"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'digitalocean' || (has(self.clusterName) && has(self.nodePoolName))",message="spec.clusterName and spec.nodePoolName are required for cloudProvider digitalocean"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'kwok' || self.nodeSelector.matches('^[A-Za-z0-9._/-]+=[A-Za-z0-9._-]*(,[A-Za-z0-9._/-]+=[A-Za-z0-9._-]*)*$')",message="spec.nodeSelector must be key=value[,key=value] for cloudProvider kwok: new nodes are labelled with it"
// +kubebuilder:validation:XValidation:rule="self.cloudProvider == 'kwok' || !(has(self.kwokNodeCpu) || has(self.kwokNodeMemory) || has(self.kwokNodePods))",message="spec.kwokNodeCpu, spec.kwokNodeMemory and spec.kwokNodePods apply only to cloudProvider kwok"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || !(self.cloudProvider in ['hetzner', 'linode', 'vultr']) || has(self.cloudProviderTokenSecretRef)",message="spec.cloudProviderTokenSecretRef is required for cloudProvider hetzner, linode and vultr"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || !(self.cloudProvider in ['linode', 'vultr']) || has(self.clusterName)",message="spec.clusterName is required for cloudProvider linode and vultr"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || !(self.cloudProvider in ['hetzner', 'linode', 'vultr', 'clusterapi']) || has(self.nodePoolName)",message="spec.nodePoolName is required for cloudProvider hetzner, linode, vultr and clusterapi (for clusterapi: the MachineDeployment, namespace/name)"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'hetzner' || has(self.hcloudServerType)",message="spec.hcloudServerType is required for cloudProvider hetzner"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'hetzner' || has(self.hcloudImage)",message="spec.hcloudImage is required for cloudProvider hetzner"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'hetzner' || has(self.hcloudCloudInitSecretRef)",message="spec.hcloudCloudInitSecretRef is required for cloudProvider hetzner: the cloud-init that joins a new server to the cluster"
// +kubebuilder:validation:XValidation:rule="(has(self.cloudProvider) && self.cloudProvider == 'hetzner') || !(has(self.hcloudServerType) || has(self.hcloudImage) || has(self.hcloudLocation) || has(self.hcloudNetwork) || has(self.hcloudSshKey) || has(self.hcloudCloudInitSecretRef))",message="spec.hcloudServerType, spec.hcloudImage, spec.hcloudLocation, spec.hcloudNetwork, spec.hcloudSshKey and spec.hcloudCloudInitSecretRef apply only to cloudProvider hetzner"
// +kubebuilder:validation:XValidation:rule="(has(self.cloudProvider) && self.cloudProvider == 'clusterapi') || !has(self.nodePoolName) || size(self.nodePoolName) <= 63",message="spec.nodePoolName may be at most 63 characters (only clusterapi's namespace/name is longer)"
// +kubebuilder:validation:XValidation:rule="!has(self.cloudProvider) || self.cloudProvider != 'none' || has(self.capacityBuffer)",message="spec.capacityBuffer is required for cloudProvider none: with no provider, publishing the CapacityBuffer is all the object does"
// +kubebuilder:validation:XValidation:rule="!has(self.capacityBuffer) || self.nodeSelector.matches('^[A-Za-z0-9._/-]+=[A-Za-z0-9._-]*(,[A-Za-z0-9._/-]+=[A-Za-z0-9._-]*)*$')",message="spec.nodeSelector must be key=value[,key=value] with spec.capacityBuffer: it becomes the slot PodTemplate's nodeSelector"
// +kubebuilder:validation:XValidation:rule="has(self.serverCpuResourceRequest) || has(self.serverMemoryResourceRequest) || has(self.serverResourceRequests)",message="spec.serverCpuResourceRequest is required (millicores one server requests), or set spec.serverMemoryResourceRequest or spec.serverResourceRequests"
type NodePoolScalerSpec struct {
	// CloudProvider (cloud-provider): digitalocean, hetzner, linode, vultr,
	// clusterapi, kwok, or none (publish spec.capacityBuffer only).
	// +kubebuilder:default=digitalocean
	// +optional
	CloudProvider CloudProvider `json:"cloudProvider,omitempty"`
	// CloudProviderTokenSecretRef (in place of cloud-provider-token and
	// cloud-provider-token-file) names the Secret key holding the API
	// token; required for digitalocean, hetzner, linode and vultr. The controller reads it live, so a
	// rotated token is picked up at the next pass.
	// +optional
	CloudProviderTokenSecretRef *SecretKeyRef `json:"cloudProviderTokenSecretRef,omitempty"`
	// ClusterName (cluster-name) is the DOKS, LKE or VKE cluster; required
	// for digitalocean, linode and vultr. For clusterapi, when set, the
	// MachineDeployment's spec.clusterName must match it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +optional
	ClusterName string `json:"clusterName,omitempty"`
	// NodePoolName (node-pool-name) is the DOKS, LKE or VKE node pool;
	// required for digitalocean, linode and vultr. For hetzner it is the
	// label that marks the pool's servers; for clusterapi the
	// MachineDeployment, "namespace/name" (or a name in "default"); for
	// kwok it prefixes the names of created nodes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^[^/]+(/[^/]+)?$`
	// +optional
	NodePoolName string `json:"nodePoolName,omitempty"`
	// NodeSelector (node-selector) is the label selector of the pool's
	// nodes, e.g. "role=scalable".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	NodeSelector string `json:"nodeSelector"`
	// MinimumNodePoolSize (minimum-node-pool-size): the pool never shrinks
	// below it, and grows to it first.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinimumNodePoolSize *int32 `json:"minimumNodePoolSize,omitempty"`
	// MaximumNodePoolSize (maximum-node-pool-size): the pool never grows beyond it.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaximumNodePoolSize *int32 `json:"maximumNodePoolSize,omitempty"`
	// ServerPodLabelName (server-pod-label-name) is the label that marks
	// dedicated-server pods.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	ServerPodLabelName string `json:"serverPodLabelName"`
	// ServerPodLabelValue (server-pod-label-value) is that label's value.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	ServerPodLabelValue string `json:"serverPodLabelValue,omitempty"`
	// BufferSlotSize (buffer-slot-size) is the free slots to keep: a whole
	// number (4), or a percentage of the slots in use ("10%").
	// +kubebuilder:default=4
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : (self.matches('^[0-9]+$') || (self.matches('^[0-9]+(\\\\.[0-9]+)?%$') && double(self.replace('%', '')) <= 100.0))",message="spec.bufferSlotSize must be a whole number of slots >= 0 or a percentage from 0% to 100%"
	// +optional
	BufferSlotSize *intstr.IntOrString `json:"bufferSlotSize,omitempty"`
	// BufferSlotPercent (buffer-slot-percent) is a buffer as a percentage of
	// the slots in use, combined with bufferSlotSize (the larger wins).
	// +kubebuilder:validation:XValidation:rule="self >= 0.0 && self <= 100.0",message="spec.bufferSlotPercent must be from 0 to 100"
	// +optional
	BufferSlotPercent *float64 `json:"bufferSlotPercent,omitempty"`
	// ScaleLoopTickSec (scale-loop-tick-sec) is the period of the
	// safety-net pass; node and server-pod changes trigger passes sooner.
	// +kubebuilder:default=10
	// +kubebuilder:validation:XValidation:rule="self > 0.0",message="spec.scaleLoopTickSec must be > 0 seconds"
	// +optional
	ScaleLoopTickSec *float64 `json:"scaleLoopTickSec,omitempty"`
	// ServerCPUResourceRequest (server-cpu-resource-request) is one
	// server's CPU: a whole number is millicores (1000), as in kubescaler;
	// a quantity string ("500m", "1.5") also works.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self > 0 : isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",message="spec.serverCpuResourceRequest must be millicores > 0 (1000) or a quantity > 0 (500m)"
	// +optional
	ServerCPUResourceRequest *intstr.IntOrString `json:"serverCpuResourceRequest,omitempty"`
	// ServerMemoryResourceRequest (server-memory-resource-request) is one
	// server's memory: a slot becomes a vector.
	// +optional
	ServerMemoryResourceRequest *resource.Quantity `json:"serverMemoryResourceRequest,omitempty"`
	// ServerResourceRequests (server-resource-requests) adds other
	// resources to a slot, e.g. nvidia.com/gpu: 1.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	ServerResourceRequests map[string]resource.Quantity `json:"serverResourceRequests,omitempty"`
	// EmptyNodeExpirationSec (empty-node-expiration-sec) is how long a node
	// Swell cordoned must be empty before it is deleted.
	// +kubebuilder:default=120
	// +kubebuilder:validation:XValidation:rule="self >= 0.0",message="spec.emptyNodeExpirationSec must be >= 0 seconds"
	// +optional
	EmptyNodeExpirationSec *float64 `json:"emptyNodeExpirationSec,omitempty"`
	// ResizeCooldownSec (resize-cooldown-sec) holds further resizes, and
	// the cordoning of surplus, this long after a resize. 0 (the default,
	// as in kubescaler, which has none): booting and ordered nodes already
	// count toward capacity, so a resize is never repeated without one.
	// +kubebuilder:default=0
	// +kubebuilder:validation:XValidation:rule="self >= 0.0",message="spec.resizeCooldownSec must be >= 0 seconds"
	// +optional
	ResizeCooldownSec *float64 `json:"resizeCooldownSec,omitempty"`
	// KwokNodeCPU (kwok-node-cpu) is the allocatable CPU of nodes the kwok
	// provider creates (default 4).
	// +optional
	KwokNodeCPU *resource.Quantity `json:"kwokNodeCpu,omitempty"`
	// KwokNodeMemory (kwok-node-memory) is their memory (default 16Gi).
	// +optional
	KwokNodeMemory *resource.Quantity `json:"kwokNodeMemory,omitempty"`
	// KwokNodePods (kwok-node-pods) is their pod capacity (default 110).
	// +optional
	KwokNodePods *resource.Quantity `json:"kwokNodePods,omitempty"`
	// HcloudServerType (hcloud-server-type) is the Hetzner server type of
	// new servers (e.g. cpx31); required for hetzner.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +optional
	HcloudServerType string `json:"hcloudServerType,omitempty"`
	// HcloudImage (hcloud-image) is the image of new servers (name or ID);
	// required for hetzner.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	HcloudImage string `json:"hcloudImage,omitempty"`
	// HcloudLocation (hcloud-location) is where new servers are placed
	// (e.g. fsn1); Hetzner picks one when omitted.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +optional
	HcloudLocation string `json:"hcloudLocation,omitempty"`
	// HcloudNetwork (hcloud-network) is a private network (name or ID) new
	// servers join.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	HcloudNetwork string `json:"hcloudNetwork,omitempty"`
	// HcloudSSHKey (hcloud-ssh-key) is an SSH key (name or ID) put on new
	// servers.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	HcloudSSHKey string `json:"hcloudSshKey,omitempty"`
	// HcloudCloudInitSecretRef (in place of hcloud-cloud-init-file) names
	// the Secret key holding the cloud-init that joins a new server to the
	// cluster; required for hetzner. Read live, like the token.
	// +optional
	HcloudCloudInitSecretRef *CloudInitSecretRef `json:"hcloudCloudInitSecretRef,omitempty"`
	// CapacityBuffer (capacity-buffer) publishes the buffer as a SIG
	// Autoscaling CapacityBuffer "namespace/name" (or a name in
	// "default"), kept in step with the server pods, for clusters where
	// Karpenter or the Cluster Autoscaler adds the nodes; required for
	// cloudProvider none.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=507
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	CapacityBuffer string `json:"capacityBuffer,omitempty"`
}

// NodePoolScalerStatus is what the last decision pass saw and did, so
// `kubectl get` shows the pool's health without reading metrics.
type NodePoolScalerStatus struct {
	// ObservedGeneration is the spec generation the last pass ran with.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// PoolSize is the pool as counted: registered nodes (ready, booting,
	// cordoned) or the provider's count, whichever is larger.
	// +optional
	PoolSize int32 `json:"poolSize,omitempty"`
	// NodesReady are ready, schedulable pool nodes.
	// +optional
	NodesReady int32 `json:"nodesReady,omitempty"`
	// NodesBooting are registered pool nodes that are not Ready yet.
	// +optional
	NodesBooting int32 `json:"nodesBooting,omitempty"`
	// NodesCordoned are pool nodes marked unschedulable (by Swell or anyone).
	// +optional
	NodesCordoned int32 `json:"nodesCordoned,omitempty"`
	// SlotsFree are free server slots on ready, schedulable nodes.
	// +optional
	SlotsFree int64 `json:"slotsFree,omitempty"`
	// SlotsUsed are server pods bound to pool nodes.
	// +optional
	SlotsUsed int64 `json:"slotsUsed,omitempty"`
	// SlotsWanted is the buffer target of the last pass.
	// +optional
	SlotsWanted int64 `json:"slotsWanted,omitempty"`
	// SlotsIncoming are the slots of nodes still booting or being created.
	// +optional
	SlotsIncoming int64 `json:"slotsIncoming,omitempty"`
	// LastAction describes the last pass that changed the pool (cordon,
	// uncordon, delete, resize).
	// +optional
	LastAction string `json:"lastAction,omitempty"`
	// LastActionTime is when that pass ran.
	// +optional
	LastActionTime *metav1.Time `json:"lastActionTime,omitempty"`
	// Conditions: Ready (the last pass ran and carried out its decision)
	// and ProviderHealthy (the provider answered its last call).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Condition types of a NodePoolScaler.
const (
	// ConditionReady is True when the last pass ran and carried out its
	// whole decision.
	ConditionReady = "Ready"
	// ConditionProviderHealthy is True when the provider answered its last call.
	ConditionProviderHealthy = "ProviderHealthy"
)

// NodePoolScaler keeps a buffer of free server slots on a node pool for
// stateful dedicated servers, running `swell nodepool`'s decision code in
// the controller: cordon surplus nodes, uncordon before growing, delete
// expired empty nodes through the provider.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nps,categories=swell
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.cloudProvider`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.poolSize`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.nodesReady`
// +kubebuilder:printcolumn:name="Booting",type=integer,JSONPath=`.status.nodesBooting`
// +kubebuilder:printcolumn:name="Cordoned",type=integer,JSONPath=`.status.nodesCordoned`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.slotsFree`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.slotsUsed`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodePoolScaler struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NodePoolScalerSpec   `json:"spec"`
	Status NodePoolScalerStatus `json:"status,omitempty"`
}

// NodePoolScalerList is a list of NodePoolScalers.
//
// +kubebuilder:object:root=true
type NodePoolScalerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodePoolScaler `json:"items"`
}
