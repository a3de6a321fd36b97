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
// connect to it. QScaler knows only redis; Swell adds the others.
//
// +kubebuilder:validation:XValidation:rule="self.type != 'redis' || has(self.config.host)",message="spec.config.host is required for type redis"
// +kubebuilder:validation:XValidation:rule="self.type != 'rabbitmq' || (has(self.config.host) != has(self.config.url))",message="spec.config: set exactly one of host or url for type rabbitmq"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || has(self.config.url) || has(self.config.host)",message="spec.config.url (or host) is required for type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'nats' || has(self.config.stream)",message="spec.config.stream is required for type nats"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || (has(self.config.brokers) && size(self.config.brokers) > 0)",message="spec.config.brokers must list at least one broker for type kafka"
// +kubebuilder:validation:XValidation:rule="self.type != 'kafka' || has(self.config.consumerGroup)",message="spec.config.consumerGroup is required for type kafka"
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

// ScalerConnection holds every broker's connection fields; which apply
// depends on the type. Credentials come from Secrets.
type ScalerConnection struct {
	// Host of the broker (redis, rabbitmq, nats).
	// +optional
	Host string `json:"host,omitempty"`
	// Port, a string as in QScaler ("6379").
	// +kubebuilder:validation:Pattern=`^[0-9]{1,5}$`
	// +kubebuilder:validation:XValidation:rule="int(self) >= 1 && int(self) <= 65535",message="spec.config.port must be a number from 1 to 65535"
	// +optional
	Port string `json:"port,omitempty"`
	// URL of the broker (rabbitmq amqp:// or amqps:// without credentials,
	// nats:// list separated by commas).
	// +kubebuilder:validation:Pattern=`^(amqps?|nats|tls)://`
	// +optional
	URL string `json:"url,omitempty"`
	// Username for redis ACLs, rabbitmq, nats or kafka SASL.
	// +optional
	Username string `json:"username,omitempty"`
	// Password, from a Secret (preferred) or inline (QScaler compatibility;
	// discouraged: anyone who can read the ScalerConfig reads it).
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
	VHost string `json:"vhost,omitempty"`
	// ManagementURL is RabbitMQ's management API, needed to count
	// unacknowledged messages (without it only ready messages count).
	// +kubebuilder:validation:Pattern=`^https?://`
	// +optional
	ManagementURL string `json:"managementURL,omitempty"`
	// Stream is the JetStream stream holding the queue's consumer.
	// +optional
	Stream string `json:"stream,omitempty"`
	// Brokers are Kafka bootstrap addresses (host:port).
	// +optional
	Brokers []string `json:"brokers,omitempty"`
	// ConsumerGroup is the Kafka consumer group whose lag is the backlog.
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	// SASLMechanism for Kafka: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
	// +optional
	SASLMechanism string `json:"saslMechanism,omitempty"`
	// TLS for the broker connection.
	// +optional
	TLS *TLS `json:"tls,omitempty"`
}

// Password is QScaler's password field: an inline value, a Secret key, or
// the older valueFrom.secretKeyRef form. Exactly one may be set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.value) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.valueFrom) ? 1 : 0) == 1",message="spec.config.password: set exactly one of value, secret or valueFrom"
type Password struct {
	// Value is the password inline (discouraged).
	// +optional
	Value string `json:"value,omitempty"`
	// Secret names a key of a Secret in the ScalerConfig's namespace.
	// +optional
	Secret *SecretKey `json:"secret,omitempty"`
	// ValueFrom is the older QScaler form of Secret.
	// +optional
	ValueFrom *ValueFrom `json:"valueFrom,omitempty"`
}

// SecretKey names one key of a Secret in the same namespace.
type SecretKey struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ValueFrom is the older QScaler password source.
type ValueFrom struct {
	SecretKeyRef SecretKey `json:"secretKeyRef"`
}

// TLS configures a broker connection's TLS.
type TLS struct {
	// Enabled turns TLS on.
	Enabled bool `json:"enabled"`
	// CASecret holds the CA bundle (key ca.crt) that signs the broker's certificate.
	// +optional
	CASecret string `json:"caSecret,omitempty"`
	// CertSecret holds a client certificate (tls.crt, tls.key) for mutual TLS.
	// +optional
	CertSecret string `json:"certSecret,omitempty"`
	// ServerName overrides the name checked in the broker's certificate.
	// +optional
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
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ScalerConfig says how to reach a broker; QWorkers name it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sc,categories=swell
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Healthy",type=boolean,JSONPath=`.status.healthy`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ScalerConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ScalerConfigSpec   `json:"spec"`
	Status ScalerConfigStatus `json:"status,omitempty"`
}

// ScalerConfigList is a list of ScalerConfigs.
//
// +kubebuilder:object:root=true
type ScalerConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ScalerConfig `json:"items"`
}
