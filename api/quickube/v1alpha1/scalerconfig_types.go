package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BrokerType names the broker a ScalerConfig reaches.
// +kubebuilder:validation:Enum=redis;rabbitmq;nats;kafka
type BrokerType string

// Broker types.
const (
	BrokerRedis    BrokerType = "redis"
	BrokerRabbitMQ BrokerType = "rabbitmq"
	BrokerNATS     BrokerType = "nats"
	BrokerKafka    BrokerType = "kafka"
)

// ScalerConfigSpec is QScaler's ScalerConfig spec: a broker type and how to
// connect to it. QScaler knows only redis; Swell adds the others. Fields that
// do not apply to the chosen type are rejected rather than silently ignored,
// so a half-edited type change cannot connect somewhere unexpected.
//
// +kubebuilder:validation:XValidation:rule="self.type != 'redis' || has(self.config.host)",message="spec.config.host is required for type redis"
// +kubebuilder:validation:XValidation:rule="self.type != 'rabbitmq' || (has(self.config.host) != has(self.config.url))",message="spec.config: set exactly one of host or url for type rabbitmq"
// +kubebuilder:validation:XValidation:rule="self.type != 'rabbitmq' || !has(self.config.url) || !has(self.config.port)",message="spec.config.port must not be set with spec.config.url for type rabbitmq; put the port in the url"
// +kubebuilder:validation:XValidation:rule="self.type != 'rabbitmq' || !has(self.config.url) || self.config.url.matches('^amqps?://[^, ]+$')",message="spec.config.url must be one amqp:// or amqps:// URL for type rabbitmq"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || (has(self.config.url) != has(self.config.host))",message="spec.config: set exactly one of url or host for type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || !has(self.config.url) || self.config.url.split(',').all(u, u.trim().matches('^(nats|tls)://[^ ]+$'))",message="spec.config.url must be a comma-separated list of nats:// or tls:// URLs for type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || has(self.config.username) == has(self.config.password)",message="spec.config.username and spec.config.password must be set together for type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || (has(self.config.brokers) && size(self.config.brokers) > 0)",message="spec.config.brokers must list at least one broker for type kafka"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || has(self.config.consumerGroup)",message="spec.config.consumerGroup is required for type kafka"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || (has(self.config.saslMechanism) ? (has(self.config.username) && has(self.config.password)) : (!has(self.config.username) && !has(self.config.password)))",message="spec.config.saslMechanism, spec.config.username and spec.config.password must be set together for type kafka"
// +kubebuilder:validation:XValidation:rule="self.type != 'redis' || !(has(self.config.url) || has(self.config.vhost) || has(self.config.managementURL) || has(self.config.stream) || has(self.config.brokers) || has(self.config.consumerGroup) || has(self.config.saslMechanism))",message="spec.config: only host, port, username, password, db, keyspaceNotifications and tls apply to type redis"
// +kubebuilder:validation:XValidation:rule="self.type != 'rabbitmq' || !(self.config.?db.orValue(0) != 0 || self.config.?keyspaceNotifications.orValue(false) || has(self.config.stream) || has(self.config.brokers) || has(self.config.consumerGroup) || has(self.config.saslMechanism))",message="spec.config: only host and port or url, vhost, username, password, managementURL and tls apply to type rabbitmq"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || !(self.config.?db.orValue(0) != 0 || self.config.?keyspaceNotifications.orValue(false) || has(self.config.vhost) || has(self.config.managementURL) || has(self.config.brokers) || has(self.config.consumerGroup) || has(self.config.saslMechanism))",message="spec.config: only url or host and port, stream, username, password and tls apply to type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || !(has(self.config.host) || has(self.config.port) || has(self.config.url) || self.config.?db.orValue(0) != 0 || self.config.?keyspaceNotifications.orValue(false) || has(self.config.vhost) || has(self.config.managementURL) || has(self.config.stream))",message="spec.config: only brokers, consumerGroup, saslMechanism, username, password and tls apply to type kafka"
type ScalerConfigSpec struct {
	// Type is the broker: redis, rabbitmq, nats (JetStream) or kafka.
	Type BrokerType `json:"type"`
	// Config is how to reach it.
	Config ScalerConnection `json:"config"`
	// PollingIntervalSeconds overrides how often QWorkers using this
	// ScalerConfig measure their queues (default 5).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	PollingIntervalSeconds *int32 `json:"pollingIntervalSeconds,omitempty"`
}

// ScalerConnection holds every broker's connection fields in one flat
// object, as QScaler's spec.config does; which apply depends on the type
// (the others are rejected). Credentials come from Secrets.
type ScalerConnection struct {
	// Host of the broker (redis; rabbitmq or nats instead of url): a name or
	// an IP address, without scheme or path.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[^\s/]+$`
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host,omitempty"`
	// Port, a string as in QScaler ("6379").
	// +kubebuilder:validation:Pattern=`^[0-9]{1,5}$`
	// +kubebuilder:validation:XValidation:rule="int(self) >= 1 && int(self) <= 65535",message="spec.config.port must be a number from 1 to 65535"
	// +optional
	Port string `json:"port,omitempty"`
	// URL of the broker without credentials: rabbitmq amqp:// or amqps://;
	// nats nats:// or tls://, several separated by commas.
	// +kubebuilder:validation:Pattern=`^[a-z]+://`
	// +kubebuilder:validation:XValidation:rule="!self.matches('://[^/,@]*@')",message="spec.config.url must not contain credentials; use spec.config.username and spec.config.password"
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	URL string `json:"url,omitempty"`
	// Username for redis ACLs, rabbitmq, nats or kafka SASL.
	// +kubebuilder:validation:MinLength=1
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Username string `json:"username,omitempty"`
	// Password, from a Secret (preferred) or inline (QScaler compatibility;
	// discouraged: anyone who can read the ScalerConfig reads it). Swell
	// needs none, but QScaler's Python SDK reads spec.config.password of a
	// redis ScalerConfig and fails to start without it (QScaler's CRD
	// required it): for QScaler-SDK workers write `password: {}` when the
	// server has no password. That SDK reads value and secret only.
	// +optional
	Password *Password `json:"password,omitempty"`
	// DB is the Redis database number.
	// +kubebuilder:validation:Minimum=0
	// +optional
	DB int32 `json:"db,omitempty"`
	// KeyspaceNotifications lets Swell turn on Redis keyspace notifications
	// (notify-keyspace-events "Kl" and "Kt") and react to pushes within a
	// second instead of waiting for the next poll.
	// +optional
	KeyspaceNotifications bool `json:"keyspaceNotifications,omitempty"`
	// VHost is the RabbitMQ virtual host (default "/").
	// +optional
	// +kubebuilder:validation:MaxLength=256
	VHost string `json:"vhost,omitempty"`
	// ManagementURL is RabbitMQ's management API, needed to count
	// unacknowledged messages (without it only ready messages count). It
	// uses spec.config.username and password; never put them in the URL.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('://[^/@]*@')",message="spec.config.managementURL must not contain credentials; use spec.config.username and spec.config.password"
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	ManagementURL string `json:"managementURL,omitempty"`
	// Stream is the JetStream stream holding the queue's consumer. Optional:
	// a QWorker may name both as queue "stream/consumer" instead.
	// +kubebuilder:validation:Pattern=`^[^\s.*>/]+$`
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Stream string `json:"stream,omitempty"`
	// Brokers are Kafka bootstrap addresses (host:port).
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:Pattern=`^[^\s,/]+:[0-9]{1,5}$`
	// +kubebuilder:validation:items:MaxLength=260
	// +optional
	Brokers []string `json:"brokers,omitempty"`
	// ConsumerGroup is the Kafka consumer group whose lag is the backlog.
	// +kubebuilder:validation:MinLength=1
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	// SASLMechanism for Kafka: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; needs
	// username and password.
	// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
	// +optional
	SASLMechanism string `json:"saslMechanism,omitempty"`
	// TLS for the broker connection.
	// +optional
	TLS *TLS `json:"tls,omitempty"`
}

// Password is QScaler's password field: an inline value, a Secret key, or
// the older valueFrom.secretKeyRef form. At most one may be set; none (or
// QScaler's `password: {}`) means no password.
//
// +kubebuilder:validation:XValidation:rule="(has(self.value) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.valueFrom) ? 1 : 0) <= 1",message="spec.config.password: set at most one of value, secret or valueFrom"
type Password struct {
	// Value is the password inline. Discouraged: it is stored in etcd and
	// shown to anyone who can read the ScalerConfig; use secret. Accepted
	// because QScaler manifests use it.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`
	// Secret names a key of a Secret in the ScalerConfig's namespace.
	// +optional
	Secret *SecretKey `json:"secret,omitempty"`
	// ValueFrom is the older QScaler form of Secret.
	// +optional
	ValueFrom *ValueFrom `json:"valueFrom,omitempty"`
}

// SecretKey names one key of a Secret in the same namespace. It has the
// shape of corev1.SecretKeySelector so QScaler manifests apply unchanged.
type SecretKey struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
	// Optional is accepted for QScaler compatibility and ignored: Swell
	// always needs the Secret, and reports it missing in the status.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// ValueFrom is the older QScaler password source. Swell reads it;
// QScaler's Python SDK does not (it connects without a password), so
// ScalerConfigs used by QScaler-SDK workers should use secret instead.
type ValueFrom struct {
	// SecretKeyRef names the Secret key holding the password.
	SecretKeyRef SecretKey `json:"secretKeyRef"`
}

// TLS configures a broker connection's TLS. Options without enabled: true
// are rejected, because they would silently do nothing.
//
// +kubebuilder:validation:XValidation:rule="self.enabled || (!has(self.caSecret) && !has(self.certSecret) && !has(self.serverName) && !self.?insecureSkipVerify.orValue(false))",message="spec.config.tls: caSecret, certSecret, serverName and insecureSkipVerify need spec.config.tls.enabled: true"
// +kubebuilder:validation:XValidation:rule="!has(self.caSecret) || !self.?insecureSkipVerify.orValue(false)",message="spec.config.tls: set caSecret or insecureSkipVerify, not both"
type TLS struct {
	// Enabled turns TLS on.
	Enabled bool `json:"enabled"`
	// CASecret names a Secret whose key ca.crt holds the CA bundle that
	// signs the broker's certificate (default: the system roots).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	CASecret string `json:"caSecret,omitempty"`
	// CertSecret names a kubernetes.io/tls Secret (tls.crt, tls.key) with
	// a client certificate, for mutual TLS.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	CertSecret string `json:"certSecret,omitempty"`
	// ServerName overrides the name checked in the broker's certificate.
	// +kubebuilder:validation:MinLength=1
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify skips certificate verification (tests only).
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// ScalerConfigStatus is QScaler's status plus conditions.
type ScalerConfigStatus struct {
	// Healthy is true when Swell last reached the broker.
	// +optional
	Healthy bool `json:"healthy"`
	// Message says what failed when Healthy is false.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions report the broker connection in the standard form
	// (kubectl wait --for=condition=...).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ScalerConfig says how to reach a broker; QWorkers name it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=scfg,categories=swell
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Healthy",type=boolean,JSONPath=`.status.healthy`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ScalerConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the broker and how to reach it.
	Spec ScalerConfigSpec `json:"spec"`
	// Status says whether Swell reaches the broker.
	Status ScalerConfigStatus `json:"status,omitempty"`
}

// ScalerConfigList is a list of ScalerConfigs.
//
// +kubebuilder:object:root=true
type ScalerConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the ScalerConfigs.
	Items []ScalerConfig `json:"items"`
}
